"""The settle queue's message: a delayed re-check of one batch (pure: text in, text out).

``{"source": "<container>/<batch>", "token": "<hex>", "tries": n, "since": "<ISO time>"}``:
``token`` names the re-check, so only the one the ledger's settle row holds goes on re-queuing
while the batch settles; ``tries`` and ``since`` count the looks deferred by storage trouble and
when the first one was. Only ``source`` is required (a message from an older version of the app
has nothing else).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from ..clock import iso, parse_time
from ..errors import InvalidRequestError
from .batches import BlobPath

_TOKEN = re.compile(r"[0-9a-f]{1,64}")
MAX_TRIES = 10**6


@dataclass(frozen=True)
class Recheck:
    """A parsed settle message."""

    container: str
    batch: str
    token: str | None = None
    tries: int = 0  # looks deferred by storage trouble so far
    since: datetime | None = None  # when the first of them was

    @property
    def source(self) -> str:
        return f"{self.container}/{self.batch}"


def new_token() -> str:
    return secrets.token_hex(8)


def settle_message(source: str, token: str, tries: int = 0, since: datetime | None = None) -> str:
    """The settle queue's message for the batch ``source`` (``container/batch``)."""
    body: dict[str, object] = {"source": source, "token": token}
    if tries:
        body.update(tries=tries, since=iso(since))
    return json.dumps(body)


def parse_settle_message(text: str, landing_container: str) -> Recheck:
    """The re-check a settle queue message asks for; InvalidRequestError if it is not one of
    ours for the landing container."""
    try:
        body = json.loads(text)
        source = body["source"]
    except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: deep nesting
        raise InvalidRequestError("message", 'expected {"source": "<container>/<batch>"}') from None
    if isinstance(source, str) and not _encodable(source):
        raise InvalidRequestError("source", "not a blob path (a lone surrogate)")
    path = BlobPath.parse(f"{source}/x") if isinstance(source, str) else None
    if path is None or path.container != landing_container:
        raise InvalidRequestError("source", f"expected a batch in {landing_container!r}")
    token, tries, since = body.get("token"), body.get("tries", 0), body.get("since")
    if token is not None and not (isinstance(token, str) and _TOKEN.fullmatch(token)):
        raise InvalidRequestError("token", "expected up to 64 lowercase hex digits")
    if type(tries) is not int or not 0 <= tries <= MAX_TRIES:
        raise InvalidRequestError("tries", f"expected an integer from 0 to {MAX_TRIES}")
    return Recheck(path.container, path.batch, token, tries, _time(since))


def _time(text: object) -> datetime | None:
    if text is None:
        return None
    try:
        when = parse_time(text) if isinstance(text, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidRequestError("since", "expected an ISO 8601 time with its offset")
    return when


def _encodable(text: str) -> bool:
    """Whether ``text`` has a UTF-8 encoding (no lone surrogate), as every blob name has."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
