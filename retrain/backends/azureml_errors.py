"""What Azure ML's answers mean: SDK and HTTP errors mapped onto the service's error tree.

=====================================  =========================================================
the SDK or the service answers         the backend raises
=====================================  =========================================================
connection dropped, timeout            TransientError (after azure-core's RetryPolicy gave up)
HTTP 408, 429, 5xx                     TransientError (likewise)
storage 409 BlobAlreadyExists          TransientError: two processes uploaded the same code at
                                       once; the next try finds it registered by its hash
authentication refused                 ConfigurationError (the app's identity)
HTTP 401, 403                          SubmissionError naming the role to grant
HTTP 404                               ConfigurationError (workspace settings)
any other HTTP error                   SubmissionError with the service's first line
SDK validation (MlException)           ConfigurationError for a compute, SubmissionError else
=====================================  =========================================================

A repeat submission is told apart from other refusals by ``is_job_name_conflict`` alone: the
service's answer to a PUT of an existing job name, never any message that says "already exists".
azure.ai.ml and azure.core are imported only inside these functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import (
    ConfigurationError,
    PermanentError,
    SubmissionError,
    TransientError,
    is_transient_status,
)

# The service's answer to a PUT of a job name that exists with another body: HTTP 400, code
# UserError, "A job with this name already exists. ... Only description, tags, displayName,
# properties, and isArchived can be updated.", inner error codes Immutable > JobPropertyImmutable.
JOB_EXISTS_MESSAGE = "A job with this name already exists"
JOB_EXISTS_CODE = "JobPropertyImmutable"
BLOB_EXISTS_CODE = "BlobAlreadyExists"


def is_job_name_conflict(exc: BaseException, job_name: str) -> bool:
    """Whether ``exc`` is the service refusing our PUT of job ``job_name`` because a job of that
    name exists: the request was that PUT, and the answer carries the conflict's inner code or,
    from a service that sends no inner error, its message."""
    from azure.core.exceptions import HttpResponseError

    if not isinstance(exc, HttpResponseError) or exc.response is None:
        return False
    request = getattr(exc.response, "request", None)
    if request is None or request.method != "PUT":
        return False
    if not unquote(urlsplit(request.url).path).endswith(f"/jobs/{job_name}"):
        return False
    error = _error_body(exc)
    message = str(error.get("message") or exc.message or "")
    return JOB_EXISTS_CODE in _inner_codes(error) or message.startswith(JOB_EXISTS_MESSAGE)


def _error_body(exc: Any) -> Mapping[str, Any]:
    """The ``error`` object of an HTTP error's JSON body ({} when there is none)."""
    try:
        body = json.loads(exc.response.text())
    except Exception:  # no body, not JSON, or a streamed body never read: no error object
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _inner_codes(error: Mapping[str, Any]) -> list[str]:
    """The codes down the chain of inner errors (``innerError``, or OData's ``innererror``)."""
    codes: list[str] = []
    node = error.get("innerError") or error.get("innererror")
    while isinstance(node, dict) and len(codes) < 16:
        codes.append(str(node.get("code")))
        node = node.get("innerError") or node.get("innererror")
    return codes


def one_line(exc: BaseException) -> str:
    """The first meaningful line of an SDK error (they span many lines of JSON)."""
    text = getattr(exc, "message", None) or str(exc)
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and parsed.get("errors"):  # pipeline validation result
        return "; ".join(
            f"{err.get('path', '?')}: {str(err.get('message', '')).splitlines()[0]}"
            for err in parsed["errors"]
        )
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextmanager
def translate(action: str) -> Iterator[None]:
    """Turn SDK and HTTP errors into the service's error tree (table above), one line each."""
    from azure.ai.ml.exceptions import MlException
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except (PermanentError, TransientError):
        raise
    except ClientAuthenticationError as exc:
        raise ConfigurationError(f"{action}: authentication failed: {one_line(exc)}") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"{action}: Azure ML unreachable: {one_line(exc)}") from exc
    except HttpResponseError as exc:
        status, message = exc.status_code, one_line(exc)
        if is_transient_status(status):
            raise TransientError(f"{action}: HTTP {status}: {message}") from exc
        if status == 409 and getattr(exc, "error_code", None) == BLOB_EXISTS_CODE:
            raise TransientError(
                f"{action}: a concurrent upload of the same files: {message}"
            ) from exc
        if status in (401, 403):
            raise SubmissionError(
                f"{action}: not authorized (HTTP {status}); give the app's identity the "
                f"AzureML Data Scientist role on the workspace: {message}"
            ) from exc
        if status == 404:
            raise ConfigurationError(
                f"{action}: not found (check the workspace settings): {message}"
            ) from exc
        raise SubmissionError(f"{action}: HTTP {status}: {message}") from exc
    except MlException as exc:
        message = one_line(exc)
        if ".compute:" in message or "compute" in message.split(":", 1)[0]:
            raise ConfigurationError(f"{action}: {message}") from exc
        raise SubmissionError(f"{action}: {message}") from exc
