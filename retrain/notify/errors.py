"""Delivery outcomes -> the service's error tree, for every sink alike.

``TransientError`` (the outbox retries later): unreachable, timed out, 408, 429, 5xx.
``PermanentError``: any other answer. Messages name the sink and the status only, never the
URL (a webhook URL may carry a token in its query) or a secret, and chain no cause whose text
would carry the URL.
"""

from __future__ import annotations

from ..errors import (
    ConfigurationError,
    PermanentError,
    RetrainError,
    TransientError,
    is_transient_status,
)


def for_status(sink: str, status: int) -> RetrainError:
    """The error for a non-success answer ``status`` from ``sink`` (e.g. "the webhook")."""
    if is_transient_status(status):
        return TransientError(f"{sink} answered {status}; will retry")
    if status in (401, 403):
        return ConfigurationError(f"{sink} refused our credentials ({status})")
    return PermanentError(f"{sink} answered {status}")


def for_exception(sink: str, exc: Exception) -> RetrainError:
    """The error for an azure-core exception raised while sending to ``sink``. Its text is not
    kept: azure-core's messages can carry the URL."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    kind = type(exc).__name__
    if isinstance(exc, ServiceRequestError):
        return TransientError(f"{sink} could not be reached ({kind}); will retry")
    if isinstance(exc, ServiceResponseError):
        return TransientError(f"{sink} did not answer in time ({kind}); will retry")
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        # The credential could not get a token (no identity yet, endpoint hiccup): retry later.
        return TransientError(f"{sink}: no token from the credential ({kind}); will retry")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return for_status(sink, exc.status_code)
    return TransientError(f"{sink}: delivery failed ({kind}); will retry")
