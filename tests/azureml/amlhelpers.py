"""Requests and settings as the service would make them, for the Azure ML backend tests."""

from __future__ import annotations

from fake_azureml import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzureML, FakeCredential

from retrain import keys
from retrain.backends import BlobRef, LandingBatch, SubmitRequest, azureml_client
from retrain.settings import Settings
from retrain.storage import BlobStore

# The suite's Azurite, with containers of this test's own: conftest's autouse fixture sets it.
# A landed batch is real blobs there, so the backend's ETag-guarded snapshot copies real bytes.
STORAGE: dict[str, str] = {}

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def aml_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "backend": "azureml",
        "subscription_id": SUBSCRIPTION,
        "resource_group": RESOURCE_GROUP,
        "workspace_name": WORKSPACE,
        **STORAGE,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def landing_batch(batch: str, etag: str = "0x8DC0001") -> LandingBatch:
    """Batch ``batch`` landed in this test's Azurite container, ``etag`` choosing its content.
    Landing the same content again keeps the blobs (and so their ETags and the run key)."""
    settings = aml_settings()
    store, container = BlobStore(settings), settings.landing_container
    store.ensure_container(container)
    refs = []
    for i, file in enumerate(IDX_FILES):
        name, content = f"{batch}/{file}", f"{batch}/{file}:{etag}{i}".encode()
        found = store.list(container, name, limit=1)
        if (
            found
            and found[0].name == name
            and store.read_range(container, name, 0, len(content) + 1) == content
        ):
            refs.append(BlobRef(name, found[0].url, found[0].etag))
        else:
            refs.append(
                BlobRef(name, store.url(container, name), store.put(container, name, content))
            )
    return LandingBatch(container=container, batch=batch, blobs=tuple(refs))


def request_for(batch: LandingBatch, settings: Settings | None = None) -> SubmitRequest:
    """The request the service makes for a landed batch: names fixed by the content key."""
    settings = settings or aml_settings()
    key = keys.run_key(f"{batch.container}/{batch.batch}", [(b.name, b.etag) for b in batch.blobs])
    return SubmitRequest(
        run_id=key,
        job_name=keys.job_name(key),
        data=batch,
        data_version=keys.data_version(key),
        pipeline=settings.pipeline_settings(job_name=keys.job_name(key)),
    )


def point_client_at(fake: FakeAzureML) -> None:
    azureml_client.configure(
        credential=FakeCredential(),
        endpoint=fake.url,
        ca_file=fake.ca_file,
        retry_backoff_factor=0.01,  # the policy is the real one; only its sleeps are shortened
    )
