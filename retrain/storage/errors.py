"""azure-core errors -> the service's error tree, for every storage client alike.

``TransientError`` (throttling, 5xx, timeouts, connection trouble, after the SDK's retries),
``NotFoundError``, ``ConfigurationError`` (access denied, bad credential), ``ETagMismatch`` (an
ETag guard failed: someone else wrote first) and ``AlreadyExists`` (a conditional create lost).
Messages name what was being done, never the account's host or a credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import (
    ConfigurationError,
    NotFoundError,
    StorageRefusedError,
    TransientError,
    is_transient_status,
)


class ETagMismatch(Exception):
    """A conditional write lost: the blob or entity changed (or went) since it was read.
    ``row``: for a table transaction, the row whose operation failed, when storage said."""

    def __init__(self, message: str = "", row: str | None = None) -> None:
        super().__init__(message)
        self.row = row


class AlreadyExists(ETagMismatch):
    """A create lost: the blob or entity already exists."""


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Translate azure-core errors raised inside into the service's error tree."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except ResourceNotFoundError as exc:
        raise NotFoundError(f"{what}: not found") from exc
    except ResourceExistsError as exc:
        raise AlreadyExists(what) from exc
    except ResourceModifiedError as exc:
        raise ETagMismatch(what) from exc
    except ClientAuthenticationError as exc:
        raise ConfigurationError(f"{what}: storage refused the credential") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"{what}: storage is unreachable") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status == 412:
            raise ETagMismatch(what) from exc
        if status == 409 and "AlreadyExists" in str(getattr(exc, "error_code", "") or ""):
            raise AlreadyExists(what) from exc
        if is_transient_status(status):
            raise TransientError(f"{what}: storage answered {status}") from exc
        if status == 403:
            raise ConfigurationError(
                f"{what}: storage denied access (403); check the identity's role assignment"
            ) from exc
        raise StorageRefusedError(f"{what}: storage answered {status} ({exc.reason})") from exc
