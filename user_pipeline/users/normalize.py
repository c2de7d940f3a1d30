"""Raw API users -> one flat, typed row per user, with duplicate emails resolved.

Plain pandas, no Dagster. Pages are processed one chunk at a time so memory stays flat however
many users a partition holds.

Email identity: an email's key (`email_key`) is the address trimmed and case-folded
(`str.strip().casefold()`); the address as sent stays in `email`. The key is what the in-day
dedup, the registry, the table's unique index and `users_latest` compare.

Duplicate rule: within a partition the first occurrence of an email key in API order, page 1
first, is kept; later rows with that key are dropped and counted.

The CSV is written and read in the format of `csv_format` (every string byte for byte, "" distinct
from missing).

The plaintext `login.password` is never read: only the API's salt and salted SHA-256 are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from user_pipeline.shared.atomic_files import atomic_write
from user_pipeline.users.csv_format import CsvWriter, iter_csv, read_csv, read_header

# Column -> pandas dtype, in file order. Postcode is text: the API mixes 48687 and "V0V 4U7".
USER_COLUMNS: dict[str, str] = {
    "partition_date": "string",
    "user_id": "string",
    "email": "string",
    "email_key": "string",
    "username": "string",
    "title": "string",
    "first_name": "string",
    "last_name": "string",
    "gender": "string",
    "date_of_birth": "string",
    "age": "Int64",
    "registered_at": "string",
    "phone": "string",
    "cell": "string",
    "street_number": "Int64",
    "street_name": "string",
    "city": "string",
    "state": "string",
    "country": "string",
    "postcode": "string",
    "latitude": "float64",
    "longitude": "float64",
    "timezone_offset": "string",
    "nationality": "string",
    "id_name": "string",
    "id_value": "string",
    "password_salt": "string",
    "password_sha256": "string",
    "picture_url": "string",
}

# Flattened API field -> column.
_SOURCE_FIELDS: dict[str, str] = {
    "login.uuid": "user_id",
    "email": "email",
    "login.username": "username",
    "name.title": "title",
    "name.first": "first_name",
    "name.last": "last_name",
    "gender": "gender",
    "dob.date": "date_of_birth",
    "dob.age": "age",
    "registered.date": "registered_at",
    "phone": "phone",
    "cell": "cell",
    "location.street.number": "street_number",
    "location.street.name": "street_name",
    "location.city": "city",
    "location.state": "state",
    "location.country": "country",
    "location.postcode": "postcode",
    "location.coordinates.latitude": "latitude",
    "location.coordinates.longitude": "longitude",
    "location.timezone.offset": "timezone_offset",
    "nat": "nationality",
    "id.name": "id_name",
    "id.value": "id_value",
    "login.salt": "password_salt",
    "login.sha256": "password_sha256",
    "picture.large": "picture_url",
}

PLAINTEXT_PASSWORD_COLUMNS = frozenset({"password", "login.password", "login_password"})


@dataclass(frozen=True)
class CsvAudit:
    rows: int
    missing_emails: int
    duplicate_emails: int
    plaintext_password_columns: list[str]
    repeated_user_ids: list[str]
    """user_ids on more than one row of the day, sorted."""


class CsvAuditor:
    """Counts what the asset checks guard against, frame by frame, as the rows are written or read:
    rows, missing emails (null or blank), repeated email keys (`email_keys`), repeated user_ids and
    plaintext password columns. Memory: one set entry per email key and user_id of the day."""

    def __init__(self, columns: Iterable[str]):
        self._columns = list(columns)
        self._rows = self._missing = self._duplicates = 0
        self._keys: set[str] = set()
        self._user_ids: set[str] = set()
        self._repeated: set[str] = set()

    def add(self, frame: pd.DataFrame) -> None:
        self._rows += len(frame)
        if "email" in frame:
            keys = frame["email_key"] if "email_key" in frame else email_keys(frame["email"].astype("string"))
            blank = keys.isna() | (keys == "")
            self._missing += int(blank.sum())
            for key in keys[~blank].tolist():
                if key in self._keys:
                    self._duplicates += 1
                else:
                    self._keys.add(key)
        else:
            self._missing += len(frame)
        if "user_id" in frame:
            for user_id in frame["user_id"].dropna().tolist():
                if user_id in self._user_ids:
                    self._repeated.add(user_id)
                else:
                    self._user_ids.add(user_id)

    def result(self) -> CsvAudit:
        return CsvAudit(
            rows=self._rows,
            missing_emails=self._missing,
            duplicate_emails=self._duplicates,
            plaintext_password_columns=[
                column for column in self._columns if column.lower() in PLAINTEXT_PASSWORD_COLUMNS
            ],
            repeated_user_ids=sorted(self._repeated),
        )


@dataclass(frozen=True)
class NormalizeSummary:
    """What `write_normalized_csv` wrote, computed from the frames as written (no read-back)."""

    users_read: int
    rows_written: int
    duplicates_dropped: int
    preview: pd.DataFrame
    audit: CsvAudit
    bytes: int = 0


def normalize_users(users: list[dict], partition_date: str) -> pd.DataFrame:
    """Flattens API user objects into USER_COLUMNS, typed; order is the API's."""
    flat = pd.json_normalize(users)
    missing = sorted(set(_SOURCE_FIELDS) - set(flat.columns))
    if missing:
        raise ValueError(f"users for {partition_date} lack fields {missing}")
    frame = flat[list(_SOURCE_FIELDS)].rename(columns=_SOURCE_FIELDS)
    frame["partition_date"] = partition_date
    frame["email_key"] = email_keys(frame["email"].astype("string"))
    # Mixed int/str postcodes become text without a float detour (48687 must not turn into "48687.0").
    frame["postcode"] = frame["postcode"].map(str, na_action="ignore")
    frame["id_value"] = frame["id_value"].map(str, na_action="ignore")
    # + 0.0 turns -0.0 into 0.0: equal numbers, and SQLite cannot store the sign of a zero.
    frame["latitude"] = pd.to_numeric(frame["latitude"], errors="raise") + 0.0
    frame["longitude"] = pd.to_numeric(frame["longitude"], errors="raise") + 0.0
    return frame[list(USER_COLUMNS)].astype(USER_COLUMNS)


def email_keys(emails: pd.Series) -> pd.Series:
    """The email identity: trimmed (Unicode whitespace) and case-folded (`str.casefold`); null stays null."""
    return emails.str.strip().map(str.casefold, na_action="ignore").astype("string")


def drop_duplicate_emails(frame: pd.DataFrame, seen_emails: set[str]) -> pd.DataFrame:
    """Keeps the first occurrence of each email key across calls; updates `seen_emails`."""
    keys = frame["email_key"]
    keep = ~keys.duplicated() & ~keys.isin(seen_emails)
    seen_emails.update(keys[keep])
    return frame[keep]


def write_normalized_csv(
    raw_chunks: Iterable[list[dict]],
    csv_path: Path,
    partition_date: str,
    preview_rows: int = 10,
    before_commit: Callable[[NormalizeSummary], None] = lambda written: None,
    on_frame: Callable[[pd.DataFrame], None] = lambda frame: None,
) -> NormalizeSummary:
    """Normalizes chunk by chunk into one CSV, replaced atomically. The summary's counts and audit
    are taken from the frames as they are written, and `on_frame` sees each of them (for the
    receipt's fingerprints), so the new file is never read back.

    `before_commit` sees the summary of the complete new file before it replaces the old one;
    raising there keeps the old file."""
    seen_emails: set[str] = set()
    users_read = rows_written = 0
    preview = empty_users_frame()
    auditor = CsvAuditor(USER_COLUMNS)
    with atomic_write(csv_path) as handle:
        writer = CsvWriter(handle, USER_COLUMNS)
        for users in raw_chunks:
            users_read += len(users)
            frame = drop_duplicate_emails(normalize_users(users, partition_date), seen_emails)
            writer.write(frame)
            auditor.add(frame)
            on_frame(frame)
            if rows_written == 0:
                preview = frame.head(preview_rows)
            rows_written += len(frame)
        writer.close()
        handle.flush()
        summary = NormalizeSummary(
            users_read=users_read,
            rows_written=rows_written,
            duplicates_dropped=users_read - rows_written,
            preview=preview,
            audit=auditor.result(),
            bytes=handle.tell(),
        )
        before_commit(summary)
    return summary


def empty_users_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=list(USER_COLUMNS)).astype(USER_COLUMNS)


def read_normalized_csv(csv_path: Path, chunk_rows: int | None = None) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Reads a normalized CSV with USER_COLUMNS types: every value as written, `""` distinct from null.

    With `chunk_rows`, an iterator of frames of at most that many rows. Raises ValueError naming
    the file when it is not in the `csv_format` format."""
    if chunk_rows is None:
        return read_csv(csv_path, USER_COLUMNS)
    return iter_csv(csv_path, USER_COLUMNS, chunk_rows)


def audit_normalized_csv(csv_path: Path, chunk_rows: int = 5000) -> CsvAudit:
    """The audit (`CsvAuditor`) of a CSV file, read once in chunks of `chunk_rows`."""
    header = read_header(csv_path)
    present = {column: "string" for column in ("email", "user_id") if column in header}
    auditor = CsvAuditor(header)
    for frame in iter_csv(csv_path, present, chunk_rows) if present else [read_csv(csv_path, {}, usecols=[])]:
        auditor.add(frame)
    return auditor.result()
