"""The pure decisions: which blobs matter, when a batch is complete, what a request asks."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from retrain import keys
from retrain.backends.base import DataAsset
from retrain.batches import FILE_NAMES, BlobPath
from retrain.decisions import (
    BatchData,
    Ignore,
    Submit,
    Wait,
    decide_batch,
    http_run_id,
    locate,
    parse_data,
    parse_retrain_request,
)
from retrain.errors import InvalidRequestError
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
     "azureml:n", "azureml:n:v:w", "a?b", "a#b", "a\nb", 3, None, ["x"]],
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
