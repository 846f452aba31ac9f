"""Where events go: a signed HTTP webhook and an Azure Event Grid topic, each optional.

A sink sends one event and either returns (delivered) or raises ``TransientError`` (the outbox
retries later) or a ``PermanentError``. Each makes a few quick connection retries of its own
(azure-core's ``RetryPolicy``); retrying an answered 5xx or 429 is left to the outbox, so a
receiver's ``Retry-After`` can never stall the sweep. A send, its retries included, ends by its
total ``deadline`` (``NOTIFY_SEND_SECONDS``; ``deadline.py``), however slowly a receiver answers.
Receivers dedupe on the event ``id``.
SDKs are imported when a sink is built or first sends, never when this module is imported.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from ..errors import ConfigurationError, TransientError
from .errors import for_exception, for_status
from .events import CONTENT_TYPE, body
from .signing import HEADER, signature

if TYPE_CHECKING:
    from azure.core import PipelineClient
    from azure.core.credentials import TokenCredential
    from azure.eventgrid import EventGridPublisherClient

    from ..settings import Settings

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
USER_AGENT = "fashion-retrain-notify"
TIMEOUT_S = 10.0  # each connect and each read
DEADLINE_S = 30.0  # the whole send
# azure-core options per request: two quick retries of a connection that failed (the request
# never arrived, so a POST is safe to repeat), none of a timed-out read or of an answered status.
RETRIES: dict[str, Any] = {
    "retry_total": 2,
    "retry_connect": 2,
    "retry_read": 0,
    "retry_status": 0,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 2,
    "retry_on_methods": frozenset({"POST"}),
}


class Sink(Protocol):
    """One destination. ``name`` is stable: the outbox keys delivery state on it."""

    name: str

    def send(self, event: Mapping[str, Any]) -> None: ...


def _options(timeout: float, deadline: float) -> dict[str, Any]:
    """Per-request options; ``timeout`` (RetryPolicy's) caps every connect by the time left."""
    timeout = min(timeout, deadline)
    return {**RETRIES, "connection_timeout": timeout, "read_timeout": timeout, "timeout": deadline}


def _transport() -> Any:  # -> RequestsTransport
    """azure-core's requests transport on a session whose sends obey their ``Deadline``."""
    from azure.core.pipeline.transport import RequestsTransport

    from .deadline import session

    return RequestsTransport(session=session())


def _late(sink: str, deadline: float) -> TransientError:
    return TransientError(f"{sink} did not answer within {deadline:g} s; will retry")


def _checked_url(url: str, setting: str, *, loopback_http: bool) -> str:
    """``url`` if it is https (or, with ``loopback_http``, http to this machine); the message
    never repeats the URL."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise ConfigurationError(f"{setting}: not a valid URL") from None
    if not host or parts.scheme not in ("https", "http"):
        raise ConfigurationError(f"{setting}: expected an https:// URL")
    if parts.scheme == "http" and not (loopback_http and host in LOOPBACK):
        only = " (plain http only for localhost)" if loopback_http else ""
        raise ConfigurationError(f"{setting}: expected an https:// URL{only}")
    return url


class WebhookSink:
    """POSTs the event's canonical bytes, signed: ``X-Retrain-Signature: sha256=<hex>``."""

    name = "webhook"
    what = "the webhook"

    def __init__(
        self, url: str, secret: str, timeout: float = TIMEOUT_S, deadline: float = DEADLINE_S
    ) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import RetryPolicy, UserAgentPolicy

        if not secret:
            raise ConfigurationError("NOTIFY_WEBHOOK_SECRET: required to sign webhook bodies")
        self._url = _checked_url(url, "NOTIFY_WEBHOOK_URL", loopback_http=True)
        self._secret = secret
        self._deadline = deadline
        self._options = _options(timeout, deadline)
        # No RedirectPolicy: a redirect is not followed (the body is signed for this receiver).
        self._client: PipelineClient = PipelineClient(
            base_url=url,
            policies=[UserAgentPolicy(USER_AGENT), RetryPolicy()],
            transport=_transport(),
        )

    def send(self, event: Mapping[str, Any]) -> None:
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        from .deadline import Deadline

        payload = body(event)
        request = HttpRequest(
            "POST",
            self._url,
            content=payload,
            headers={"Content-Type": CONTENT_TYPE, HEADER: signature(payload, self._secret)},
        )
        with Deadline(self._deadline) as deadline:
            try:
                response = self._client.send_request(request, **self._options)
            except AzureError as exc:
                if deadline.expired:
                    raise _late(self.what, self._deadline) from None
                raise for_exception(self.what, exc) from None  # the cause's text has the URL
        if not 200 <= response.status_code < 300:
            raise for_status(self.what, response.status_code)

    def close(self) -> None:
        self._client.close()


class EventGridSink:
    """Publishes the same CloudEvent to an Event Grid topic (basic tier, CloudEvents schema).

    ``credential`` is any TokenCredential (the identity needs "EventGrid Data Sender" on the
    topic); None builds ``DefaultAzureCredential`` (user-assigned identity ``client_id`` if
    given) on first send.
    """

    name = "eventgrid"
    what = "Event Grid"

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential | None = None,
        *,
        client_id: str | None = None,
        timeout: float = TIMEOUT_S,
        deadline: float = DEADLINE_S,
    ) -> None:
        self._endpoint = _checked_url(endpoint, "NOTIFY_EVENTGRID_ENDPOINT", loopback_http=False)
        self._credential = credential
        self._client_id = client_id
        self._deadline = deadline
        self._options = _options(timeout, deadline)
        self._client_instance: EventGridPublisherClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> EventGridPublisherClient:
        with self._lock:
            if self._client_instance is None:
                from azure.eventgrid import EventGridPublisherClient

                if self._credential is None:
                    from azure.identity import DefaultAzureCredential

                    self._credential = DefaultAzureCredential(
                        managed_identity_client_id=self._client_id
                    )
                self._client_instance = EventGridPublisherClient(
                    self._endpoint, self._credential, transport=_transport()
                )
            return self._client_instance

    def send(self, event: Mapping[str, Any]) -> None:
        from azure.core.exceptions import AzureError

        from .deadline import Deadline

        client = self._client()
        with Deadline(self._deadline) as deadline:
            try:
                # A dict with the CloudEvents attributes is sent as it is, in a batch of one.
                client.send([dict(event)], **self._options)
            except AzureError as exc:
                if deadline.expired:
                    raise _late(self.what, self._deadline) from None
                raise for_exception(self.what, exc) from None

    def close(self) -> None:
        if self._client_instance is not None:
            self._client_instance.close()


def sinks_from_settings(settings: Settings) -> list[Sink]:
    """The sinks the settings turn on, in a stable order; none is an empty list."""
    sinks: list[Sink] = []
    if settings.notify_webhook_url:
        if not settings.notify_webhook_secret:
            raise ConfigurationError(
                "NOTIFY_WEBHOOK_SECRET: required when NOTIFY_WEBHOOK_URL is set "
                "(the webhook body is signed with it)"
            )
        sinks.append(
            WebhookSink(
                settings.notify_webhook_url,
                settings.notify_webhook_secret,
                deadline=settings.notify_send_seconds,
            )
        )
    if settings.notify_eventgrid_endpoint:
        sinks.append(
            EventGridSink(
                settings.notify_eventgrid_endpoint,
                client_id=settings.client_id,
                deadline=settings.notify_send_seconds,
            )
        )
    return sinks
