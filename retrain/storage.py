"""The storage seam: the few blob operations the service needs, over one lazily built client.

The client comes from the ``DataStorage`` connection string, or identity-based from
``DataStorage__blobServiceUri`` with ``DefaultAzureCredential`` (``DataStorage__clientId``, else
``AZURE_CLIENT_ID``, picks a user-assigned identity). Retries are azure-core's policy (storage's
``ExponentialRetry``), tuned for a function that should answer in seconds, not the SDK's default
of ~15 s backoffs.

Errors leave this module as the service's own: ``TransientError`` (throttling, 5xx, timeouts,
connection trouble, after the retries), ``NotFoundError``, ``ConfigurationError`` (access denied),
``ETagMismatch`` (an ETag guard failed: someone else wrote first) and ``CorruptDocumentError`` (a
JSON document that is not one).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import (
    ConfigurationError,
    CorruptDocumentError,
    NotFoundError,
    PermanentError,
    TransientError,
)

if TYPE_CHECKING:  # azure.storage.blob costs ~0.25 s to import: only on first use.
    from azure.storage.blob import BlobServiceClient, ContainerClient

    from .settings import Settings

RETRY = {"initial_backoff": 0.5, "increment_base": 2, "retry_total": 3, "random_jitter_range": 1}
TIMEOUTS = {"connection_timeout": 5, "read_timeout": 30}


class ETagMismatch(Exception):
    """A conditional write lost: the blob changed (or appeared) since it was read."""


@dataclass(frozen=True)
class BlobInfo:
    """One listed blob: enough to key, validate and reference it."""

    name: str
    etag: str
    size: int
    last_modified: datetime
    url: str


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Translate azure-core errors into the service's error tree."""
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
    except (ResourceModifiedError, ResourceExistsError) as exc:
        raise ETagMismatch(what) from exc
    except ClientAuthenticationError as exc:
        raise ConfigurationError(f"{what}: storage refused the credential ({exc.message})") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"{what}: storage unreachable ({exc.message})") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status == 412:
            raise ETagMismatch(what) from exc
        if status in (408, 429) or status >= 500:
            raise TransientError(f"{what}: storage answered {status}") from exc
        if status == 403:
            raise ConfigurationError(
                f"{what}: storage denied access (403); check the identity's role assignment"
            ) from exc
        raise PermanentError(f"{what}: storage answered {status} ({exc.reason})") from exc


class BlobStore:
    """Blob operations on one storage account. Thread-safe; the client is built on first use."""

    def __init__(self, settings: Settings, client: BlobServiceClient | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = threading.Lock()
        self._containers_ready: set[str] = set()

    @property
    def client(self) -> BlobServiceClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _build_client(self._settings)
        return self._client

    def _container(self, container: str) -> ContainerClient:
        return self.client.get_container_client(container)

    def url(self, container: str, name: str) -> str:
        """The blob's URL (no I/O)."""
        return f"{self.client.url.rstrip('/')}/{container}/{quote(name)}"

    def ensure_container(self, container: str) -> None:
        """Create ``container`` if it does not exist (once per process)."""
        if container in self._containers_ready:
            return
        from azure.core.exceptions import ResourceExistsError

        with _mapped(f"container {container}"), suppress(ResourceExistsError):
            self._container(container).create_container()
        self._containers_ready.add(container)

    def list(self, container: str, prefix: str = "", limit: int | None = None) -> list[BlobInfo]:
        """Blobs under ``prefix`` in name order, at most ``limit``; [] when the container does
        not exist."""
        found: list[BlobInfo] = []
        try:
            with _mapped(f"{container}/{prefix}*"):
                pages = self._container(container).list_blobs(
                    name_starts_with=prefix or None,
                    results_per_page=limit,
                )
                for blob in pages:
                    found.append(
                        BlobInfo(
                            name=blob.name,
                            etag=blob.etag,
                            size=blob.size,
                            last_modified=blob.last_modified,
                            url=self.url(container, blob.name),
                        )
                    )
                    if limit is not None and len(found) >= limit:
                        break
        except NotFoundError:
            return []
        return found

    def read_range(
        self, container: str, name: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end); ``etag`` pins the version."""
        from azure.core import MatchConditions

        if length <= 0:
            return b""
        guard: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        with _mapped(f"{container}/{name}"):
            blob = self._container(container).get_blob_client(name)
            return blob.download_blob(offset=offset, length=length, **guard).readall()

    def read_json(self, container: str, name: str) -> tuple[dict[str, Any], str] | None:
        """The JSON document and its ETag, or None if there is no such blob."""
        try:
            with _mapped(f"{container}/{name}"):
                stream = self._container(container).get_blob_client(name).download_blob()
                data = stream.readall()
                etag = stream.properties.etag
        except NotFoundError:
            return None
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise CorruptDocumentError(f"{container}/{name}: not a JSON object", etag)
        return document, etag

    def create_json(
        self, container: str, name: str, document: Mapping[str, Any], *, compact: bool = False
    ) -> str | None:
        """Create the blob only if it does not exist (If-None-Match: *). Its ETag, or None if
        it already existed: exactly one concurrent caller wins. ``compact``: no indentation."""
        try:
            return self._put(container, name, _dumps(document, compact), etag="*")
        except ETagMismatch:
            return None

    def replace_json(
        self,
        container: str,
        name: str,
        document: Mapping[str, Any],
        *,
        etag: str,
        compact: bool = False,
    ) -> str:
        """Overwrite the blob only if it still has ``etag`` (If-Match); else ETagMismatch."""
        return self._put(container, name, _dumps(document, compact), etag=etag)

    def put(self, container: str, name: str, data: bytes = b"") -> str:
        """Write (or overwrite) a blob unconditionally; returns its ETag."""
        return self._put(container, name, data, etag=None)

    def _put(self, container: str, name: str, data: bytes, *, etag: str | None) -> str:
        from azure.core import MatchConditions
        from azure.storage.blob import ContentSettings

        kwargs: dict[str, Any] = {"overwrite": True}
        if etag == "*":
            kwargs = {"overwrite": False}  # sends If-None-Match: *
        elif etag:
            kwargs = {"etag": etag, "match_condition": MatchConditions.IfNotModified, **kwargs}
        content = ContentSettings(content_type="application/json") if data[:1] == b"{" else None
        with _mapped(f"{container}/{name}"):
            blob = self._container(container).get_blob_client(name)
            result = blob.upload_blob(data, content_settings=content, **kwargs)
        return result["etag"]

    def delete(self, container: str, name: str) -> None:
        """Delete the blob; a missing blob is fine."""
        try:
            with _mapped(f"{container}/{name}"):
                self._container(container).delete_blob(name)
        except NotFoundError:
            pass

    def download(self, container: str, name: str, dest: Path, *, etag: str | None = None) -> None:
        """Stream the blob into ``dest``; ``etag`` pins the version (ETagMismatch if it moved)."""
        from azure.core import MatchConditions

        guard: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        with _mapped(f"{container}/{name}"), dest.open("wb") as out:
            blob = self._container(container).get_blob_client(name)
            blob.download_blob(max_concurrency=2, **guard).readinto(out)


def _dumps(document: Mapping[str, Any], compact: bool = False) -> bytes:
    """Records are indented for people browsing the container; compact for machine documents."""
    if compact:
        return json.dumps(document, separators=(",", ":")).encode()
    return json.dumps(document, indent=2).encode() + b"\n"


def _build_client(settings: Settings) -> BlobServiceClient:
    """BlobServiceClient from a connection string, or from the service URI plus an identity."""
    from azure.storage.blob import BlobServiceClient, ExponentialRetry

    retry = ExponentialRetry(**RETRY)
    if settings.storage_blob_uri:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=settings.storage_client_id)
        return BlobServiceClient(
            settings.storage_blob_uri, credential=credential, retry_policy=retry, **TIMEOUTS
        )
    if not settings.storage_connection:
        raise ConfigurationError(
            "DataStorage: set a connection string, or DataStorage__blobServiceUri"
        )
    try:
        return BlobServiceClient.from_connection_string(
            settings.storage_connection, retry_policy=retry, **TIMEOUTS
        )
    except ValueError as exc:
        raise ConfigurationError(f"DataStorage: not a valid connection string ({exc})") from None
