"""App settings, read once from the environment (Function App settings or local.settings.json).

Every name here is documented in ``local.settings.json.example``; defaults suit a laptop run.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("local", "azureml")
MAX_SWEEP_BUDGET_S = 480  # host.json functionTimeout (600 s) less 2 minutes for writes and sends


def blob_trigger_source(env: Mapping[str, str]) -> Any:  # -> azure.functions.BlobSource
    """``BLOB_TRIGGER_SOURCE``: EventGrid (default; the only source on Flex Consumption) or
    LogsAndContainerScan (polling). Read when the host indexes the app."""
    import azure.functions as func

    raw = env.get("BLOB_TRIGGER_SOURCE", "").strip() or "EventGrid"
    for source in func.BlobSource:
        if source.value.lower() == raw.lower():
            return source
    raise ConfigurationError(
        f"BLOB_TRIGGER_SOURCE: expected EventGrid or LogsAndContainerScan, got {raw!r}"
    )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name, "").strip()
    if not raw or (default is None and raw.lower() == "auto"):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{name}: expected a finite number, got {raw!r}")
    if value <= 0:
        raise ConfigurationError(f"{name}: must be positive, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(f"{name}: expected true or false, got {raw!r}")


def _budget(env: Mapping[str, str]) -> int:
    """``SWEEP_BUDGET_SECONDS``: a tick stops reading job states after this long, leaving time
    for its writes and notifications inside host.json's 10-minute ``functionTimeout``."""
    value = _int(env, "SWEEP_BUDGET_SECONDS", Settings.sweep_budget_s)
    if value > MAX_SWEEP_BUDGET_S:
        raise ConfigurationError(
            f"SWEEP_BUDGET_SECONDS: at most {MAX_SWEEP_BUDGET_S} (host.json's functionTimeout "
            f"is 600 s and the tick still writes and notifies after it), got {value}"
        )
    return value


def _gain(env: Mapping[str, str]) -> float:
    """``PROMOTE_MIN_GAIN``: an accuracy difference (0.005 is half a point), 0 or more, below 1."""
    raw = env.get("PROMOTE_MIN_GAIN", "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"PROMOTE_MIN_GAIN: expected a number, got {raw!r}") from None
    if not 0 <= value < 1:
        raise ConfigurationError(
            f"PROMOTE_MIN_GAIN: expected an accuracy difference of 0 or more and below 1 "
            f"(0.005 is half a point), got {raw}"
        )
    return value


def _model_name(name: str) -> str:
    """Azure ML's naming rule for a model (letters, digits, '-', '_', '.'; a letter or digit
    first; at most 255), checked up front so both registries accept the same names."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}", name):
        raise ConfigurationError(
            f"MODEL_NAME: expected letters, digits, '-', '_' or '.', starting with a letter or "
            f"digit; got {name!r}"
        )
    return name


def _table_name(name: str) -> str:
    """Table Storage's naming rule (3-63 letters and digits, a letter first), checked up front so
    a bad ``RUNS_TABLE`` is named here, not as an HTTP 400 from the first request."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", name):
        raise ConfigurationError(
            f"RUNS_TABLE: expected 3 to 63 letters and digits, starting with a letter; got {name!r}"
        )
    return name


def _queue_name(name: str) -> str:
    """Azure's queue naming rule (3-63 lowercase letters, digits and single hyphens, a letter or
    digit at each end), checked up front: a bad ``SETTLE_QUEUE`` would drop every settling batch."""
    if not (re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", name) and len(name) <= 63):
        raise ConfigurationError(
            "SETTLE_QUEUE: expected 3 to 63 lowercase letters, digits and single hyphens, "
            f"a letter or digit at each end; got {name!r}"
        )
    return name


def _endpoint_name(name: str) -> str | None:
    """Azure ML's rule for an online endpoint's name (3-32 letters, digits and hyphens, a letter
    first, no hyphen last), checked up front; empty: serving on Azure ML is off."""
    if not name:
        return None
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]", name):
        raise ConfigurationError(
            "SERVE_ENDPOINT: expected 3 to 32 letters, digits and hyphens, starting with a "
            f"letter and not ending with a hyphen; got {name!r}"
        )
    return name


def _identity_id(resource_id: str) -> str | None:
    """A user-assigned managed identity's ARM resource id (the endpoint runs as it); empty:
    the endpoint gets a system-assigned identity."""
    if not resource_id:
        return None
    pattern = (
        r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
        r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+"
    )
    if not re.fullmatch(pattern, resource_id, flags=re.IGNORECASE):
        raise ConfigurationError(
            "SERVE_IDENTITY: expected a user-assigned identity's resource id "
            "(/subscriptions/<id>/resourceGroups/<group>/providers/"
            f"Microsoft.ManagedIdentity/userAssignedIdentities/<name>); got {resource_id[:200]!r}"
        )
    return resource_id


def _url(env: Mapping[str, str], name: str) -> str | None:
    """A notification URL that can be reached: http(s), a host name or address, a valid port.
    The message never repeats the URL (a webhook URL may carry a token)."""
    url = env.get(name, "").strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
        host = parts.hostname or ""
    except ValueError:
        raise ConfigurationError(f"{name}: not a valid URL (its port)") from None
    if parts.scheme not in ("https", "http"):
        raise ConfigurationError(f"{name}: expected an https:// URL")
    if not re.fullmatch(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+", host) or port == 0:
        raise ConfigurationError(f"{name}: not a valid URL (its host)")
    return url


NOTIFY_TICK_MAX_S = 480.0  # so the sweep and its sends end within host.json's 10-minute timeout


def _notify_seconds(env: Mapping[str, str]) -> tuple[float, float]:
    """``NOTIFY_SEND_SECONDS`` and ``NOTIFY_TICK_SECONDS``: a tick must fit one whole send, and
    end well inside the function timeout."""
    send = _float(env, "NOTIFY_SEND_SECONDS", Settings.notify_send_seconds)
    tick = _float(env, "NOTIFY_TICK_SECONDS", Settings.notify_tick_seconds)
    assert send is not None and tick is not None  # they have defaults
    if tick > NOTIFY_TICK_MAX_S:
        raise ConfigurationError(
            f"NOTIFY_TICK_SECONDS: at most {NOTIFY_TICK_MAX_S:.0f} (the function timeout is "
            f"10 minutes), got {tick:g}"
        )
    if send > tick:
        raise ConfigurationError(
            f"NOTIFY_SEND_SECONDS: at most NOTIFY_TICK_SECONDS ({tick:g}), got {send:g}"
        )
    return send, tick


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from app settings."""

    # Storage: a connection string, or identity-based via DataStorage__blobServiceUri (and the
    # queue and table service URIs beside it).
    storage_connection: str | None = "UseDevelopmentStorage=true"
    storage_blob_uri: str | None = None
    storage_queue_uri: str | None = None
    storage_table_uri: str | None = None
    storage_client_id: str | None = None  # DataStorage__clientId, else AZURE_CLIENT_ID
    landing_container: str = "landing"
    datasets_container: str = "datasets"  # immutable data versions: <asset>/<version>/<file>
    runs_table: str = "runs"  # the run ledger (Table Storage)
    settle_queue: str = "retrain-settle"  # delayed re-checks of batches still settling
    settle_seconds: int = 30  # a complete batch runs once unchanged this long (0: at once)

    backend: str = "local"
    local_runs_dir: Path = PROJECT_ROOT / ".runs"
    local_models_dir: Path = PROJECT_ROOT / ".models"  # the local backend's model registry

    # Model delivery: every Completed run registers a version; a better one becomes champion.
    model_name: str = "fashion-mnist-cnn"
    promote_min_gain: float = 0.0  # accuracy difference over the champion needed to promote
    serve_max_images: int = 512  # images one scoring request may hold (python -m retrain serve)
    # Azure ML serving (opt-in): each new champion is rolled out to this managed online endpoint.
    serve_endpoint: str | None = None
    serve_identity: str | None = None  # a user-assigned identity's resource id for the endpoint
    serve_instance_type: str = "Standard_DS3_v2"  # the smallest SKU the docs deem workable
    serve_smoke_images: int = 256  # of the run's own test images, replayed before traffic moves

    # Azure ML workspace (or a config.json found like MLClient.from_config does).
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace_name: str | None = None
    client_id: str | None = None  # user-assigned managed identity

    cpu_compute: str = "cpu-cluster"  # "serverless" is accepted
    gpu_compute: str = "gpu-cluster"  # "serverless" is accepted
    gpu_instance_type: str = "Standard_NC4as_T4_v3"  # used when gpu_compute is serverless
    data_asset_name: str = "fashion-mnist"
    environment: str | None = None  # AZUREML_ENVIRONMENT "name:version"; None: anonymous (dev)
    experiment_name: str = "fashion-retraining"

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float | None = None  # None: auto, the model preset's own (cpu 0.1, gpu 0.05)
    seed: int = 0

    sweep_schedule: str = "0 */5 * * * *"
    sweep_concurrency: int = 8
    sweep_budget_s: int = 240  # reading job states stops here; the rest waits for the next tick
    max_active_runs: int = 4  # runs Submitted or Running at once; more wait Queued (0: no cap)
    job_events: bool = False  # the job_events function records Azure ML's RunStatusChanged

    # Notifications (each sink optional): a signed webhook, an Event Grid topic.
    notify_webhook_url: str | None = None
    notify_webhook_secret: str | None = None
    notify_eventgrid_endpoint: str | None = None
    notify_send_seconds: float = 30.0  # the most one send may take, all of it (not per read)
    notify_tick_seconds: float = 120.0  # the most a tick spends sending; the rest waits, due
    notify_concurrency: int = 8  # sends in flight at once

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``env`` (default ``os.environ``); a bad value raises ConfigurationError."""
        env = os.environ if env is None else env
        connection = env.get("DataStorage", "").strip() or None
        blob_uri = env.get("DataStorage__blobServiceUri", "").strip() or None
        identity_based = any(
            env.get(f"DataStorage__{service}ServiceUri", "").strip()
            for service in ("blob", "queue", "table")
        )
        if connection is None and not identity_based:
            connection = cls.storage_connection
        backend = env.get("RETRAIN_BACKEND", cls.backend).strip().lower() or cls.backend
        if backend not in BACKENDS:
            raise ConfigurationError(
                f"RETRAIN_BACKEND: expected one of {', '.join(BACKENDS)}, got {backend!r}"
            )
        webhook = _url(env, "NOTIFY_WEBHOOK_URL")
        secret = env.get("NOTIFY_WEBHOOK_SECRET", "").strip() or None
        if secret and not webhook:
            raise ConfigurationError(
                "NOTIFY_WEBHOOK_SECRET: set without NOTIFY_WEBHOOK_URL (nothing would be sent)"
            )
        send_s, tick_s = _notify_seconds(env)
        runs_dir = env.get("LOCAL_RUNS_DIR", "").strip()
        models_dir = env.get("LOCAL_MODELS_DIR", "").strip()
        return cls(
            storage_connection=connection,
            storage_blob_uri=blob_uri,
            storage_client_id=env.get("DataStorage__clientId", "").strip()
            or env.get("AZURE_CLIENT_ID", "").strip()
            or None,
            landing_container=env.get("LANDING_CONTAINER", "").strip() or cls.landing_container,
            datasets_container=env.get("DATASETS_CONTAINER", "").strip() or cls.datasets_container,
            storage_queue_uri=env.get("DataStorage__queueServiceUri", "").strip() or None,
            storage_table_uri=env.get("DataStorage__tableServiceUri", "").strip() or None,
            runs_table=_table_name(env.get("RUNS_TABLE", "").strip() or cls.runs_table),
            settle_queue=_queue_name(env.get("SETTLE_QUEUE", "").strip() or cls.settle_queue),
            settle_seconds=_int(env, "BATCH_SETTLE_SECONDS", cls.settle_seconds, minimum=0),
            backend=backend,
            local_runs_dir=Path(runs_dir) if runs_dir else PROJECT_ROOT / ".runs",
            local_models_dir=Path(models_dir) if models_dir else PROJECT_ROOT / ".models",
            model_name=_model_name(env.get("MODEL_NAME", "").strip() or cls.model_name),
            promote_min_gain=_gain(env),
            serve_max_images=_int(env, "SERVE_MAX_IMAGES", cls.serve_max_images),
            serve_endpoint=_endpoint_name(env.get("SERVE_ENDPOINT", "").strip()),
            serve_identity=_identity_id(env.get("SERVE_IDENTITY", "").strip()),
            serve_instance_type=env.get("SERVE_INSTANCE_TYPE", "").strip()
            or cls.serve_instance_type,
            serve_smoke_images=_int(env, "SERVE_SMOKE_IMAGES", cls.serve_smoke_images, minimum=256),
            subscription_id=env.get("AZURE_SUBSCRIPTION_ID", "").strip() or None,
            resource_group=env.get("AZURE_RESOURCE_GROUP", "").strip() or None,
            workspace_name=env.get("AZUREML_WORKSPACE_NAME", "").strip() or None,
            client_id=env.get("AZURE_CLIENT_ID", "").strip() or None,
            cpu_compute=env.get("AZUREML_CPU_COMPUTE", "").strip() or cls.cpu_compute,
            gpu_compute=env.get("AZUREML_GPU_COMPUTE", "").strip() or cls.gpu_compute,
            gpu_instance_type=env.get("AZUREML_GPU_INSTANCE_TYPE", "").strip()
            or cls.gpu_instance_type,
            data_asset_name=env.get("DATA_ASSET_NAME", "").strip() or cls.data_asset_name,
            environment=env.get("AZUREML_ENVIRONMENT", "").strip() or None,
            experiment_name=env.get("EXPERIMENT_NAME", "").strip() or cls.experiment_name,
            epochs=_int(env, "TRAIN_EPOCHS", cls.epochs),
            batch_size=_int(env, "TRAIN_BATCH_SIZE", cls.batch_size),
            learning_rate=_float(env, "TRAIN_LEARNING_RATE", cls.learning_rate),
            seed=_int(env, "TRAIN_SEED", cls.seed, minimum=0),
            sweep_schedule=env.get("SWEEP_SCHEDULE", "").strip() or cls.sweep_schedule,
            sweep_concurrency=_int(env, "SWEEP_CONCURRENCY", cls.sweep_concurrency),
            sweep_budget_s=_budget(env),
            max_active_runs=_int(env, "MAX_ACTIVE_RUNS", cls.max_active_runs, minimum=0),
            job_events=_bool(env, "JOB_EVENTS", cls.job_events),
            notify_webhook_url=webhook,
            notify_webhook_secret=secret,
            notify_eventgrid_endpoint=_url(env, "NOTIFY_EVENTGRID_ENDPOINT"),
            notify_send_seconds=send_s,
            notify_tick_seconds=tick_s,
            notify_concurrency=_int(env, "NOTIFY_CONCURRENCY", cls.notify_concurrency),
        )

    def pipeline_settings(self, **overrides: object):  # -> pipeline_builder.PipelineSettings
        """The builder's view of these settings; ``overrides`` (e.g. epochs) win.

        ``AZUREML_ENVIRONMENT`` is checked here, so a malformed one is a configuration error
        naming the setting rather than a failed submission.
        """
        from pipeline_builder import PipelineSettings

        environment = self.environment
        if environment:
            name, _, version = environment.removeprefix("azureml:").partition(":")
            if not (name and version) or ":" in version:
                raise ConfigurationError(
                    f"AZUREML_ENVIRONMENT: expected NAME:VERSION, got {environment!r}"
                )
        values: dict[str, Any] = {
            "environment": environment,
            "cpu_compute": self.cpu_compute,
            "gpu_compute": self.gpu_compute,
            "gpu_instance_type": self.gpu_instance_type,
            "experiment_name": self.experiment_name,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return PipelineSettings(**values)
