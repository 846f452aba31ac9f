"""A storage queue the app sends delayed messages to, for a queue-triggered function to consume.

Messages are base64-encoded, as the Functions queue trigger expects by default.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import TYPE_CHECKING

from .account import StorageAccount
from .errors import AlreadyExists, mapped

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

MAX_DELAY_S = 7 * 24 * 3600  # the longest visibility delay the service accepts


class MessageQueue:
    """One queue of the storage account; created on first use."""

    def __init__(self, account: StorageAccount, name: str) -> None:
        self.account = account
        self.name = name
        self._client: QueueClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> QueueClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from azure.storage.queue import TextBase64EncodePolicy

                    client = self.account.queues.get_queue_client(
                        self.name, message_encode_policy=TextBase64EncodePolicy()
                    )
                    with suppress(AlreadyExists), mapped(f"queue {self.name}"):
                        client.create_queue()
                    self._client = client
        return self._client

    def send(self, text: str, delay_s: int = 0) -> None:
        """Enqueue ``text``, invisible to consumers for ``delay_s`` seconds."""
        delay = max(0, min(MAX_DELAY_S, int(delay_s)))
        with mapped(f"queue {self.name}"):
            self.client.send_message(text, visibility_timeout=delay or None)
