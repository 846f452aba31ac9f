"""The registry's champion tag on Azurite with the real local registry: a damaged old version
does not stop it moving, and two hosts whose ticks overlap never leave the ledger saying the
registry is in step while the tag is on another version, or on two."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from apphelpers import submitted_runs
from test_model_delivery import MODEL, RegistryBackend, completes, tags, trained

from retrain.backends.local_models import LocalModelRegistry
from retrain.errors import TransientError
from retrain.service.core import RetrainService
from retrain.settings import Settings


@pytest.fixture
def backend(settings: Settings) -> RegistryBackend:
    return RegistryBackend(models=LocalModelRegistry(settings))


def tagged(settings: Settings, *versions: str) -> list[str]:
    return [v for v in versions if tags(settings, v).get("champion") == "true"]


def test_an_unreadable_old_version_does_not_stop_the_tag(service, store, backend, settings):
    """An old version's model.json is damaged (by hand, a full disk): tagging the champion
    skips it instead of failing for good."""
    first, second = submitted_runs(service, store, 2)
    stray = Path(settings.local_models_dir) / MODEL / "0000old"
    stray.mkdir(parents=True)
    (stray / "model.json").write_text('{"name": "fashion-mnist-cnn", "tags": {"champ')
    for run in (first, second):
        trained(settings, run)
    completes(backend, first, 0.90)
    assert service.sweep().errors == 0
    completes(backend, second, 0.93, champion=(first.run_id, 0.90))
    summary = service.sweep()

    assert (summary.promoted, summary.errors) == (1, 0)
    champion = service.list_models(20)["champion"]
    assert champion["registry_synced"] is True and champion["registry_error"] is None
    assert tagged(settings, first.run_id, second.run_id) == [second.run_id]


class Overlapped(LocalModelRegistry):
    """Host A's registry: at ``when`` in its tagging, host B's whole tick runs first."""

    def __init__(self, settings: Settings, when: str, other: Callable[[], object]) -> None:
        super().__init__(settings)
        self.when, self.other, self.done = when, other, False

    def _other_host(self, now: str) -> None:
        if self.when == now and not self.done:
            self.done = True
            self.other()

    def mark_champion(self, name: str, version: str) -> None:
        self._other_host("before")
        super().mark_champion(name, version)

    def _set_tag(self, name: str, version: str, value: str | None) -> None:
        if value is not None:
            self._other_host("tagging")
        super()._set_tag(name, version, value)


@pytest.mark.parametrize("when", ["before", "tagging"])
def test_two_hosts_overlapping_ticks_leave_one_champion_tag_in_step_with_the_ledger(
    service, store, backend, settings, clock, monkeypatch, when
):
    """v1 is champion but untagged (the registry was down). Host A starts moving the tag to
    v1; meanwhile host B completes v2, which beats it, and moves the tag to v2. Whatever A's
    stale write did, the ledger never says "in step" with the tag elsewhere, and the next tick
    leaves exactly v2 tagged."""
    v1, v2 = submitted_runs(service, store, 2)
    for run in (v1, v2):
        trained(settings, run)
    completes(backend, v1, 0.90)
    real = LocalModelRegistry.mark_champion
    monkeypatch.setattr(
        LocalModelRegistry, "mark_champion", lambda *_: (_ for _ in ()).throw(TransientError("503"))
    )
    service.sweep()  # v1 champion, its tag not set: the registry is down
    monkeypatch.setattr(LocalModelRegistry, "mark_champion", real)
    assert service.list_models(20)["champion"]["registry_synced"] is False

    host_b = service  # B's tick: v2 completes, is promoted, and B tags it

    def b_tick() -> None:
        completes(backend, v2, 0.95, champion=(v1.run_id, 0.90))
        assert host_b.sweep().promoted == 1

    registry = Overlapped(settings, when, b_tick)
    same_jobs = RegistryBackend(jobs=backend.jobs, states=backend.states, models=registry)
    host_a = RetrainService(settings, store=store, backend=same_jobs, clock=clock)
    host_a.sweep()  # A read the champion row (v1) before B's tick
    assert registry.done

    champion = host_a.list_models(20)["champion"]
    assert champion["version"] == v2.run_id
    on = tagged(settings, v1.run_id, v2.run_id)
    assert on == [v2.run_id] or champion["registry_synced"] is False, (on, champion)

    host_b.sweep()  # the next tick, on either host
    champion = host_a.list_models(20)["champion"]
    assert champion["registry_synced"] is True
    assert tagged(settings, v1.run_id, v2.run_id) == [v2.run_id]
