"""The one error tree of the service.

::

    RetrainError                      base: every error we raise on purpose
    ├── PermanentError                recorded on the run, never retried
    │   ├── InvalidBatchError         bad data: names the file and the reason
    │   ├── InvalidRequestError       bad HTTP/CLI input: names the field
    │   ├── NotFoundError             unknown batch, asset or run
    │   ├── ConfigurationError        missing/bad setting, unknown workspace or compute
    │   ├── StorageRefusedError       storage refused a request of ours (an unexpected 4xx)
    │   └── SubmissionError           the backend refused the job (validation, authorization)
    ├── TransientError                storage/backend unavailable: raised so the host retries;
    │                                 the run key guarantees a retry never makes a second job
    └── CorruptDocumentError          our own stored JSON is damaged: a fault of ours, never the
                                      caller's (HTTP 500, logged; a blob event is retried)

A handler records a PermanentError on the run (status Rejected or Failed) and returns normally;
it lets a TransientError propagate.
"""

from __future__ import annotations


class RetrainError(Exception):
    """Base class for errors the service raises on purpose."""


class PermanentError(RetrainError):
    """A problem that retrying cannot fix; recorded on the run with its message."""


class InvalidBatchError(PermanentError):
    """A landed batch failed validation. ``file`` names the offending file."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


class InvalidRequestError(PermanentError):
    """Bad input from a caller. ``field`` names what was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFoundError(PermanentError):
    """An unknown batch, data asset, run or job."""


class ConfigurationError(PermanentError):
    """A missing or invalid setting, or a workspace/compute the service does not know."""


class StorageRefusedError(PermanentError):
    """Storage refused a request of ours for a reason retrying cannot fix (a 4xx we did not
    expect): our fault, never the caller's (HTTP 500; the details go to the log)."""


class SubmissionError(PermanentError):
    """The backend refused the job for a reason retrying cannot fix."""


class TransientError(RetrainError):
    """Storage or backend temporarily unavailable; safe to retry."""


def is_transient_status(status: int | None) -> bool:
    """Whether an HTTP answer means "try again later" (408, 429, 5xx), for every service alike."""
    return status in (408, 429) or (status is not None and status >= 500)


class CorruptDocumentError(RetrainError):
    """A blob that should hold our JSON document does not; ``etag`` lets a writer replace it."""

    def __init__(self, message: str, etag: str) -> None:
        super().__init__(message)
        self.etag = etag
