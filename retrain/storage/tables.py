"""A table of one partition: point reads, range queries by row-key prefix, and entity-group
transactions (all-or-nothing writes of up to 100 entities of the partition, each optionally
guarded by its ETag). The run ledger is built on exactly these three.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import NotFoundError
from .account import StorageAccount
from .errors import AlreadyExists, ETagMismatch, mapped

if TYPE_CHECKING:
    from azure.data.tables import TableClient

PARTITION = "run"  # one partition, so every change a run needs is one transaction


@dataclass(frozen=True)
class Entity:
    """A stored entity: its row key, its properties (without the keys) and its ETag."""

    row: str
    props: dict[str, Any]
    etag: str


@dataclass(frozen=True)
class Op:
    """One operation of a transaction.

    create: insert, fails if the row exists. replace: the row must exist (and have ``etag``,
    if given). upsert: insert or replace, unguarded. delete: the row must exist (and have
    ``etag``, if given)."""

    kind: Literal["create", "replace", "upsert", "delete"]
    row: str
    props: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None


class Table:
    """One table of the storage account; created on first use."""

    def __init__(self, account: StorageAccount, name: str) -> None:
        self.account = account
        self.name = name
        self._client: TableClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> TableClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = self.account.tables.get_table_client(self.name)
                    with mapped(f"table {self.name}"):
                        self.account.tables.create_table_if_not_exists(self.name)
                    self._client = client
        return self._client

    def get(self, row: str) -> Entity | None:
        """The entity at ``row``, or None."""
        try:
            with mapped(f"table {self.name}: {row}"):
                found = self.client.get_entity(PARTITION, row)
        except NotFoundError:
            return None
        return _entity(found)

    def query(
        self, prefix: str, limit: int | None = None, *, below: str | None = None
    ) -> list[Entity]:
        """Entities whose row key starts with ``prefix`` (and, given ``below``, sorts before
        it), in row-key order: a range query, so its cost grows with what it returns, not with
        the table."""
        end = below or prefix[:-1] + chr(ord(prefix[-1]) + 1)
        text = "PartitionKey eq @p and RowKey ge @lo and RowKey lt @hi"
        params = {"p": PARTITION, "lo": prefix, "hi": end}
        found: list[Entity] = []
        with mapped(f"table {self.name}: {prefix}*"):
            pages = self.client.query_entities(text, parameters=params, results_per_page=limit)
            for item in pages:
                found.append(_entity(item))
                if limit is not None and len(found) >= limit:
                    break
        return found

    def transact(self, ops: list[Op]) -> list[str]:
        """Apply ``ops`` all together or not at all. Returns each op's new ETag ("" for a
        delete). AlreadyExists: a create lost; ETagMismatch: a guarded row changed or went."""
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError, UpdateMode

        batch: list[Any] = []
        for op in ops:
            entity = {"PartitionKey": PARTITION, "RowKey": op.row, **op.props}
            guard: dict[str, Any] = {}
            if op.etag:
                guard = {"etag": op.etag, "match_condition": MatchConditions.IfNotModified}
            if op.kind == "create":
                batch.append(("create", entity))
            elif op.kind == "delete":
                batch.append(("delete", entity, guard))
            elif op.kind == "upsert":
                batch.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
            else:
                batch.append(("update", entity, {"mode": UpdateMode.REPLACE, **guard}))
        with mapped(f"table {self.name}: transaction on {ops[0].row}"):
            try:
                results = self.client.submit_transaction(batch)
            except TableTransactionError as exc:
                row = _failed_row(exc, ops)
                if exc.status_code == 409:
                    raise AlreadyExists(f"{row or ops[0].row}: already exists", row) from exc
                if exc.status_code in (404, 412):
                    raise ETagMismatch(
                        f"{row or ops[0].row}: changed or gone meanwhile", row
                    ) from exc
                raise
        return [str(result.get("etag", "")) for result in results]


def _failed_row(exc: Any, ops: list[Op]) -> str | None:
    """The row of the operation storage named as failing (its message starts ``"<index>:"``),
    or None when it did not say (the SDK's ``index`` defaults to 0 then)."""
    head = str(getattr(exc, "message", "") or "").split(":", 1)[0].strip()
    return ops[int(head)].row if head.isdigit() and int(head) < len(ops) else None


def _entity(found: Any) -> Entity:
    props = {k: v for k, v in found.items() if k not in ("PartitionKey", "RowKey")}
    return Entity(found["RowKey"], props, found.metadata["etag"])
