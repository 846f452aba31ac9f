"""The DataStorage account: one credential, one HTTP transport and the three service clients
(blob, queue, table), each built on first use.

Connection: the ``DataStorage`` connection string, or identity-based from
``DataStorage__{blob,queue,table}ServiceUri`` with ``DefaultAzureCredential``
(``DataStorage__clientId``, else ``AZURE_CLIENT_ID``, picks a user-assigned identity), as the
Functions host reads the same connection for the triggers.

Three things the real Functions worker made necessary:
- Retries are azure-core's policies, tuned for a function that answers in seconds (not the SDK's
  default of ~15 s backoffs).
- The worker sets the root logger to INFO, which would stream every SDK request and response
  dump into Application Insights: the SDK's HTTP logging policy (and urllib3, whose debug lines
  carry whole URLs, SAS tokens included) are kept at WARNING.
- Up to 8 blob events run at once (host.json) beside the sweep's own concurrency: one shared
  connection pool, sized for that, instead of urllib3's default 10 per client that warns
  "Connection pool is full".
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:  # the SDKs cost ~0.25 s each to import: only on first use
    from azure.core.pipeline.transport import HttpTransport
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    from ..settings import Settings

RETRY: dict[str, Any] = {"initial_backoff": 0.5, "increment_base": 2, "random_jitter_range": 1}
TIMEOUTS = {"connection_timeout": 5, "read_timeout": 30}
POOL_SIZE = 32  # connections kept per host: 8 blob events + the sweep's threads, with room
# Per-request lines: the SDKs' request/response dumps, and urllib3's, which print each URL
# whole, a SAS token included, at debug level.
QUIET_LOGGERS = (
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "urllib3.connectionpool",
)


def quiet_sdk_logging() -> None:
    """Keep the SDKs' per-request INFO dumps out of the app's log (warnings still pass)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _transport() -> HttpTransport:
    import requests
    from azure.core.pipeline.transport import RequestsTransport

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(session=session, session_owner=False, **TIMEOUTS)


class StorageAccount:
    """The three clients of one storage account, built lazily and shared by every caller.

    ``transport`` and ``retries`` replace the defaults (tests inject faults with them)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: HttpTransport | None = None,
        retries: int = 3,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._retries = retries
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def _client(self, cls: Any, uri: str | None, setting: str, **options: Any) -> Any:
        """The one ``cls`` client of this account: on ``uri`` with the identity, else from the
        connection string; built on first use."""
        kind = cls.__name__
        if kind not in self._clients:
            with self._lock:
                if kind not in self._clients:
                    quiet_sdk_logging()
                    if self._transport is None:
                        self._transport = _transport()
                    options.update(transport=self._transport, **TIMEOUTS)
                    uri, connection = self._uri_or_connection(uri, setting)
                    if uri:
                        client = cls(uri, credential=self._credential(), **options)
                    else:
                        client = _from_connection(cls, connection, options)
                    self._clients[kind] = client
        return self._clients[kind]

    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self.settings.storage_client_id)

    def _uri_or_connection(self, uri: str | None, setting: str) -> tuple[str | None, str | None]:
        """(service URI, None) for identity-based access, else (None, connection string)."""
        if uri:
            return uri, None
        if self.settings.storage_connection:
            return None, self.settings.storage_connection
        raise ConfigurationError(f"DataStorage: set a connection string, or {setting}")

    def _storage_retry(self, retry_cls: Any) -> Any:
        return retry_cls(**{**RETRY, "retry_total": self._retries})

    @property
    def blobs(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient, ExponentialRetry

        uri, retry = self.settings.storage_blob_uri, self._storage_retry(ExponentialRetry)
        return self._client(
            BlobServiceClient, uri, "DataStorage__blobServiceUri", retry_policy=retry
        )

    @property
    def queues(self) -> QueueServiceClient:
        from azure.storage.queue import ExponentialRetry, QueueServiceClient

        uri, retry = self.settings.storage_queue_uri, self._storage_retry(ExponentialRetry)
        return self._client(
            QueueServiceClient, uri, "DataStorage__queueServiceUri", retry_policy=retry
        )

    @property
    def tables(self) -> TableServiceClient:
        from azure.data.tables import TableServiceClient

        return self._client(
            TableServiceClient,
            self.settings.storage_table_uri,
            "DataStorage__tableServiceUri",
            retry_total=self._retries,
            retry_backoff_factor=RETRY["initial_backoff"],
            retry_backoff_max=4,
        )


def _from_connection(cls: Any, connection: str | None, options: dict[str, Any]) -> Any:
    try:
        return cls.from_connection_string(connection, **options)
    except ValueError:  # its message may quote the string, and so the key: name the setting only
        raise ConfigurationError("DataStorage: not a valid connection string") from None
