"""One worker process submitting one batch to the fake at URL (tests start two at once).

python tests/azureml/amlhost.py URL CA_FILE BATCH, with AMLHOST_STORAGE holding the test's
storage settings as JSON (its Azurite connection and containers), where the batch lands.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE)]

import amlhelpers  # noqa: E402
from amlhelpers import aml_settings, landing_batch, request_for  # noqa: E402
from fake_azureml import FakeCredential  # noqa: E402

from retrain.backends import azureml_client  # noqa: E402
from retrain.backends.azureml import AzureMLBackend  # noqa: E402


def main(url: str, ca_file: str, batch: str) -> None:
    amlhelpers.STORAGE.update(json.loads(os.environ["AMLHOST_STORAGE"]))
    azureml_client.configure(
        credential=FakeCredential(), endpoint=url, ca_file=ca_file, retry_backoff_factor=0.01
    )
    submission = AzureMLBackend(aml_settings()).submit(request_for(landing_batch(batch)))
    print(submission.job_name)


if __name__ == "__main__":
    main(*sys.argv[1:4])
