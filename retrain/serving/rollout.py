"""The opt-in Azure ML rollout: each new champion moved onto ``SERVE_ENDPOINT``, safely.

One row in the runs table, ``rollout|<endpoint>``, holds the rollout in progress (or the last
one), and every step is written to it guarded by the ETag it was read with: of two ticks that
race, one moves it and the other stops. The timer calls ``advance_rollouts`` each tick; a tick
takes every step it can and stops at the first one that must wait (a deployment provisioning)
or that fails for a while (throttling, an outage: the next tick tries again). A step before
``shift`` that has made no progress for ``STUCK_MINUTES`` fails the rollout::

    endpoint   create the endpoint (key auth) if it does not exist
    deploying  create the deployment named after the model version (0 % traffic) and wait for it
    smoke      replay SERVE_SMOKE_IMAGES of the run's own test images through it, by name: its
               accuracy must reproduce the run's within the tolerance of ``smoke``
    shift      100 % of the traffic to it
    cleanup    delete every other deployment                            -> done  (model.deployed)
    undo       (a step before ``shift`` failed) delete the new deployment -> failed
               (model.deploy_failed); the traffic never left the serving deployment

Every step is idempotent, so a tick redelivered or a crash between two steps repeats the step,
never a different one. A newer champion supersedes a rollout that has not moved traffic yet (its
deployment is removed first); one that has moved traffic finishes, then the newer one starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..clock import iso, parse_time, utcnow
from ..errors import PermanentError, TransientError
from ..ledger.encoding import dumps
from ..ledger.outbox_rows import DUE_NOW, OUTBOX
from ..storage import AlreadyExists, ETagMismatch
from ..storage.tables import Entity, Op

if TYPE_CHECKING:
    from ..backends.azureml_serving import OnlineEndpoints
    from ..ledger.runs import Ledger
    from ..models.delivery import ModelBook
    from ..settings import Settings
    from ..storage import BlobStore, Table

log = logging.getLogger(__name__)

ROLLOUT = "rollout|"
BEFORE_TRAFFIC = ("endpoint", "deploying", "smoke")
ENDED = ("done", "failed")
STUCK_MINUTES = 60  # a step before traffic moves may wait this long (a deployment: ~15)


@dataclass
class Tick:
    """What one tick did: the log lines, and how many rollouts ended each way."""

    lines: list[str] = field(default_factory=list)
    deployed: int = 0
    failed: int = 0


class Rollouts:
    """The rollout of the champion onto one endpoint, step by step."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        store: BlobStore,
        book: ModelBook,
        endpoints: OnlineEndpoints,
    ) -> None:
        assert settings.serve_endpoint
        self.settings = settings
        self.endpoint: str = settings.serve_endpoint
        self.ledger = ledger
        self.table: Table = ledger.table
        self.store = store
        self.book = book
        self.endpoints = endpoints
        self.row = f"{ROLLOUT}{self.endpoint}"

    def state(self) -> dict[str, Any] | None:
        return rollout_state(self.table, self.endpoint)

    def tick(self, tick: Tick | None = None, max_steps: int = 12) -> Tick:
        tick = tick or Tick()
        for _ in range(max_steps):
            if not self._step(tick):
                break
        return tick

    # --- one step ------------------------------------------------------------------------------

    def _step(self, tick: Tick) -> bool:
        """Take one step; True if another may follow at once."""
        found = self.table.get(self.row)
        champion = self.book.champion()
        if champion is None:
            return False
        state = found.props if found else None
        if state is None or (
            state.get("step") in ENDED and state.get("version") != champion.version
        ):
            return self._begin(found, champion, tick)
        if state.get("step") in ENDED:
            return False
        assert found is not None
        if state.get("version") != champion.version and state.get("step") in BEFORE_TRAFFIC:
            why = f"superseded by version {champion.version}, promoted meanwhile"
            return self._move(found, {"step": "undo", "reason": why}, tick)
        if state.get("step") in BEFORE_TRAFFIC and self._stuck(state):
            why = f"no progress for {STUCK_MINUTES} minutes (since {state.get('updated_at')})"
            return self._move(found, {"step": "undo", "reason": f"{state['step']}: {why}"}, tick)
        try:
            return self._act(found, tick)
        except TransientError as exc:
            tick.lines.append(f"rollout {self._name(state)}: {state['step']}: {exc}; next tick")
            return False
        except PermanentError as exc:
            if state["step"] in BEFORE_TRAFFIC or (
                state["step"] == "shift" and not self._takes_traffic(state["deployment"])
            ):
                return self._move(
                    found, {"step": "undo", "reason": f"{state['step']}: {exc}"}, tick
                )
            tick.lines.append(f"rollout {self._name(state)}: {state['step']}: {exc}; next tick")
            return False

    @staticmethod
    def _stuck(state: dict[str, Any]) -> bool:
        """A step before traffic moves that has waited too long: a deployment that never
        provisions, or one that keeps answering 5xx to the smoke test."""
        since = parse_time(state.get("updated_at"))
        return since is not None and utcnow() - since > timedelta(minutes=STUCK_MINUTES)

    def _takes_traffic(self, deployment: str) -> bool:
        """Whether the refused traffic update moved traffic after all (then it goes on)."""
        try:
            return bool(self.endpoints.traffic(self.endpoint).get(deployment))
        except (TransientError, PermanentError):
            return True  # unknown: never undo a deployment that may take traffic

    def _begin(self, found: Entity | None, champion: Any, tick: Tick) -> bool:
        now = iso(utcnow())
        record = self.ledger.get(champion.run_id)
        previous = found.props if found else {}
        # what takes the traffic now: the last rollout's deployment if it finished, else what
        # took it before that one
        serving = previous.get("deployment" if previous.get("step") == "done" else "serving", "")
        props = {
            "version": champion.version,
            "model": champion.model,
            "run_id": champion.run_id,
            "recorded": champion.accuracy if champion.accuracy is not None else -1.0,
            "data_asset": (record.data_asset if record else None) or "",
            "step": "endpoint",
            "deployment": _deployment(champion.version),
            "serving": serving,
            "reason": "",
            "smoke": "",
            "started_at": now,
            "updated_at": now,
        }
        try:
            if found is None:
                self.table.transact([Op("create", self.row, props)])
            else:
                self.table.transact([Op("replace", self.row, props, etag=found.etag)])
        except (AlreadyExists, ETagMismatch):
            return False  # another tick began it
        tick.lines.append(f"rollout {self._name(props)}: started onto endpoint {self.endpoint}")
        return True

    def _act(self, found: Entity, tick: Tick) -> bool:
        from ..backends.azureml_serving import DeploymentSpec

        state = found.props
        step, deployment = state["step"], state["deployment"]
        if step == "endpoint":
            self.endpoints.ensure_endpoint(self.endpoint)
            return self._move(found, {"step": "deploying"}, tick)
        if step == "deploying":
            provisioning = self.endpoints.deployment_state(self.endpoint, deployment)
            if provisioning is None:
                if not self.settings.environment:
                    raise PermanentError(
                        "AZUREML_ENVIRONMENT: set it to the registered "
                        "environment the deployment runs in"
                    )
                spec = DeploymentSpec(
                    endpoint=self.endpoint,
                    model_name=state["model"],
                    model_version=state["version"],
                    environment=self.settings.environment.removeprefix("azureml:"),
                    instance_type=self.settings.serve_instance_type,
                    max_images=self.settings.serve_max_images,
                )
                self.endpoints.start_deployment(spec)
                provisioning = self.endpoints.deployment_state(self.endpoint, deployment)
            if provisioning in ("Failed", "Canceled"):
                raise PermanentError(f"deployment {deployment} ended {provisioning}")
            if provisioning != "Succeeded":
                tick.lines.append(f"rollout {self._name(state)}: {deployment} {provisioning}")
                return False
            return self._move(found, {"step": "smoke"}, tick)
        if step == "smoke":
            return self._smoke(found, tick)
        if step == "shift":
            self.endpoints.set_traffic(self.endpoint, {deployment: 100})
            return self._move(found, {"step": "cleanup"}, tick)
        if step == "cleanup":
            for other in self.endpoints.deployments(self.endpoint):
                if other != deployment:
                    self.endpoints.delete_deployment(self.endpoint, other)
            return self._move(found, {"step": "done", "ended_at": iso(utcnow())}, tick)
        if step == "undo":
            if self.endpoints.traffic(self.endpoint).get(deployment):
                raise PermanentError(f"{deployment} takes traffic; not removed")  # never by us
            self.endpoints.delete_deployment(self.endpoint, deployment)
            return self._move(found, {"step": "failed", "ended_at": iso(utcnow())}, tick)
        raise PermanentError(f"unknown rollout step {step!r}")

    def _smoke(self, found: Entity, tick: Tick) -> bool:
        from .smoke import judge, run_test_images

        state = found.props
        recorded = float(state.get("recorded", -1.0))
        if recorded < 0:
            raise PermanentError("the run recorded no accuracy to reproduce")
        images, labels = run_test_images(
            self.store, self.settings, state.get("data_asset"), self.settings.serve_smoke_images
        )
        predicted: list[int] = []
        chunk = max(1, self.settings.serve_max_images)
        for start in range(0, len(images), chunk):
            answer = self.endpoints.invoke(
                self.endpoint, state["deployment"], images[start : start + chunk]
            )
            try:
                predicted += [int(p["label"]) for p in answer["predictions"]]
            except (KeyError, TypeError, ValueError):
                raise PermanentError(
                    f"the deployment answered no predictions: {str(answer)[:200]}"
                ) from None
            if answer.get("model", {}).get("version") != state["version"]:
                raise PermanentError(
                    f"the deployment answered as version {answer.get('model', {}).get('version')}"
                )
        result = judge(predicted, labels, recorded)
        if not result.passed:
            return self._move(
                found,
                {
                    "step": "undo",
                    "smoke": result.summary(),
                    "reason": f"smoke test: {result.summary()}",
                },
                tick,
            )
        return self._move(found, {"step": "shift", "smoke": result.summary()}, tick)

    # --- writing ---------------------------------------------------------------------------------

    def _move(self, found: Entity, changes: dict[str, Any], tick: Tick) -> bool:
        """Write the next step (ETag-guarded), with its event when the rollout ends; False if
        another tick moved it first."""
        props = {**found.props, **changes, "updated_at": iso(utcnow())}
        ops = [Op("replace", self.row, props, etag=found.etag)]
        if props["step"] in ENDED:
            ops += self._events(props)
        try:
            self.table.transact(ops)
        except ETagMismatch:
            return False
        name = self._name(props)
        if props["step"] == "done":
            tick.deployed += 1
            tick.lines.append(
                f"rollout {name}: deployed: 100% of {self.endpoint} on "
                f"{props['deployment']} ({props['smoke']})"
            )
        elif props["step"] == "failed":
            tick.failed += 1
            tick.lines.append(f"rollout {name}: failed, traffic unchanged: {props['reason']}")
        else:
            tick.lines.append(f"rollout {name}: {found.props['step']} -> {props['step']}")
        return True

    def _events(self, props: dict[str, Any]) -> list[Op]:
        from ..notify.events import DEPLOY_FAILED, DEPLOYED, cloud_event
        from ..notify.outbox import sink_names

        kind, word = (
            (DEPLOYED, "deployed") if props["step"] == "done" else (DEPLOY_FAILED, "deploy_failed")
        )
        event_id = f"{props['run_id']}:{word}:{self.endpoint}"
        event = cloud_event(
            id=event_id,
            source=f"/fashion-retrain/{self.settings.landing_container}",
            type=kind,
            subject=props["run_id"],
            data={
                "endpoint": self.endpoint,
                **{
                    k: props[k]
                    for k in ("model", "version", "deployment", "serving", "smoke", "reason")
                },
            },
        )
        text = dumps(event)
        return [
            Op(
                "upsert",
                f"{OUTBOX}{DUE_NOW}|{sink}|{event_id}",
                {"event": text, "attempts": 0, "next_at": "", "sink": sink},
            )
            for sink in sink_names(self.settings)
        ]

    @staticmethod
    def _name(props: dict[str, Any]) -> str:
        return f"{props.get('model')}:{props.get('version')}"


def rollout_state(table: Table, endpoint: str) -> dict[str, Any] | None:
    """The endpoint's rollout row (the one in progress, or the last), for people to read."""
    found = table.get(f"{ROLLOUT}{endpoint}")
    return {"endpoint": endpoint, **found.props} if found else None


def describe(state: dict[str, Any]) -> str:
    """One line: ``python -m retrain models`` prints it under the versions."""
    head = f"rollout onto {state['endpoint']}: version {state.get('version')}, {state.get('step')}"
    if state.get("step") == "done":
        return f"{head}: serving 100% on {state.get('deployment')} ({state.get('smoke')})"
    if state.get("step") == "failed":
        return f"{head}: {state.get('reason')}; traffic unchanged"
    return f"{head} (since {state.get('updated_at')})"


def _deployment(version: str) -> str:
    from ..backends.azureml_serving import deployment_name

    return deployment_name(version)


def advance_rollouts(service: Any) -> Tick:
    """The timer's hook: advance the rollout of the champion onto ``SERVE_ENDPOINT`` (nothing
    when it is unset or the backend is local). Logs each line; returns what it did."""
    settings = service.settings
    if not settings.serve_endpoint or settings.backend != "azureml":
        return Tick()
    from ..backends.azureml_serving import OnlineEndpoints

    rollouts = Rollouts(
        settings, service.ledger, service.store, service.book, OnlineEndpoints(settings)
    )
    tick = Tick()
    try:
        rollouts.tick(tick)
    except Exception as exc:  # the runs table or the workspace unreachable: the next tick
        name = type(exc).__name__
        log.warning("sweep: rollout onto %s: %s: %s", settings.serve_endpoint, name, exc)
    for line in tick.lines:
        log.info("sweep: %s", line)
    return tick
