"""One strict, bounded JSON encoder for everything the service stores or sends.

Strict parsers (and Table Storage's limits) refuse what ``json.dumps`` happily writes: NaN and
Infinity, lone surrogates (no UTF-8 encoding), nesting deep enough to exhaust the recursion
limit, integers too large for any other parser, texts over a property's size. ``dumps`` refuses
each of them with ``Unencodable`` (a ``ValueError`` naming what was wrong) before anything is
written; ``clean_metrics`` turns a score step's odd ``metrics.json`` into what can be stored,
naming what it dropped, so the run still completes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 32  # containers inside containers: far above any record, far below the stack
MAX_INT = 2**53  # beyond this, JavaScript and many other parsers lose digits
TABLE_PROPERTY_CHARS = 32_000  # a Table string property: 64 KiB, i.e. 32K UTF-16 units
METRICS_CHARS = 8_000  # the metrics kept in a record (accuracy, champion, model, a few more)


class Unencodable(ValueError):
    """A value that strict JSON, or the place it goes, cannot hold; the message says why."""


def _check(value: object, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise Unencodable(f"{path}: nested more than {MAX_DEPTH} deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise Unencodable(f"{path}: integer too large")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Unencodable(f"{path}: {value} is not a JSON number")
    elif isinstance(value, str):
        _text(value, path)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise Unencodable(f"{path}: a key that is not a string")
            _text(key, path)
            shown = key[:40].encode("unicode_escape").decode("ascii")  # one line, any key
            _check(item, f"{path}.{shown}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
    else:
        raise Unencodable(f"{path}: a {type(value).__name__} is not JSON")


def _text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Unencodable(f"{path}: text with a lone surrogate") from None


def dumps(value: object, *, max_chars: int | None = None, sort_keys: bool = False) -> str:
    """Compact JSON of ``value``, or ``Unencodable`` if strict JSON cannot hold it or the text
    would pass ``max_chars`` (the limit of the place it is stored in)."""
    _check(value, "$", 0)
    text = json.dumps(
        value, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False, allow_nan=False
    )
    if max_chars is not None and len(text) > max_chars:
        raise Unencodable(f"too large to store ({len(text)} chars, at most {max_chars})")
    return text


def clean_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``metrics`` with every entry strict JSON cannot hold left out, and why each was; if what
    is left is still over ``METRICS_CHARS``, only ``accuracy`` and ``champion`` are kept."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in metrics.items():
        try:
            dumps({str(key): value})
            _text(str(key), "$")
        except Unencodable as exc:
            dropped.append(f"metrics[{str(key)[:40]!r}]: {str(exc).partition(': ')[2]}")
            continue
        kept[str(key)] = value
    if len(dumps(kept)) > METRICS_CHARS:
        small: dict[str, Any] = {k: kept[k] for k in ("accuracy", "champion") if k in kept}
        if len(dumps(small)) > METRICS_CHARS:
            small = {k: kept[k] for k in ("accuracy",) if k in kept}
        dropped.append(f"metrics too large ({len(dumps(kept))} chars): kept {sorted(small)}")
        kept = small
    return kept, dropped
