"""``GET /api/models`` over damaged ``model|`` rows: a row the listing cannot show is skipped and
counted, the others are listed (200), and a flag stored as the string "false" is not true."""

from __future__ import annotations

from datetime import datetime, timezone

from apphelpers import http

from retrain.storage.tables import Op


def test_a_damaged_model_row_is_skipped_and_counted_and_the_listing_answers(service, caplog):
    book = service.book
    good = {"version": "v2", "run_id": "r2", "accuracy": 0.9, "promoted": "false"}
    damaged = {"version": "v1", "run_id": "r1", "registered_at": datetime.now(timezone.utc),
               "job_name": b"\x00\xff"}  # fmt: skip
    book.table.transact(
        [
            Op("upsert", f"model|{book.name}|1|v2", good),
            Op("upsert", f"model|{book.name}|2|v1", damaged),
        ]
    )
    status, body, _ = http("GET", "models")
    assert status == 200
    assert [v["version"] for v in body["versions"]] == ["v2"]
    assert body["versions"][0]["promoted"] is False
    assert body["skipped"] == 1 and "damaged" in caplog.text
