"""Blobs: the few operations the service needs on the landing container (list a batch, ranged
reads for validation, pinned downloads for the local backend, uploads for the demo and tests),
and the server-side snapshot that makes a data version immutable.

A blob URL is built from the account's endpoint alone: with a SAS connection string the client's
own URL carries the token, and no URL the app records or hands to Azure ML may hold a credential.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import NotFoundError
from .account import StorageAccount
from .errors import AlreadyExists, ETagMismatch
from .errors import mapped as _mapped

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient, ContainerClient

    from ..settings import Settings

STORAGE_SCOPE = "https://storage.azure.com/.default"  # OAuth source authorization for copies
SOURCE_SAS_LIFETIME = timedelta(minutes=15)  # a key-signed read SAS lives only for one copy
SNAPSHOT_OF = "snapshotetag"  # destination metadata: the source ETag the copy was guarded by


@dataclass(frozen=True)
class BlobInfo:
    """One listed blob: enough to key, validate and reference it."""

    name: str
    etag: str
    size: int
    last_modified: datetime
    url: str


class BlobStore:
    """Blob operations on one storage account. Thread-safe; the client is built on first use."""

    def __init__(self, account: StorageAccount | Settings) -> None:
        self.account = account if isinstance(account, StorageAccount) else StorageAccount(account)
        self._containers_ready: set[str] = set()

    @property
    def client(self) -> BlobServiceClient:
        return self.account.blobs

    def _container(self, container: str) -> ContainerClient:
        return self.client.get_container_client(container)

    def url(self, container: str, name: str) -> str:
        """The blob's URL (no I/O), without any query: never a SAS token."""
        scheme, netloc, path, _, _ = urlsplit(self.client.url)
        return urlunsplit((scheme, netloc, f"{path.rstrip('/')}/{container}/{quote(name)}", "", ""))

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

    def put(self, container: str, name: str, data: bytes = b"") -> str:
        """Write (or overwrite) a blob unconditionally; returns its ETag."""
        with _mapped(f"{container}/{name}"):
            blob = self._container(container).get_blob_client(name)
            return blob.upload_blob(data, overwrite=True)["etag"]

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

    def snapshot(
        self, src_container: str, name: str, etag: str, dst_container: str, dst_name: str
    ) -> None:
        """Copy blob ``name`` as it was at ``etag`` to ``dst_name``, server-side, once.

        The copy is Copy Blob From URL (synchronous, up to 256 MiB a blob) with the source
        If-Match ``etag``, so it can never take newer content, and If-None-Match ``*`` on the
        destination, so nothing overwrites a snapshot. A repeat after a fault finds its own
        earlier copy (same source ETag in the metadata) and accepts it. ETagMismatch when the
        source moved on; AlreadyExists when the destination holds a copy of something else."""
        from azure.core import MatchConditions

        self.ensure_container(dst_container)
        pinned = etag.strip('"')
        source = self._container(src_container).get_blob_client(name)
        target = self._container(dst_container).get_blob_client(dst_name)
        what = f"copy {src_container}/{name} to {dst_container}/{dst_name}"
        try:
            with _mapped(what):
                url, auth = self._copy_source(source)
                target.start_copy_from_url(
                    url,
                    metadata={SNAPSHOT_OF: pinned},
                    requires_sync=True,
                    source_etag=etag,
                    source_match_condition=MatchConditions.IfNotModified,
                    match_condition=MatchConditions.IfMissing,
                    source_authorization=auth,
                )
        except ETagMismatch:  # source moved, or the destination exists: is it our own copy?
            try:
                with _mapped(f"{dst_container}/{dst_name}"):
                    have = target.get_blob_properties()
            except NotFoundError:
                have = None
            if have is None:
                raise ETagMismatch(f"{src_container}/{name}: changed since {etag}") from None
            if (have.metadata or {}).get(SNAPSHOT_OF) != pinned:
                raise AlreadyExists(f"{dst_container}/{dst_name}: holds another copy") from None

    def _copy_source(self, source: Any) -> tuple[str, str | None]:
        """The copy source URL and its authorization: a bearer token with an identity, a
        short read SAS signed with the account key, or the connection's own SAS as it is."""
        credential = self.client.credential
        if hasattr(credential, "get_token"):
            token = credential.get_token(STORAGE_SCOPE).token
            return self.url(source.container_name, source.blob_name), f"Bearer {token}"
        key = getattr(credential, "account_key", None)
        if key:
            from azure.storage.blob import BlobSasPermissions, generate_blob_sas

            sas = generate_blob_sas(
                credential.account_name,
                source.container_name,
                source.blob_name,
                account_key=key,
                permission=BlobSasPermissions(read=True),
                expiry=datetime.now(timezone.utc) + SOURCE_SAS_LIFETIME,
            )
            return f"{self.url(source.container_name, source.blob_name)}?{sas}", None
        return str(source.url), None  # a SAS connection string: the client's URL carries it
