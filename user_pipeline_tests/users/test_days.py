"""The per-day functions (users/days.py): each layer of a day is read once, and the receipt and audit
taken from that one pass equal what a read-back of the written file gives."""

import gc
import json
import weakref
from pathlib import Path

import pandas as pd
import pytest

from user_pipeline.users import days
from user_pipeline.users.days import (
    RowDropRefused,
    load_checks,
    load_day,
    normalize_checks,
    normalize_day,
    refusing_checks,
)
from user_pipeline.users.normalize import audit_normalized_csv, read_normalized_csv
from user_pipeline.users.raw_files import without_plaintext_password
from user_pipeline.users.receipts import content_hash, fingerprints_path, read_fingerprints, row_fingerprints
from user_pipeline.users.warehouse import TableMismatchError, open_warehouse
from user_pipeline_tests.conftest import FIXTURES_DIR

DAY = "2026-11-23"


@pytest.fixture(scope="module")
def users() -> list[dict]:
    pages = [
        json.loads((FIXTURES_DIR / f"seed-fixture_results-1000_page-{page}.json").read_text(encoding="utf-8"))[
            "results"
        ]
        for page in (1, 2)
    ]
    return [without_plaintext_password(user) for page in pages for user in page]


def write_raw(path: Path, users: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(user, ensure_ascii=False) + "\n" for user in users), encoding="utf-8")
    return path


class ReadCounter:
    """Counts the reads the per-day functions make, by file."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.reads: list[str] = []
        for name in ("read_raw_users", "read_normalized_csv"):
            original = getattr(days, name)
            monkeypatch.setattr(days, name, self._counting(original))

    def _counting(self, original):
        def read(path, *args, **kwargs):
            self.reads.append(Path(path).name)
            return original(path, *args, **kwargs)

        return read


def test_normalize_day_reads_the_raw_file_once_and_the_previous_csvs_kept_fingerprints_not_the_csv(
    users, tmp_path, monkeypatch
):
    raw = write_raw(tmp_path / "raw.jsonl", users)
    previous = tmp_path / "committed.csv"
    normalize_day(DAY, raw, previous, previous_csv=tmp_path / "none.csv", max_row_drop_fraction=0.2)
    assert fingerprints_path(previous).exists()
    counter = ReadCounter(monkeypatch)

    normalized = normalize_day(
        DAY, raw, tmp_path / "new.csv", previous_csv=previous, max_row_drop_fraction=0.2, chunk_rows=300
    )

    assert counter.reads == ["raw.jsonl"]
    assert normalized.receipt.previous_rows == normalized.rows == 1994
    assert (normalized.receipt.added, normalized.receipt.removed, normalized.receipt.changed) == (0, 0, 0)
    kept = read_fingerprints(fingerprints_path(previous), previous)
    pd.testing.assert_series_equal(kept, row_fingerprints(read_normalized_csv(previous, chunk_rows=300)))


def test_fingerprints_kept_for_other_bytes_than_the_csvs_are_ignored_and_the_csv_is_read(users, tmp_path, monkeypatch):
    raw = write_raw(tmp_path / "raw.jsonl", users[:50])
    previous = tmp_path / "committed.csv"
    normalize_day(DAY, raw, previous, previous_csv=previous, max_row_drop_fraction=0.2)
    # The same size, one value changed: only the digest tells.
    text = previous.read_text(encoding="utf-8")
    first = users[0]["name"]["first"]
    previous.write_text(text.replace(first, first[::-1] if first[::-1] != first else first.upper(), 1), "utf-8")
    assert read_fingerprints(fingerprints_path(previous), previous) is None
    counter = ReadCounter(monkeypatch)

    normalized = normalize_day(DAY, raw, tmp_path / "new.csv", previous_csv=previous, max_row_drop_fraction=0.2)

    assert sorted(counter.reads) == ["committed.csv", "raw.jsonl"]
    assert (normalized.receipt.previous_rows, normalized.receipt.changed) == (50, 1)


def test_the_one_pass_receipt_and_audit_equal_a_read_back_of_the_written_csv(users, tmp_path):
    raw = write_raw(tmp_path / "raw.jsonl", users)
    csv_path = tmp_path / "day.csv"

    normalized = normalize_day(
        DAY, raw, csv_path, previous_csv=tmp_path / "none.csv", max_row_drop_fraction=0.2, chunk_rows=300
    )

    read_back = row_fingerprints(read_normalized_csv(csv_path, chunk_rows=300))
    assert normalized.receipt.content_hash == content_hash(read_back)
    assert normalized.receipt.rows == len(read_back) == normalized.rows
    assert normalized.audit == audit_normalized_csv(csv_path)
    assert normalized.summary.bytes == csv_path.stat().st_size
    assert normalized.summary.users_read == 2000 and normalized.summary.duplicates_dropped == 6
    checks = normalize_checks(normalized, raw_users=2000, max_row_drop_fraction=0.2)
    assert all(passed for passed, _ in checks.values()) and refusing_checks("normalized_users", checks) == []


def test_the_audit_counts_a_repeated_user_id_and_refuses_the_day(users, tmp_path):
    repeated = [*users[:10], {**users[10], "login": {**users[10]["login"], "uuid": users[2]["login"]["uuid"]}}]
    normalized = normalize_day(
        DAY,
        write_raw(tmp_path / "raw.jsonl", repeated),
        tmp_path / "day.csv",
        previous_csv=tmp_path / "none.csv",
        max_row_drop_fraction=0.2,
    )
    assert normalized.audit.repeated_user_ids == [users[2]["login"]["uuid"]]
    assert refusing_checks("normalized_users", normalize_checks(normalized, 11, 0.2)) == ["user_ids_unique"]


def test_a_row_drop_past_the_limit_is_refused_and_keeps_the_previous_csv(users, tmp_path):
    csv_path = tmp_path / "day.csv"
    normalize_day(
        DAY, write_raw(tmp_path / "all.jsonl", users), csv_path, previous_csv=csv_path, max_row_drop_fraction=0.2
    )
    before = csv_path.read_bytes()
    with pytest.raises(RowDropRefused, match=f"{DAY}: the new data has 50% fewer rows than the previous CSV"):
        normalize_day(
            DAY,
            write_raw(tmp_path / "half.jsonl", users[:1000]),
            csv_path,
            previous_csv=csv_path,
            max_row_drop_fraction=0.2,
        )
    assert csv_path.read_bytes() == before


def test_load_day_reads_the_csv_once_and_its_table_hash_equals_the_normalized_rows(users, tmp_path, monkeypatch):
    csv_path = tmp_path / "day.csv"
    normalized = normalize_day(
        DAY, write_raw(tmp_path / "raw.jsonl", users), csv_path, previous_csv=csv_path, max_row_drop_fraction=0.2
    )
    warehouse = open_warehouse(f"sqlite:///{tmp_path}/warehouse.sqlite")
    counter = ReadCounter(monkeypatch)

    loaded = load_day(warehouse, DAY, csv_path, expected_hash=normalized.receipt.content_hash, chunk_rows=500)

    assert counter.reads == ["day.csv"]
    assert (loaded.rows_loaded, loaded.rows_stored) == (1994, 1994)
    assert loaded.receipt.content_hash == normalized.receipt.content_hash
    assert all(passed for passed, _ in load_checks(loaded, normalized).values())


def test_load_day_rolls_back_when_the_csv_no_longer_holds_the_rows_normalized(users, tmp_path):
    csv_path = tmp_path / "day.csv"
    normalized = normalize_day(
        DAY, write_raw(tmp_path / "raw.jsonl", users[:50]), csv_path, previous_csv=csv_path, max_row_drop_fraction=0.2
    )
    warehouse = open_warehouse(f"sqlite:///{tmp_path}/warehouse.sqlite")
    load_day(warehouse, DAY, csv_path)
    before = warehouse.read_partition(DAY)
    # A value changed on disk between normalizing and loading: the CSV's own hash still agrees with
    # the table, but not with the rows as normalized.
    csv_path.write_text(
        csv_path.read_text(encoding="utf-8").replace(users[0]["name"]["first"], "Changed", 1), encoding="utf-8"
    )

    with pytest.raises(
        TableMismatchError, match=rf"users {DAY}: the rows read back \(50 rows, content hash \w+\) differ"
    ):
        load_day(warehouse, DAY, csv_path, expected_hash=normalized.receipt.content_hash)

    pd.testing.assert_frame_equal(warehouse.read_partition(DAY), before)


def test_a_same_pass_day_is_freed_by_reference_counting_once_dropped(tmp_path, users):
    """Nothing of a day's CSV (its frames, fingerprints, audit) waits for the cyclic garbage
    collector, which a long range's run process reaches only every several days: a reference
    cycle through the writer kept each day's frames until then (a 31-day range grew by ~70 MB)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        same_pass = days.SamePassCsv(DAY, tmp_path / "day.csv", contract_checked=True)
        same_pass.add(users)
        normalize_day(
            DAY,
            tmp_path / "raw.jsonl",
            tmp_path / "day.csv",
            previous_csv=tmp_path / "none.csv",
            max_row_drop_fraction=1.0,
            same_pass=same_pass,
        )
        freed = weakref.ref(same_pass)
        del same_pass
        assert freed() is None, "the day's same-pass CSV is kept alive by a reference cycle"
    finally:
        if was_enabled:
            gc.enable()
