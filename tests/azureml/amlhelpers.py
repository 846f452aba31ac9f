"""Requests and settings as the service would make them, for the Azure ML backend tests."""

from __future__ import annotations

from fake_azureml import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzureML, FakeCredential

from retrain import keys
from retrain.backends import BlobRef, LandingBatch, SubmitRequest, azureml_client
from retrain.settings import Settings

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
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def landing_batch(
    batch: str, etag: str = "0x8DC0001", account: str = "landingacct"
) -> LandingBatch:
    base = f"https://{account}.blob.core.windows.net/landing/{batch}"
    return LandingBatch(
        container="landing",
        batch=batch,
        blobs=tuple(
            BlobRef(name=f"{batch}/{f}", url=f"{base}/{f}", etag=f'"{etag}{i}"')
            for i, f in enumerate(IDX_FILES)
        ),
    )


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
