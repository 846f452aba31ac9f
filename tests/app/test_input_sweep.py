"""A property-based sweep of the HTTP API's whole input surface: POST bodies (any JSON of any
shape or depth, any bytes, huge numbers, lone surrogates), ``?limit=`` and other query
parameters, the ``run_id`` route parameter and the ``Idempotency-Key`` header.

Whatever the caller sends, the answer is a success or a 4xx whose body is
``{"error": {"field": <the field>, "message": <one line>}}``: never a 500, and never a stack
trace, a storage host or the function key. The functions are called as the host calls them, on
the suite's Azurite, with the fake backend (nothing trains).
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from apphelpers import batch_files, http, upload
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from retrain.landing.decisions import MAX_BODY

# Few examples per property keeps the suite quick on two cores; the explicit examples are the
# inputs that once gave a 500. No example database: nothing is written into the checkout.
SWEEP = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one service per property is what we want
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
BATCH = "week-1"
# What must never reach a caller, unless the caller sent it: stack traces, Python internals,
# the storage account, its host, the function key.
LEAKS = ("Traceback", 'File "', "set_int_max_str_digits", "devstoreaccount1", "127.0.0.1", "secret")

# --- strategies --------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
PATHISH = st.text(alphabet="ab-_./\\?#:% \t\u00e9\u00a0\u200b\ud7ff\U0001f600", max_size=40)
DATA = st.one_of(
    JSON,
    PATHISH,
    st.text(max_size=1100),
    st.sampled_from([BATCH, f"{BATCH}/", "azureml:fashion-mnist:7", "azureml://x", "..", "/x"]),
    st.builds("azureml:{}:{}".format, PATHISH, PATHISH),
    st.builds("landing/{}".format, PATHISH),
    st.integers(0, 1100).map(lambda n: "b" * n),
)
EPOCHS = JSON | st.integers(-5, 1005) | st.sampled_from([1.0, 3.5, float("inf"), "3", True])
EXPERIMENT = JSON | st.from_regex(r"[A-Za-z0-9_.\- ]{0,300}", fullmatch=True)
REQUESTS = st.fixed_dictionaries(
    {}, optional={"data": DATA, "epochs": EPOCHS, "experiment": EXPERIMENT}
) | st.dictionaries(st.text(max_size=8), JSON, max_size=3)


@st.composite
def encoded(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    """A JSON document as text, ASCII-escaped or not, in any encoding the JSON parser detects."""
    text = json.dumps(draw(documents), ensure_ascii=draw(st.booleans()))
    codec = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32-le", "utf-8-sig"]))
    return text.encode(codec, "surrogatepass")


def _nested(depth: int, kind: str, closed: bool) -> bytes:
    opener, closer = {"array": ("[", "]"), "object": ('{"a":', "}")}[kind]
    inner = opener * depth + "1" + (closer * depth if closed else "")
    return f'{{"data": "{BATCH}", "epochs": {inner}}}'.encode()


def _number(sign: str, digits: int, tail: str) -> bytes:
    return f'{{"data": "{BATCH}", "epochs": {sign}1{"0" * (digits - 1)}{tail}}}'.encode()


HUGE_NUMBERS = st.builds(
    _number, st.sampled_from(["", "-"]), st.integers(1, 20_000), st.sampled_from(["", ".5", "e9"])
)
DEEP = st.builds(
    _nested, st.integers(1, 30_000), st.sampled_from(["array", "object"]), st.booleans()
).filter(lambda body: len(body) <= MAX_BODY)
ESCAPES = st.lists(
    st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "\\u001f", "\\ufffe", "\\\\", "a", "/"]),
    max_size=6,
).map(lambda parts: f'{{"data": "{"".join(parts)}"}}'.encode())
NEAR_LIMIT = st.integers(MAX_BODY - 20, MAX_BODY + 20).map(
    lambda n: b'{"data": "' + b"x" * (n - 12) + b'"}'
)
BODIES = st.one_of(
    encoded(REQUESTS),
    encoded(JSON),
    st.binary(max_size=200),
    HUGE_NUMBERS,
    DEEP,
    ESCAPES,
    NEAR_LIMIT,
)
KEYS = st.none() | st.text(max_size=300) | st.text(alphabet=string.printable, max_size=300)
OTHER_HEADERS = st.dictionaries(
    st.sampled_from(["Content-Type", "X-Forwarded-For", "Accept", "Content-Length"]),
    st.text(max_size=20),
    max_size=2,
)
PARAMS = st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3)
LIMITS = st.one_of(
    st.text(max_size=6),
    st.integers(-5, 200).map(str),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=4),
    st.integers(1, 5000).map(lambda n: "1" * n),
    st.from_regex(r"\s*0*[0-9]{1,4}\s*", fullmatch=True),
)
RUN_IDS = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[0-9a-fA-F]{14,18}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{16}\n?", fullmatch=True),
    st.sampled_from(["", "..%2fsecrets", "../..", "%00"]),
)

# --- the property ------------------------------------------------------------------------------


def assert_answered(answer: tuple[int, dict[str, Any], dict[str, str]], sent: object) -> None:
    """A success, or a 4xx naming the field in one line; nothing leaked that was not sent."""
    status, body, _ = answer
    # what the sweep reached, shown by pytest --hypothesis-show-statistics
    event(f"{status} {body['error']['field'] if status >= 400 else ''}")
    assert status in (200, 202) or 400 <= status < 500, (status, body)
    text, sent_text = json.dumps(body), repr(sent)
    for marker in LEAKS:
        assert marker not in text or marker in sent_text, (marker, body)
    if status >= 400:
        assert set(body) <= {"error", "run"}, body
        error = body["error"]
        assert set(error) == {"field", "message"}, body
        assert isinstance(error["field"], str) and error["field"], body
        assert isinstance(error["message"], str) and error["message"], body
        assert "\n" not in error["message"], body


@pytest.fixture
def batch(service, store) -> str:
    upload(store, service.settings.landing_container, BATCH, batch_files())
    return BATCH


@SWEEP
@given(body=BODIES, key=KEYS, headers=OTHER_HEADERS, params=PARAMS)
@example(body=_number("", 5001, ""), key=None, headers={}, params={})
@example(body=_number("-", 5001, ""), key=None, headers={}, params={})
@example(body=_nested(20_000, "array", True), key=None, headers={}, params={})
@example(body=_nested(10_000, "object", False), key=None, headers={}, params={})
@example(body=b'{"data": "\\ud800"}', key=None, headers={}, params={})
@example(body=b'{"": 1}', key=None, headers={}, params={})
@example(body=json.dumps({"data": BATCH}).encode(), key="k\u00e9", headers={}, params={})
def test_any_post_is_answered_without_a_500(service, batch, body, key, headers, params):
    sent_headers = {**headers, **({} if key is None else {"Idempotency-Key": key})}
    answer = http("POST", "retrain", body, headers=sent_headers, params=params)
    assert_answered(answer, (body, sent_headers, params))


@SWEEP
@given(params=PARAMS, limit=st.none() | LIMITS)
@example(params={}, limit="\u00b2")  # str.isdigit() accepts superscripts; int() does not
@example(params={}, limit="\u0661\u0662")  # int() accepts Arabic-Indic digits; we do not
@example(params={}, limit="1" * 5000)
def test_any_list_query_is_answered_without_a_500(service, batch, params, limit):
    sent = {**params, **({} if limit is None else {"limit": limit})}
    answer = http("GET", "retrain", params=sent)
    assert_answered(answer, sent)
    if limit and not (limit.isascii() and limit.isdigit()):
        assert answer[0] == 400 and answer[1]["error"]["field"] == "limit"


@SWEEP
@given(run_id=RUN_IDS, params=PARAMS)
def test_any_run_id_is_answered_without_a_500(service, batch, run_id, params):
    answer = http("GET", f"retrain/{run_id}", params=params)
    assert_answered(answer, (run_id, params))
    assert answer[0] in (400, 404) and answer[1]["error"]["field"] == "run_id"


def test_a_real_run_id_is_found(service, batch):
    """The sweep's run ids are unknown; the one a POST answers with is found."""
    run_id = http("POST", "retrain", {"data": batch})[1]["run_id"]
    status, run, _ = http("GET", f"retrain/{run_id}")
    assert status == 200 and run["run_id"] == run_id


@SWEEP
@given(
    data=st.text(alphabet=st.characters(categories=["L", "M", "N", "P", "S", "Zs"]), max_size=1100)
)
@example(data="b" * 997)
@example(data="b/" * 498 + "b")
@example(data="\u00a0week-1\u3000")
def test_any_printable_batch_name_is_answered_without_a_500(service, batch, data):
    """Names the parser lets through reach storage: storage must not turn them into a 500."""
    answer = http("POST", "retrain", {"data": data, "epochs": 1})
    assert_answered(answer, data)


@settings(SWEEP, max_examples=40)
@given(key=KEYS)
def test_any_idempotency_key_is_answered_without_a_500(service, batch, key):
    headers = {} if key is None else {"Idempotency-Key": key}
    answer = http("POST", "retrain", {"data": batch}, headers=headers)
    assert_answered(answer, headers)
    stripped = (key or "").strip()
    if stripped and not (len(stripped) <= 255 and stripped.isascii() and stripped.isprintable()):
        assert answer[0] == 400 and answer[1]["error"]["field"] == "Idempotency-Key"
    else:
        assert answer[0] == 202
