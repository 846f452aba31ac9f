"""HMAC-SHA256 signatures of webhook bodies (``X-Retrain-Signature: sha256=<hex>``).

How a receiver verifies a delivery: read the raw request body (the bytes as received, before
any JSON parsing), compute HMAC-SHA256 of those bytes under the shared secret
(``NOTIFY_WEBHOOK_SECRET``), and compare ``"sha256=" + hexdigest`` with the
``X-Retrain-Signature`` header in constant time (``hmac.compare_digest``). Reject on mismatch
or a missing header; then dedupe on the event's ``id`` (delivery is at-least-once)::

    import hashlib, hmac

    def verified(raw_body: bytes, header: str | None, secret: str) -> bool:
        mac = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
        return header is not None and hmac.compare_digest(f"sha256={mac}", header)

``verify`` below is exactly that.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Retrain-Signature"
SCHEME = "sha256="


def signature(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``body`` under ``secret`` (UTF-8)."""
    return SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret``, compared in constant
    time; False for a missing or malformed header."""
    if not header:
        return False
    return hmac.compare_digest(signature(body, secret).encode(), header.strip().encode())
