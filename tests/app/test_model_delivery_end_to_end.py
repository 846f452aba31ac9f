"""Model delivery with nothing faked: Azurite, the registered blob and timer functions, the local
backend training real PyTorch models in the background, the local registry. A first batch's
model is registered and promoted; a second batch whose training labels are shuffled is scored
against that champion on the same test images, registered, and not promoted. The score step's
metrics.json, the run records, GET /api/models and ``python -m retrain models`` all agree."""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from apphelpers import blob_event, http, timer_tick

from retrain.backends.base import RunStatus
from retrain.ledger.records import RunRecord
from retrain.service import core as service_module
from retrain.service.core import RetrainService

LABELS = "train-labels-idx1-ubyte.gz"


def land(svc: RetrainService, store, folder: Path, batch: str) -> RunRecord:
    """Upload the batch's four files as blob events; the run it started."""
    container = svc.settings.landing_container
    for path in sorted(folder.iterdir()):
        store.put(container, f"{batch}/{path.name}", path.read_bytes())
        blob_event(store, f"{container}/{batch}/{path.name}")
    [run] = [r for r in svc.ledger.records() if r.source == f"{container}/{batch}"]
    return run


def finish(svc: RetrainService, run: RunRecord) -> RunRecord:
    deadline = time.monotonic() + 300
    while not run.terminal and time.monotonic() < deadline:
        time.sleep(1)
        timer_tick()
        run = svc.get_run(run.run_id)
    assert run.status is RunStatus.COMPLETED, run.reason
    return run


def shuffle_labels(folder: Path) -> None:
    """Permute the training labels: a model trained on them learns nothing."""
    raw = gzip.decompress((folder / LABELS).read_bytes())
    labels = np.frombuffer(raw[8:], np.uint8)
    shuffled = np.random.default_rng(7).permutation(labels)
    (folder / LABELS).write_bytes(gzip.compress(raw[:8] + shuffled.tobytes(), mtime=0))


@pytest.mark.slow
def test_first_model_promoted_then_a_worse_one_registered_not_promoted(
    settings, store, tmp_path, monkeypatch, capsys
):
    from retrain.data.fashion_mnist import write_batch

    svc = RetrainService(replace(settings, epochs=2), store=store)  # the real LocalBackend
    service_module.set_service(svc)
    try:
        write_batch(tmp_path / "good", n_train=1000, n_test=300)
        first = finish(svc, land(svc, store, tmp_path / "good", "good"))
        write_batch(tmp_path / "bad", n_train=1000, n_test=300)  # the same test images
        shuffle_labels(tmp_path / "bad")
        second = finish(svc, land(svc, store, tmp_path / "bad", "bad"))
        _, listing, _ = http("GET", "models")
    finally:
        service_module.set_service(None)

    def metrics_json(run: RunRecord) -> dict:
        assert run.run_dir
        return json.loads((Path(run.run_dir) / "score_node/output_result/metrics.json").read_text())

    first_metrics, second_metrics = metrics_json(first), metrics_json(second)
    assert "champion" not in first_metrics
    assert first.model and first.model["promoted"] and first.model["version"] == first.run_id
    assert second_metrics["champion"]["version"] == first.run_id  # scored against the champion
    assert second_metrics["champion"]["accuracy"] == pytest.approx(first_metrics["accuracy"])
    assert second_metrics["accuracy"] < second_metrics["champion"]["accuracy"]
    assert second.model and second.model["version"] == second.run_id
    assert second.model["promoted"] is False and second.model["champion_before"] == first.run_id

    assert listing["champion"]["version"] == first.run_id
    assert [(v["version"], v["champion"], v["accuracy"]) for v in listing["versions"]] == [
        (second.run_id, False, second_metrics["accuracy"]),
        (first.run_id, True, first_metrics["accuracy"]),
    ]
    models_dir = Path(settings.local_models_dir) / settings.model_name
    for run in (first, second):
        assert (models_dir / run.run_id / "predictor.pt").is_file()

    from retrain.cli.main import main

    monkeypatch.setenv("DataStorage", settings.storage_connection or "")
    monkeypatch.setenv("RUNS_TABLE", settings.runs_table)
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == listing
