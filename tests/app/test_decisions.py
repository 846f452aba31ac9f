"""The pure decisions: which blobs matter, when a batch is complete, what a request asks."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from retrain import keys
from retrain.backends.base import DataAsset
from retrain.errors import InvalidRequestError
from retrain.landing.batches import FILE_NAMES, BlobPath
from retrain.landing.decisions import (
    BatchData,
    Ignore,
    Submit,
    Wait,
    decide_batch,
    http_run_id,
    locate,
    parse_data,
    parse_limit,
    parse_retrain_request,
)
from retrain.storage import BlobInfo

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def blob(name: str, etag: str = '"0x1"') -> BlobInfo:
    return BlobInfo(name, etag, 100, NOW, f"http://x/{name}")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("landing/b1/train-images-idx3-ubyte.gz",
         BlobPath("landing", "b1", "train-images-idx3-ubyte.gz")),
        ("landing/2025/06/b1/t10k-labels-idx1-ubyte",
         BlobPath("landing", "2025/06/b1", "t10k-labels-idx1-ubyte")),
        ("landing/b1/notes.txt", Ignore),
        ("landing/train-images-idx3-ubyte", Ignore),
        ("other/b1/train-images-idx3-ubyte", Ignore),
    ],
)  # fmt: skip
def test_locate(path, expected):
    got = locate(path, "landing")
    if expected is Ignore:
        assert isinstance(got, Ignore) and got.reason.startswith(path)
    else:
        assert got == expected


def test_a_batch_waits_for_its_missing_files():
    listing = [blob("b/train-images-idx3-ubyte.gz"), blob("b/readme.md")]
    decision = decide_batch("landing", "b", listing)
    assert decision == Wait("landing/b", tuple(FILE_NAMES[1:]))


def test_a_complete_batch_is_keyed_on_exactly_its_four_etags():
    listing = [blob(f"b/{n}.gz", f'"{i}"') for i, n in enumerate(FILE_NAMES)]
    decision = decide_batch("landing", "b", [*listing, blob("b/extra.txt", '"9"')])
    assert isinstance(decision, Submit)
    expected = keys.run_key("landing/b", [(x.name, x.etag) for x in listing])
    assert decision.run_id == expected
    changed = [*listing[:3], blob(listing[3].name, '"new"')]
    assert decide_batch("landing", "b", changed).run_id != expected
    assert (
        decide_batch("landing", "c", [blob("c" + x.name[1:], x.etag) for x in listing]).run_id
        != expected
    )


def test_nested_files_do_not_count_for_the_outer_batch():
    listing = [blob(f"b/sub/{n}") for n in FILE_NAMES]
    assert isinstance(decide_batch("landing", "b", listing), Wait)


def test_a_valid_request():
    request = parse_retrain_request(
        b'{"data": "landing/week-1/", "epochs": 5, "experiment": "nightly"}', "landing", " k1 "
    )
    assert request.data == BatchData("week-1")
    assert (request.epochs, request.experiment, request.idempotency_key) == (5, "nightly", "k1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("week-1", BatchData("week-1")),
        ("2025/06/week-1", BatchData("2025/06/week-1")),
        ("landing/week-1", BatchData("week-1")),
        ("landing", BatchData("landing")),
        ("azureml:fashion-mnist:12", DataAsset("fashion-mnist", "12")),
    ],
)
def test_data_forms(value, expected):
    assert parse_data(value, "landing") == expected


@pytest.mark.parametrize(
    "value",
    ["", "  ", "../x", "a/../b", "a/./b", "a//b", "/abs", "C:\\x", "http://h/x", "azureml://x",
     "azureml:n", "azureml:n:v:w", "a?b", "a#b", "a\nb", "a\ud800", "a\u200bb", "a\u2028b",
     "b" * 998, 3, None, ["x"]],
)  # fmt: skip
def test_bad_data_is_refused_naming_the_field(value):
    with pytest.raises(InvalidRequestError) as caught:
        parse_data(value, "landing")
    assert caught.value.field == "data"


def test_run_ids_for_webhook_calls():
    versions = [("b/x", "1")]
    plain = parse_retrain_request(b'{"data": "b"}', "landing")
    with_epochs = parse_retrain_request(b'{"data": "b", "epochs": 2}', "landing")
    keyed = parse_retrain_request(b'{"data": "b"}', "landing", "k")
    keyed_other = parse_retrain_request(b'{"data": "c", "epochs": 4}', "landing", "k")

    # a plain request for a batch is the blob trigger's run for that content
    assert http_run_id(plain, "landing/b", versions) == keys.run_key("landing/b", versions)
    assert http_run_id(with_epochs, "landing/b", versions) != http_run_id(
        plain, "landing/b", versions
    )
    # an idempotency key alone names the run
    assert http_run_id(keyed, "landing/b", versions) == http_run_id(keyed_other, "landing/c", [])


DIGITS_5001 = "1" + "0" * 5000  # over Python's int-from-string limit of 4300 digits


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (f'{{"data": "b", "epochs": {DIGITS_5001}}}', "epochs", "got an integer of 5001 digits"),
        (f'{{"data": "b", "epochs": -{DIGITS_5001}}}', "epochs", "got an integer of 5001 digits"),
        (f'{{"data": "b", "epochs": {"1" * 33}}}', "epochs", "got an integer of 33 digits"),
        (f'{{"data": {DIGITS_5001}}}', "data", "expected a string, got an integer"),
        (f'{{"data": "b", "experiment": {DIGITS_5001}}}', "experiment", "got an integer"),
        ('{"data": "b", "epochs": 1e999}', "epochs", "expected an integer, got a number"),
        (f'{{"data": "b", "epochs": {"[" * 30_000}{"]" * 30_000}}}', "body", "nested too deeply"),
        ("[" * 60_000, "body", "nested too deeply"),
        ('{"a":' * 10_000 + "1" + "}" * 10_000, "body", "nested too deeply"),
        ('{"": 1}', "body", "unknown field ''"),
        ('{"data": "b\\ud800"}', "data", "unprintable"),
    ],
)  # fmt: skip
def test_bodies_that_once_gave_a_500_name_the_field(body, field, message):
    with pytest.raises(InvalidRequestError) as caught:
        parse_retrain_request(body.encode(), "landing")
    assert caught.value.field == field and message in caught.value.reason
    assert "sys." not in caught.value.reason  # no Python internals in the answer


def test_the_longest_integer_a_field_sees_is_still_an_integer():
    with pytest.raises(InvalidRequestError, match="got " + "9" * 32):
        parse_retrain_request(b'{"data": "b", "epochs": ' + b"9" * 32 + b"}", "landing")


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 20), ("", 20), ("7", 7), ("007", 7), ("100", 100)]
)
def test_limit(raw, expected):
    assert parse_limit({} if raw is None else {"limit": raw}) == expected


@pytest.mark.parametrize(
    "raw", ["0", "101", "-1", " 5", "5 ", "1e2", "\u00b2", "\u0661\u0662", "\uff15", "1" * 5000]
)
def test_a_bad_limit_names_the_field(raw):
    """ASCII digits only: str.isdigit() takes superscripts, which int() refuses, and int() takes
    other scripts' digits, which a URL should not carry."""
    with pytest.raises(InvalidRequestError) as caught:
        parse_limit({"limit": raw})
    assert caught.value.field == "limit"
