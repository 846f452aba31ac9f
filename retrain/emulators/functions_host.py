"""What the Functions host does, for the demo and the tests (Core Tools cannot be installed on
our machines): index ``function_app`` once, deliver a blob event to ``landing_blob`` as the
worker does for an SDK-type binding (a ``model_binding_data`` datum naming the connection,
container and blob, decoded by the extension's own ``BlobClientConverter``; no blob content),
deliver the settle queue's messages to ``settle_batch`` as real ``func.QueueMessage``
objects, deleting each once the function returns, and deliver the local executor's job events
to ``job_events`` as ``func.EventGridEvent`` objects, as Event Grid would Azure ML's.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
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


@dataclass(frozen=True)
class ModelBindingData:
    """The fields of the worker's ``ModelBindingData`` message that the extension reads."""

    content: bytes
    version: str = "1.0"
    source: str = "AzureStorageBlobs"
    content_type: str = "application/json"


def blob_binding_data(container: str, name: str, connection: str = "DataStorage") -> bytes:
    """What the host sends the worker for one blob event: names, never the blob's bytes."""
    body = {"Connection": connection, "ContainerName": container, "BlobName": name}
    return json.dumps(body).encode()


def deliver_blob_event(container: str, name: str, connection: str = "DataStorage") -> None:
    """Invoke ``landing_blob`` for ``container/name`` with the ``BlobClient`` the extension's
    converter builds from the connection's app setting (in the environment, as on the host)."""
    from azurefunctions.extensions.base import Datum
    from azurefunctions.extensions.bindings.blob import BlobClient, BlobClientConverter

    datum = Datum(
        ModelBindingData(blob_binding_data(container, name, connection)), "model_binding_data"
    )
    client = BlobClientConverter.decode(datum, trigger_metadata={}, pytype=BlobClient)
    functions()["landing_blob"](client)


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


def job_event_object(event: dict[str, Any]) -> Any:  # -> azure.functions.EventGridEvent
    """The ``func.EventGridEvent`` the worker builds from one Event Grid schema event."""
    import azure.functions as func

    when = event.get("eventTime")
    try:
        moment = datetime.fromisoformat(str(when).replace("Z", "+00:00")) if when else None
    except ValueError:
        moment = None
    return func.EventGridEvent(
        id=str(event.get("id", "")),
        data=event.get("data"),  # type: ignore[arg-type]  # as the worker passes it: any JSON
        topic=str(event.get("topic", "")),
        subject=str(event.get("subject", "")),
        event_type=str(event.get("eventType", "")),
        event_time=moment,
        data_version=str(event.get("dataVersion", "")),
    )


def deliver_job_event(event: dict[str, Any]) -> None:
    """Invoke ``job_events`` with one event, as the host does for an Event Grid trigger."""
    functions()["job_events"](job_event_object(event))


def deliver_local_job_events(runs_dir: Path) -> int:
    """Deliver the local executor's spooled job events (``retrain.local.events``), oldest
    first, deleting each once the function returns (a failed delivery stays for the next
    call, as Event Grid retries). Returns how many were delivered."""
    from ..local.events import pending, read_event

    delivered = 0
    for path in pending(runs_dir):
        event = read_event(path)
        if event is not None:
            deliver_job_event(event)
            delivered += 1
        path.unlink(missing_ok=True)
    return delivered
