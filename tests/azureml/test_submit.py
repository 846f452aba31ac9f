"""Submission through the real azure-ai-ml SDK against the loopback fake: what goes on the wire."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from amlhelpers import aml_settings
from azure.storage.blob import BlobServiceClient
from fake_azureml import WORKSPACE_PATH, FakeAzureML

from retrain.backends import DataAsset, LocalFolder, RunStatus
from retrain.backends.azureml import AzureMLBackend
from retrain.errors import ConfigurationError, NotFoundError, SubmissionError, TransientError
from retrain.storage import BlobStore


def test_submit_registers_data_version_then_creates_the_job(backend, use_fake, make_request):
    request = make_request("batch-7")
    submission = backend.submit(request)

    (data_put,) = use_fake.calls("PUT", r"^/data/")
    assert data_put.tail == f"/data/fashion-mnist/versions/{request.data_version}"
    props = data_put.body["properties"]
    assert props["dataType"] == "uri_folder"
    settings = aml_settings()
    store = BlobStore(settings)
    version_folder = f"fashion-mnist/{request.data_version}/"
    assert props["dataUri"] == store.url(settings.datasets_container, version_folder)
    assert f"/{settings.landing_container}/" not in props["dataUri"]
    assert props["tags"]["source"] == f"{settings.landing_container}/batch-7"
    assert props["tags"]["run_id"] == request.run_id
    for blob in request.data.blobs:
        file = blob.name.rsplit("/", 1)[1]
        assert props["tags"][f"url:{file}"] == blob.url
        assert props["tags"][f"etag:{file}"] == blob.etag.strip('"')

    (job_put,) = use_fake.calls("PUT", r"^/jobs/")
    assert job_put.tail == f"/jobs/{request.job_name}"
    job = job_put.body["properties"]
    assert job["jobType"] == "Pipeline"
    assert job["experimentName"] == "fashion-retraining"
    assert job["inputs"]["pipeline_input_data"] == {
        "uri": f"{WORKSPACE_PATH}/data/fashion-mnist/versions/{request.data_version}",
        "jobInputType": "uri_folder",
    }
    assert set(job["jobs"]) == {"prepare_data_node", "train_node", "score_node"}
    assert job["jobs"]["train_node"]["computeId"] == f"{WORKSPACE_PATH}/computes/gpu-cluster"
    assert "computeId" not in job["jobs"]["prepare_data_node"]  # on the pipeline's default
    assert "computeId" not in job["jobs"]["score_node"]
    assert job["settings"]["default_compute"] == f"{WORKSPACE_PATH}/computes/cpu-cluster"
    # The data version is registered before the job that reads it is created.
    assert use_fake.requests.index(data_put) < use_fake.requests.index(job_put)

    assert submission.job_name == request.job_name
    assert submission.status is RunStatus.SUBMITTED
    assert submission.data_asset == f"fashion-mnist:{request.data_version}"
    assert submission.already_existed is False
    assert submission.studio_url.startswith(f"https://ml.azure.com/runs/{request.job_name}?")


def test_settings_choose_computes_experiment_and_training_parameters(use_fake, make_request):
    settings = aml_settings(
        cpu_compute="cpu-small", gpu_compute="gpu-big", experiment_name="nightly", epochs=3
    )
    use_fake.computes |= {"cpu-small", "gpu-big"}
    request = make_request(
        cpu_compute="cpu-small", gpu_compute="gpu-big", experiment_name="nightly", epochs=3
    )
    AzureMLBackend(settings).submit(request)

    (job_put,) = use_fake.calls("PUT", r"^/jobs/")
    job = job_put.body["properties"]
    assert job["experimentName"] == "nightly"
    assert job["jobs"]["train_node"]["computeId"].endswith("/computes/gpu-big")
    assert job["settings"]["default_compute"].endswith("/computes/cpu-small")
    assert job["jobs"]["train_node"]["inputs"]["epochs"]["value"] == "3"


def test_serverless_gpu_sends_an_instance_type_instead_of_a_cluster(use_fake, make_request):
    settings = aml_settings(gpu_compute="serverless")
    AzureMLBackend(settings).submit(make_request(gpu_compute="serverless"))

    (job_put,) = use_fake.calls("PUT", r"^/jobs/")
    train = job_put.body["properties"]["jobs"]["train_node"]
    assert train["computeId"] == f"{WORKSPACE_PATH}/computes/serverless"
    assert train["resources"]["instance_type"] == settings.gpu_instance_type
    assert not use_fake.calls("GET", r"^/computes/serverless")


def test_a_champion_goes_to_score_node_as_a_model_input(backend, use_fake, make_request):
    request = make_request("batch-c")
    champion = replace(
        request.pipeline, champion_model="azureml:fashion-mnist-cnn:5", champion_version="5"
    )
    backend.submit(replace(request, pipeline=champion))
    backend.submit(make_request("batch-d"))  # no champion: a first run

    with_champion, without = (put.body["properties"] for put in use_fake.calls("PUT", r"^/jobs/"))
    assert set(with_champion["jobs"]) == {"prepare_data_node", "train_node", "score_node"}
    inputs = with_champion["jobs"]["score_node"]["inputs"]
    assert inputs["champion_model"] == {  # the SDK turns NAME:VERSION into the resource id
        "uri": f"{WORKSPACE_PATH}/models/fashion-mnist-cnn/versions/5",
        "job_input_type": "custom_model",
    }
    assert inputs["champion_version"] == {"value": "5", "job_input_type": "literal"}
    assert not use_fake.calls("GET", r"^/models/")
    assert set(with_champion["inputs"]) == {"pipeline_input_data"}  # the same pipeline ports
    assert set(without["jobs"]["score_node"]["inputs"]) == {"input_data", "input_model"}


def test_second_submission_of_the_same_batch_returns_the_same_job(backend, use_fake, make_request):
    first = backend.submit(make_request("batch-7"))
    again = backend.submit(make_request("batch-7"))

    assert len(use_fake.calls("PUT", r"^/jobs/")) == 1
    assert len(use_fake.calls("PUT", r"^/data/")) == 1
    assert again.already_existed is True
    assert (again.job_name, again.studio_url, again.data_asset) == (
        first.job_name,
        first.studio_url,
        first.data_asset,
    )


def test_job_created_by_a_racing_submitter_is_read_back(backend, use_fake, make_request):
    request = make_request("batch-7")
    backend.submit(request)
    # A second submitter's look-up misses the job (it was created in between), so it PUTs:
    use_fake.fail_next(rf"/jobs/{request.job_name}$", status=404, method="GET")
    again = backend.submit(request)

    job_puts = use_fake.calls("PUT", r"^/jobs/")
    assert [p.status for p in job_puts] == [201, 400]  # the service refused the duplicate
    assert again.already_existed is True
    assert again.job_name == request.job_name


@pytest.mark.parametrize("inner", [("Immutable", "JobPropertyImmutable"), ()], ids=["code", "text"])
def test_the_job_name_conflict_is_known_by_its_code_or_its_words(
    backend, use_fake, make_request, inner
):
    request = make_request("batch-7")
    backend.submit(request)
    use_fake.job_exists_inner = inner
    use_fake.fail_next(rf"/jobs/{request.job_name}$", status=404, method="GET")

    again = backend.submit(request)

    assert [p.status for p in use_fake.calls("PUT", r"^/jobs/")] == [201, 400]
    assert (again.job_name, again.already_existed) == (request.job_name, True)


def test_a_job_conflict_whose_read_back_finds_nothing_raises_the_services_answer(
    backend, use_fake, make_request
):
    request = make_request("batch-7")
    backend.submit(request)
    use_fake.fail_next(rf"/jobs/{request.job_name}$", count=2, status=404, method="GET")

    with pytest.raises(
        SubmissionError, match=r"HTTP 400: \(UserError\) A job with this name already exists"
    ):
        backend.submit(request)
    assert len(use_fake.calls("GET", rf"^/jobs/{request.job_name}$")) == 3  # 1st + 2 tries


def _within(seconds: float, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` on a daemon thread: a hang fails the test instead of blocking the suite."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call(*args)
        except BaseException as exc:  # re-raised on the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{call.__qualname__} still running after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_another_already_exists_is_not_taken_for_the_job(cold_process, make_request):
    """Two processes uploading the same component code at once: storage answers 409 "The
    specified blob already exists". That is no repeat of the job: nothing is read back as one,
    and the next try (the host's retry) submits."""
    backend = AzureMLBackend(aml_settings())
    request = make_request("batch-race")
    cold_process.fail_next(r"^/devstoreaccount1/.*/LocalUpload/", status=409, method="PUT")

    with pytest.raises(TransientError, match="specified blob already exists"):
        _within(60, backend.submit, request)  # with show_progress off, the SDK hangs here
    assert not cold_process.calls("PUT", r"^/jobs/")
    job_reads = cold_process.calls("GET", rf"^/jobs/{request.job_name}$")
    assert len(job_reads) == 1  # the look-up before submitting; no read-back

    submission = backend.submit(request)
    assert submission.already_existed is False
    assert [p.status for p in cold_process.calls("PUT", r"^/jobs/")] == [201]


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_unavailability_are_retried_by_the_sdk_policy(
    backend, use_fake, make_request, status
):
    request = make_request()
    use_fake.fail_next(r"/jobs/", count=2, status=status, method="PUT")
    use_fake.fail_next(r"/data/", count=1, status=status, method="PUT")

    submission = backend.submit(request)

    assert [p.status for p in use_fake.calls("PUT", r"^/jobs/")] == [status, status, 201]
    assert [p.status for p in use_fake.calls("PUT", r"^/data/")] == [status, 201]
    assert submission.job_name == request.job_name
    assert use_fake.job(request.job_name)["properties"]["status"] == "NotStarted"


def test_unavailable_beyond_the_retry_budget_is_transient_and_creates_nothing(
    backend, use_fake, make_request
):
    use_fake.fail_next(r"/jobs/", count=50, status=503, method="PUT")
    with pytest.raises(TransientError, match=r"HTTP 503"):
        backend.submit(make_request())
    assert not [r for r in use_fake.calls("PUT", r"^/jobs/") if r.status < 300]


def test_unknown_compute_fails_with_a_clear_permanent_error(backend, use_fake, make_request):
    use_fake.computes.discard("gpu-cluster")
    with pytest.raises(ConfigurationError) as caught:
        backend.submit(make_request())
    message = str(caught.value)
    assert "\n" not in message
    assert "train_node.compute" in message and "gpu-cluster" in message
    assert not use_fake.calls("PUT", r"^/jobs/")


def test_forbidden_is_a_permanent_error_naming_the_role(backend, use_fake, make_request):
    use_fake.fail_next(r"/jobs/", status=403, method="GET")
    with pytest.raises(SubmissionError, match=r"not authorized.*HTTP 403.*AzureML Data Scientist"):
        backend.submit(make_request())
    assert not use_fake.calls("PUT", "")


def test_a_refused_token_is_a_configuration_error(backend, use_fake, make_request):
    use_fake.fail_next(r"/jobs/", count=5, status=401)
    with pytest.raises(ConfigurationError, match=r"authentication failed.*InvalidAuthentication"):
        backend.submit(make_request())
    assert not use_fake.calls("PUT", "")


def test_missing_workspace_is_a_configuration_error(use_fake, make_request):
    settings = aml_settings(workspace_name="no-such-workspace")
    with pytest.raises(ConfigurationError, match=r"not found.*no-such-workspace"):
        AzureMLBackend(settings).submit(make_request())


def test_a_data_version_left_by_a_failed_attempt_is_reused(backend, use_fake, make_request):
    request = make_request()
    use_fake.fail_next(r"/jobs/", status=400, method="PUT")
    with pytest.raises(SubmissionError):
        backend.submit(request)
    submission = backend.submit(request)

    assert [p.status for p in use_fake.calls("PUT", r"^/data/")] == [201]
    assert submission.already_existed is False
    assert use_fake.job(request.job_name)


def test_a_data_version_pointing_elsewhere_is_refused(backend, use_fake, make_request):
    request = make_request("batch-1")
    backend.submit(request)
    clash = replace(make_request("batch-2"), data_version=request.data_version)  # other folder
    with pytest.raises(
        SubmissionError, match=r"already holds a copy of other content, not .*batch-2/"
    ):
        backend.submit(clash)
    assert [p.status for p in use_fake.calls("PUT", r"^/data/")] == [201]


def test_a_reupload_after_submission_leaves_the_data_version_byte_identical(
    backend, use_fake, make_request
):
    settings = aml_settings()
    store = BlobStore(settings)
    request = make_request("batch-7")
    keyed = {
        b.name.rsplit("/", 1)[1]: store.read_range(settings.landing_container, b.name, 0, 1 << 20)
        for b in request.data.blobs
    }
    backend.submit(request)
    for blob in request.data.blobs:  # the user lands new bytes under the same names
        store.put(settings.landing_container, blob.name, b"re-uploaded " + blob.name.encode())

    prefix = f"fashion-mnist/{request.data_version}/"
    copies = store.list(settings.datasets_container, prefix)
    assert {c.name.removeprefix(prefix) for c in copies} == set(keyed)
    for copy in copies:
        data = store.read_range(settings.datasets_container, copy.name, 0, 1 << 20)
        assert data == keyed[copy.name.removeprefix(prefix)]
    # A retry of the same submission (the job already exists) changes nothing either.
    assert backend.submit(request).already_existed is True
    assert [store.read_range(settings.datasets_container, c.name, 0, 1 << 20) for c in copies] == [
        keyed[c.name.removeprefix(prefix)] for c in copies
    ]


def test_a_batch_that_changed_since_keying_is_refused_before_anything_is_registered(
    backend, use_fake, make_request
):
    settings = aml_settings()
    store = BlobStore(settings)
    request = make_request("batch-7")
    store.put(settings.landing_container, request.data.blobs[2].name, b"newer content")

    with pytest.raises(SubmissionError, match="changed since the run was keyed"):
        backend.submit(request)
    assert use_fake.calls("PUT", r"^/data/") == []
    assert use_fake.calls("PUT", r"^/jobs/") == []
    names = [c.name for c in store.list(settings.datasets_container)]
    assert request.data.blobs[2].name.rsplit("/", 1)[1] not in "".join(names)


def test_an_existing_data_asset_is_used_as_is(backend, use_fake, make_request):
    asset = _register_asset(use_fake, "curated", "3")
    request = replace(make_request(), data=asset, data_version="")
    submission = backend.submit(request)

    assert not use_fake.calls("PUT", r"^/data/")
    (job_put,) = use_fake.calls("PUT", r"^/jobs/")
    uri = job_put.body["properties"]["inputs"]["pipeline_input_data"]["uri"]
    assert uri == f"{WORKSPACE_PATH}/data/curated/versions/3"
    assert submission.data_asset == "curated:3"


def test_an_unknown_data_asset_is_not_found(backend, use_fake, make_request):
    request = replace(make_request(), data=DataAsset("nope", "9"), data_version="")
    with pytest.raises(NotFoundError, match="azureml:nope:9"):
        backend.submit(request)
    assert not use_fake.calls("PUT", "")


def _register_asset(fake: FakeAzureML, name: str, version: str) -> DataAsset:
    fake.handle(
        "PUT",
        f"{WORKSPACE_PATH}/data/{name}/versions/{version}",
        {},
        {
            "properties": {
                "dataType": "uri_folder",
                "dataUri": "https://x.blob.core.windows.net/c/p/",
            }
        },
    )
    return DataAsset(name, version)


def _blob_names(fake: FakeAzureML) -> list[str]:
    service = BlobServiceClient.from_connection_string(fake.storage_connection)
    container = service.get_container_client(fake.code_container)
    return sorted(b.name for b in container.list_blobs()) if container.exists() else []


def test_a_local_folder_is_uploaded_to_the_workspace_and_registered(
    backend, use_fake, make_request, tmp_path
):
    from retrain.data.fashion_mnist import write_batch

    folder = tmp_path / "my-batch"
    write_batch(folder, n_train=20, n_test=10)
    request = replace(make_request(), data=LocalFolder(folder))
    submission = backend.submit(request)

    (data_put,) = use_fake.calls("PUT", r"^/data/")
    uri = data_put.body["properties"]["dataUri"]
    assert uri.startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")
    assert uri.endswith("/my-batch")
    stored = [name for name in _blob_names(use_fake) if name.startswith(uri.split("/paths/")[1])]
    assert sorted(n.rsplit("/", 1)[1] for n in stored) == sorted(p.name for p in folder.iterdir())
    assert submission.data_asset == f"fashion-mnist:{request.data_version}"


def test_a_failed_local_folder_upload_is_raised_not_waited_on_forever(
    backend, use_fake, make_request, tmp_path
):
    from retrain.data.fashion_mnist import write_batch

    write_batch(tmp_path / "my-batch", n_train=20, n_test=10)
    request = replace(make_request(), data=LocalFolder(tmp_path / "my-batch"))
    use_fake.fail_next(r"^/devstoreaccount1/.*/my-batch/", status=409, method="PUT")

    with pytest.raises(TransientError, match="specified blob already exists"):
        _within(60, backend.submit, request)
    assert not use_fake.calls("PUT", r"^/(data|jobs)/")
