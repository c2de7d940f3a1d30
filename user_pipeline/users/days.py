"""One function per step of a users day, each returning a typed result: fetch (API pages -> raw
file), normalize (raw file -> CSV, with its receipt and audit), load (CSV -> warehouse table, with
its receipt). Plain Python, no Dagster: the `daily_users` asset and the benchmark's bare script
(benchmarks/bare.py) both call exactly these.

Each day's data is read once per layer: the raw file once by `normalize_day` (its counts, audit
and row fingerprints come from the frames as they are written, never from reading the new CSV
back), the day's previous CSV once (the receipt's "before"), the new CSV once by `load_day`, and
the table's day once before and once after the load, inside its transaction (the receipt's
"before", and the read-back that proves the load).

Paths are given by the caller: the day's staged files while a run has not committed the day
(users/day_commit.py), the committed ones otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from user_pipeline.shared.collector import collector_paused
from user_pipeline.users.api_client import UsersPage
from user_pipeline.users.csv_format import read_header
from user_pipeline.users.normalize import (
    USER_COLUMNS,
    CsvAudit,
    NormalizedCsvWriter,
    NormalizeSummary,
    read_normalized_csv,
)
from user_pipeline.users.raw_files import RawUsersSummary, read_raw_users, write_raw_users
from user_pipeline.users.receipts import (
    PartitionReceipt,
    fingerprints_path,
    make_receipt,
    read_fingerprints,
    row_fingerprints,
    write_fingerprints,
)
from user_pipeline.users.warehouse import Warehouse

CHUNK_ROWS = 5000


@dataclass(frozen=True)
class FetchedDay:
    """The day's users as the API sent them, written to `path` (JSON Lines), rejects to `rejects_path`."""

    day: str
    path: Path
    raw: RawUsersSummary
    rejects_path: Path | None = None


class SamePassCsv:
    """normalized_users written in the same pass as raw_users: `fetch_day` hands it each page's
    users as it writes them (`add`), and `normalize_day(same_pass=...)` finishes the CSV, so the
    raw file is never read back. The users are normalized in chunks of `chunk_rows`, as
    `normalize_day` reads them from the raw file, so both ways write the same bytes.
    `contract_checked`: every user `add` is given passed contract.check_page (those fetch_day
    writes do; a committed raw file may predate the contract, so reading one back is not).

    A value the CSV cannot hold does not stop the fetch: the raw file is complete, and
    `normalize_day` raises the ValueError (as it would reading the raw file). Call `abort` when
    the day goes no further (its temporary file is removed; idempotent)."""

    def __init__(self, day: str, csv_path: Path, chunk_rows: int = CHUNK_ROWS, *, contract_checked: bool = False):
        self.day, self.path, self._chunk_rows = day, csv_path, chunk_rows
        # The callback holds the list, not `self`: a cycle through `self` would keep the day's
        # frames until a full garbage collection, days later in a long range.
        self.fingerprints: list[pd.Series] = (fingerprints := [])
        self.writer = NormalizedCsvWriter(
            csv_path,
            day,
            on_frame=lambda frame: fingerprints.append(row_fingerprints([frame])),
            contract_checked=contract_checked,
        )
        self.error: ValueError | None = None
        self._pending: list[dict] = []
        self._finished = False

    def add(self, users: list[dict]) -> None:
        self._pending.extend(users)
        while len(self._pending) >= self._chunk_rows:
            self._write(self._pending[: self._chunk_rows])
            del self._pending[: self._chunk_rows]

    def finish(self) -> NormalizeSummary:
        """Writes what is left; raises the ValueError of a value that could not be written."""
        if not self._finished:
            self._finished = True
            if self._pending:
                self._write(self._pending)
                self._pending = []
        if self.error is not None:
            self.abort()
            raise self.error
        return self.writer.finish()

    def abort(self) -> None:
        self._pending = []
        self.writer.abort()

    def _write(self, users: list[dict]) -> None:
        if self.error is not None:
            return
        try:
            self.writer.add(users)
        except ValueError as error:
            self.error = error
            self.writer.abort()


def fetch_day(
    day: str,
    pages: Iterable[UsersPage],
    raw_path: Path,
    *,
    rejects_path: Path | None = None,
    same_pass: SamePassCsv | None = None,
    on_lines: Callable[[bytes], None] = lambda lines: None,
) -> FetchedDay:
    """Writes the day's pages to `raw_path`, every user checked against the contract, and hands
    the users written to `same_pass` when given (normalized_users in the same pass), and each
    page's bytes as written to `on_lines` (raw_files.write_raw_users).

    Raises contract.ContractViolation (seed, page, user, field, value) at the first violating user
    unless `rejects_path` is given (quarantine: violating users go there with their reasons);
    the API client's errors (api_client.UsersApiError and subclasses) pass through, and then
    `same_pass` is aborted. `raw_path` is replaced only once every page arrived.

    Python's cyclic garbage collector is paused meanwhile (shared/collector.py): a page's users
    are some 100,000 objects without reference cycles, freed by reference counting once written,
    and collections set off by them walked the heap for nothing. What little cyclic garbage the
    day's frames leave (some 20 objects a page) is collected once the day is fetched."""
    try:
        with collector_paused():
            raw = write_raw_users(
                pages,
                raw_path,
                rejects_path=rejects_path,
                on_users=same_pass.add if same_pass else lambda users: None,
                on_lines=on_lines,
            )
    except BaseException:
        if same_pass is not None:
            same_pass.abort()
        raise
    return FetchedDay(day, raw_path, raw, rejects_path)


class RowDropRefused(Exception):
    """The day's new CSV has more than `max_row_drop_fraction` fewer rows than its previous one:
    the previous CSV is kept."""

    def __init__(self, day: str, receipt: PartitionReceipt, max_row_drop_fraction: float):
        super().__init__(
            f"{day}: the new data has {receipt.row_drop_fraction:.0%} fewer rows than the previous CSV "
            f"({receipt.rows} instead of {receipt.previous_rows}; the limit is {max_row_drop_fraction:.0%}); "
            "the previous CSV was kept"
        )
        self.day, self.receipt, self.max_row_drop_fraction = day, receipt, max_row_drop_fraction


@dataclass(frozen=True)
class NormalizedDay:
    """The day's CSV at `path`: counts, receipt (against `previous`), audit and a preview, all from one pass."""

    day: str
    path: Path
    summary: NormalizeSummary
    receipt: PartitionReceipt
    previous_note: str | None
    """Why the receipt has no "before" although a previous CSV exists (an older format), else None."""

    @property
    def rows(self) -> int:
        return self.summary.rows_written

    @property
    def audit(self) -> CsvAudit:
        return self.summary.audit


def previous_fingerprints(csv_path: Path, chunk_rows: int = CHUNK_ROWS) -> tuple[pd.Series | None, str | None]:
    """The receipt's "before": the fingerprints of the day's current CSV (None if there is none),
    and a note when it is not comparable (other columns than USER_COLUMNS: an older format).

    They are read from the CSV's fingerprints file (`fingerprints_path`) when that file was written
    with this very CSV (its size and SHA-256 agree), else computed from the CSV."""
    if not csv_path.exists():
        return None, None
    kept = read_fingerprints(fingerprints_path(csv_path), csv_path)
    if kept is not None:
        return kept, None
    if read_header(csv_path) != list(USER_COLUMNS):
        return (
            None,
            f"{csv_path} has other columns than {', '.join(USER_COLUMNS)} (an older format): no diff against it",
        )
    return row_fingerprints(read_normalized_csv(csv_path, chunk_rows=chunk_rows)), None


def normalize_day(
    day: str,
    raw_path: Path,
    csv_path: Path,
    *,
    previous_csv: Path,
    max_row_drop_fraction: float,
    chunk_rows: int = CHUNK_ROWS,
    same_pass: SamePassCsv | None = None,
) -> NormalizedDay:
    """Normalizes the raw file into `csv_path`, with the receipt against `previous_csv` (the day's
    committed CSV), and writes the CSV's fingerprints file beside it (`fingerprints_path`), the
    next receipt's "before". With `same_pass` (fed by fetch_day, for `csv_path`), the CSV was
    written while the raw file was, and the raw file is not read.

    Raises RowDropRefused (and keeps `csv_path` as it was) when the new rows are more than
    `max_row_drop_fraction` (0..1) fewer than the previous CSV's; FileNotFoundError when
    `raw_path` does not exist; ValueError naming user and column for a value that cannot be written."""
    previous, note = previous_fingerprints(previous_csv, chunk_rows)
    if same_pass is None:
        same_pass = SamePassCsv(day, csv_path, chunk_rows)
        try:
            for users in read_raw_users(raw_path, chunk_users=chunk_rows):
                same_pass.add(users)
        except BaseException:
            same_pass.abort()
            raise
    summary = same_pass.finish()
    try:
        current = pd.concat(same_pass.fingerprints) if same_pass.fingerprints else pd.Series([], dtype="uint64")
        receipt = make_receipt(previous, current)
        if receipt.row_drop_fraction > max_row_drop_fraction:
            raise RowDropRefused(day, receipt, max_row_drop_fraction)
    except BaseException:
        same_pass.abort()
        raise
    same_pass.writer.commit()
    write_fingerprints(fingerprints_path(csv_path), current, csv_path=csv_path, csv_sha256=same_pass.writer.sha256)
    return NormalizedDay(day, csv_path, summary, receipt, note)


@dataclass(frozen=True)
class LoadedDay:
    """The day as loaded into the table: rows read from the CSV and stored, and its receipt
    (the table's day before the load against after it)."""

    day: str
    rows_loaded: int
    rows_stored: int
    receipt: PartitionReceipt
    content_hash: str
    """Of the rows stored, equal to the CSV's (and to `expected_hash` when it was given)."""


def load_day(
    warehouse: Warehouse,
    day: str,
    csv_path: Path,
    *,
    expected_hash: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LoadedDay:
    """Replaces the day's rows in the table by the CSV's, in one transaction that commits only if
    the rows read back have the CSV's content hash, and `expected_hash` when given (the rows as
    normalized in this run).

    Raises warehouse.TableMismatchError (rolled back), warehouse.WarehouseUnavailableError
    (down or locked: worth a retry), the database's IntegrityError (a constraint refused a row:
    permanent), ValueError (rows the store cannot hold), FileNotFoundError (no CSV)."""
    chunks = read_normalized_csv(csv_path, chunk_rows=chunk_rows)
    # Rows read, inserted and read back hold no reference cycles (shared/collector.py).
    with collector_paused():
        load = warehouse.replace_partition_verified(day, chunks, chunk_rows, expected_hash=expected_hash)
    return LoadedDay(
        day, load.rows_inserted, len(load.stored), make_receipt(load.previous, load.stored), load.content_hash
    )


# The checks of each step, by asset, with whether a failure refuses the day (blocking): a refused
# day is not committed. Each check's result for a day is (passed, figures).
DAY_CHECKS: dict[str, dict[str, bool]] = {
    "raw_users": {"rejected_share_within_limit": True},
    "normalized_users": {
        "emails_unique_and_present": True,
        "user_ids_unique": True,
        "no_plaintext_password": True,
        "rows_match_raw_users": False,
        "row_drop_within_limit": True,
    },
    "users_table": {"rows_match_normalized_users": True, "table_matches_normalized_users": True},
}

CheckResults = dict[str, tuple[bool, dict]]


def fetch_checks(fetched: FetchedDay, max_rejected_fraction: float) -> CheckResults:
    """raw_users' checks: the share of users the contract left out (quarantine) within the limit."""
    raw = fetched.raw
    share = {"rejected_fraction": round(raw.rejected_fraction, 6), "max_rejected_fraction": max_rejected_fraction}
    return {
        "rejected_share_within_limit": (
            raw.rejected_fraction <= max_rejected_fraction,
            {"users_rejected": raw.rejected, **share},
        )
    }


def normalize_checks(normalized: NormalizedDay, raw_users: int, max_row_drop_fraction: float) -> CheckResults:
    """normalized_users' checks, from the audit and receipt of the one pass; `raw_users`: the users
    in the raw file (as fetch_day wrote them, when it ran, else as read)."""
    audit, summary = normalized.audit, normalized.summary
    return {
        "emails_unique_and_present": (
            audit.missing_emails == 0 and audit.duplicate_emails == 0,
            {"missing_emails": audit.missing_emails, "duplicate_emails": audit.duplicate_emails},
        ),
        "user_ids_unique": (
            not audit.repeated_user_ids,
            {
                "repeated_user_ids": ", ".join(audit.repeated_user_ids[:20]) or "none",
                "repeated_user_id_count": len(audit.repeated_user_ids),
            },
        ),
        "no_plaintext_password": (
            not audit.plaintext_password_columns,
            {"password_columns": ", ".join(audit.plaintext_password_columns) or "none"},
        ),
        "rows_match_raw_users": (
            audit.rows + summary.duplicates_dropped == raw_users,
            {"csv_rows": audit.rows, "duplicates_dropped": summary.duplicates_dropped, "raw_users": raw_users},
        ),
        "row_drop_within_limit": (
            normalized.receipt.row_drop_fraction <= max_row_drop_fraction,
            {"row_drop_fraction": normalized.receipt.row_drop_fraction, "max_row_drop_fraction": max_row_drop_fraction},
        ),
    }


def load_checks(loaded: LoadedDay, normalized: NormalizedDay | None) -> CheckResults:
    """users_table's checks: the table's rows and content hash against the rows normalized in this
    run (`normalized`), else against the CSV as read. load_day commits only when the hashes agree."""
    expected_rows = normalized.rows if normalized else loaded.rows_loaded
    expected_hash = normalized.receipt.content_hash if normalized else loaded.content_hash
    return {
        "rows_match_normalized_users": (
            loaded.rows_stored == expected_rows,
            {"table_rows": loaded.rows_stored, "csv_rows": expected_rows},
        ),
        "table_matches_normalized_users": (
            loaded.receipt.content_hash == expected_hash,
            {"csv_content_hash": expected_hash, "table_content_hash": loaded.receipt.content_hash},
        ),
    }


def refusing_checks(asset: str, results: CheckResults) -> list[str]:
    """The blocking checks of `asset` that failed: non-empty means the day is refused."""
    return [name for name, (passed, _) in results.items() if not passed and DAY_CHECKS[asset].get(name, False)]
