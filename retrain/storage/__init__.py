"""The storage seam: the DataStorage account's blobs (landing batches), table (the run ledger) and
queue (settle re-checks), each behind a small class over one lazily built SDK client.

Errors leave this package as the service's own (``errors.py`` in here maps them).
"""

from .account import StorageAccount
from .blobs import BlobInfo, BlobStore
from .errors import AlreadyExists, ETagMismatch
from .queues import MessageQueue
from .tables import Entity, Table

__all__ = [
    "AlreadyExists",
    "BlobInfo",
    "BlobStore",
    "ETagMismatch",
    "Entity",
    "MessageQueue",
    "StorageAccount",
    "Table",
]
