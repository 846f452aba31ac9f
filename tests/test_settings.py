"""App settings: defaults for a laptop, one clear error per bad value, identity fallbacks."""

from __future__ import annotations

import pytest

from retrain.errors import ConfigurationError
from retrain.settings import PROJECT_ROOT, Settings


def test_defaults_suit_a_laptop() -> None:
    settings = Settings.from_env({})
    assert settings.storage_connection == "UseDevelopmentStorage=true"
    assert settings.backend == "local"
    assert settings.local_runs_dir == PROJECT_ROOT / ".runs"
    assert (settings.landing_container, settings.runs_table) == ("landing", "runs")
    assert (settings.settle_seconds, settings.settle_queue) == (30, "retrain-settle")


def test_identity_based_storage_needs_no_connection_string() -> None:
    settings = Settings.from_env(
        {
            "DataStorage__blobServiceUri": "https://acct.blob.core.windows.net",
            "AZURE_CLIENT_ID": "ml-identity",
        }
    )
    assert settings.storage_connection is None
    assert settings.storage_blob_uri == "https://acct.blob.core.windows.net"
    assert settings.storage_client_id == "ml-identity"
    assert settings.client_id == "ml-identity"


def test_storage_client_id_prefers_the_connection_setting() -> None:
    settings = Settings.from_env({"DataStorage__clientId": "storage-id", "AZURE_CLIENT_ID": "ml"})
    assert settings.storage_client_id == "storage-id"
    assert settings.client_id == "ml"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRAIN_EPOCHS", "ten", "TRAIN_EPOCHS: expected an integer"),
        ("TRAIN_EPOCHS", "0", "TRAIN_EPOCHS: must be at least 1"),
        ("TRAIN_LEARNING_RATE", "-1", "TRAIN_LEARNING_RATE: must be positive"),
        ("TRAIN_LEARNING_RATE", "fast", "TRAIN_LEARNING_RATE: expected a number"),
        ("RETRAIN_BACKEND", "sagemaker", "RETRAIN_BACKEND: expected one of local, azureml"),
        ("RUNS_TABLE", "runs-table", "RUNS_TABLE: expected 3 to 63 letters and digits"),
        ("BATCH_SETTLE_SECONDS", "-1", "BATCH_SETTLE_SECONDS: must be at least 0"),
        ("MODEL_NAME", "my model", "MODEL_NAME: expected letters, digits"),
        ("PROMOTE_MIN_GAIN", "1", "PROMOTE_MIN_GAIN: expected an accuracy difference"),
        ("PROMOTE_MIN_GAIN", "-0.1", "PROMOTE_MIN_GAIN: expected an accuracy difference"),
        ("PROMOTE_MIN_GAIN", "half", "PROMOTE_MIN_GAIN: expected a number"),
    ],
)
def test_a_bad_value_names_the_setting(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({name: value})


def test_pipeline_settings_take_overrides_but_ignore_none() -> None:
    settings = Settings.from_env({"TRAIN_EPOCHS": "7", "AZUREML_GPU_COMPUTE": "serverless"})
    pipeline = settings.pipeline_settings(epochs=None, job_name="fashion-retrain-abc")
    assert pipeline.epochs == 7
    assert pipeline.gpu_compute == "serverless"
    assert pipeline.job_name == "fashion-retrain-abc"
    assert settings.pipeline_settings(epochs=2).epochs == 2


@pytest.mark.parametrize(
    ("raw", "rate"), [("", None), ("auto", None), ("AUTO", None), ("0.2", 0.2)]
)
def test_the_learning_rate_is_auto_unless_a_number_is_given(raw: str, rate: float | None) -> None:
    settings = Settings.from_env({"TRAIN_LEARNING_RATE": raw})
    assert settings.learning_rate == rate
    assert settings.pipeline_settings().learning_rate == rate


def test_model_delivery_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.model_name, defaults.promote_min_gain) == ("fashion-mnist-cnn", 0.0)
    assert defaults.local_models_dir.name == ".models"
    settings = Settings.from_env({"MODEL_NAME": "shoes.v2", "PROMOTE_MIN_GAIN": "0.005"})
    assert (settings.model_name, settings.promote_min_gain) == ("shoes.v2", 0.005)
