"""Run notifications: CloudEvents for run transitions and promotions, and the sinks that
deliver them (a signed webhook, an Event Grid topic).

The ledger's outbox stores ``cloud_event(...)`` dicts and calls ``sink.send(event)`` per sink
from ``sinks_from_settings``; receivers check webhook bodies with ``verify``. Importing this
package imports no Azure SDK.
"""

from __future__ import annotations

from .events import PROMOTED, TYPES, body, cloud_event, event_id, event_type
from .signing import HEADER, signature, verify
from .sinks import EventGridSink, Sink, WebhookSink, sinks_from_settings

__all__ = [
    "HEADER",
    "PROMOTED",
    "TYPES",
    "EventGridSink",
    "Sink",
    "WebhookSink",
    "body",
    "cloud_event",
    "event_id",
    "event_type",
    "signature",
    "sinks_from_settings",
    "verify",
]
