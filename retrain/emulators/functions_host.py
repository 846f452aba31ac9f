"""What the Functions host does, for the demo and the tests (Core Tools cannot be installed on
our machines): index ``function_app`` once, and deliver the settle queue's messages to
``settle_batch`` as real ``func.QueueMessage`` objects, deleting each once the function returns.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..service.core import RetrainService


@functools.cache
def indexed() -> dict[str, Any]:
    """The app's indexed functions by name (the library refuses to index an app twice)."""
    import function_app

    return {str(fn.get_function_name()): fn for fn in function_app.app.get_functions()}


def functions() -> dict[str, Callable[..., Any]]:
    """The app's user functions by name."""
    return {name: fn.get_user_function() for name, fn in indexed().items()}


def deliver_settle_messages(
    service: RetrainService, *, until: Callable[[], bool], timeout: float, poll: float = 0.2
) -> int:
    """Deliver visible settle queue messages until ``until()`` holds or ``timeout`` seconds pass
    (the host polls the queue likewise). Returns how many were delivered."""
    import azure.functions as func
    from azure.storage.queue import TextBase64DecodePolicy

    queue = service.store.account.queues.get_queue_client(
        service.settings.settle_queue, message_decode_policy=TextBase64DecodePolicy()
    )
    delivered, deadline = 0, time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        for message in queue.receive_messages(visibility_timeout=30):
            body = message.content.encode()
            functions()["settle_batch"](
                func.QueueMessage(id=message.id, body=body, pop_receipt=message.pop_receipt)
            )
            queue.delete_message(message)
            delivered += 1
        time.sleep(poll)
    return delivered
