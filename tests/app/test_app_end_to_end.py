"""The whole flow with nothing faked: Azurite, the registered blob and timer functions, the local
backend running the shared pipeline in the background (prepare -> train -> score, real PyTorch on
a small generated batch), and the run recorded Completed with the score step's accuracy."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from apphelpers import blob_event, records, timer_tick

from retrain.backends.base import RunStatus
from retrain.service import core as service_module
from retrain.service.core import RetrainService


@pytest.mark.slow
def test_blob_trigger_to_timer_recorded_completed(settings, store, tmp_path):
    from retrain.data.fashion_mnist import write_batch

    svc = RetrainService(replace(settings, epochs=1), store=store)  # the real LocalBackend
    service_module.set_service(svc)
    try:
        container = settings.landing_container
        for path in write_batch(tmp_path / "batch", n_train=600, n_test=200).values():
            store.put(container, f"e2e/{path.name}", path.read_bytes())
        for path in sorted(tmp_path.joinpath("batch").iterdir()):
            blob_event(store, f"{container}/e2e/{path.name}")
        [run] = records(svc)
        assert run.status is RunStatus.SUBMITTED and run.run_dir

        deadline = time.monotonic() + 240
        while not run.terminal and time.monotonic() < deadline:
            time.sleep(1)
            timer_tick()
            run = svc.get_run(run.run_id)
    finally:
        service_module.set_service(None)

    assert run.status is RunStatus.COMPLETED, run.reason
    status = json.loads((Path(run.run_dir) / "status.json").read_text())
    assert run.metrics is not None and 0.0 <= run.metrics["accuracy"] <= 1.0
    assert run.metrics["accuracy"] == status["metrics"]["accuracy"]
    assert run.ended_at and run.duration_s and run.duration_s > 0
    assert list(Path(run.run_dir).glob("**/*.png")), "score wrote no report"
    assert svc.ledger.active() == []
