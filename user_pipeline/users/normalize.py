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

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from user_pipeline.shared.atomic_files import atomic_write
from user_pipeline.users.contract import stored_float
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


def normalize_users(users: list[dict], partition_date: str, *, contract_checked: bool = False) -> pd.DataFrame:
    """Flattens API user objects into USER_COLUMNS, typed; order is the API's.

    Users shaped as the contract declares (contract.py) are flattened field by field; any other
    shape takes `pd.json_normalize` (`normalize_users_by_json_normalize`), whose result is the
    definition: both give the same frame wherever the first applies (pinned by
    user_pipeline_tests/users/test_one_pass.py, on hostile generated users). `contract_checked`:
    the users passed contract.check_page, so the shape checks the contract already made are
    skipped (the same frame: test_one_pass.py again)."""
    frame = _flatten_declared_shape(users, contract_checked=contract_checked)
    if frame is None:
        return normalize_users_by_json_normalize(users, partition_date)
    frame.insert(0, "partition_date", pd.array([partition_date] * len(frame), dtype="string"))
    frame.insert(3, "email_key", email_keys(frame["email"]))
    return frame


def normalize_users_by_json_normalize(users: list[dict], partition_date: str) -> pd.DataFrame:
    """`normalize_users` by `pd.json_normalize`: any shape of user objects, fields missing on some
    users included (null there); raises ValueError when no user has one of the fields."""
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
    frame["latitude"] = _stored_floats("latitude", frame["latitude"].tolist())
    frame["longitude"] = _stored_floats("longitude", frame["longitude"].tolist())
    return frame[list(USER_COLUMNS)].astype(USER_COLUMNS)


# The dicts on the way to the fields read (a key holding "." in one of them could collide with a
# flattened name in json_normalize, whose last write wins: such users take its path).
_PATH_DICTS = sorted({tuple(dotted.split("."))[:depth] for dotted in _SOURCE_FIELDS for depth in range(1, 3)})
_PATH_DICTS = [path for path in _PATH_DICTS if any(d.startswith(".".join(path) + ".") for d in _SOURCE_FIELDS)]
_FIELD_PATHS = [(column, tuple(dotted.split("."))) for dotted, column in _SOURCE_FIELDS.items()]
_NONE = type(None)
# The value types each kind of column takes on this path, and which json_normalize's frame turns
# into the same values. Others (a float postcode, an int beside a null, booleans) take its path.
_TEXT_TYPES = ({str}, {str, _NONE}, {_NONE})
_TEXT_OR_INT_TYPES = (*_TEXT_TYPES, {str, int}, {int})
_INT64_BOUNDS = (-(2**63), 2**63 - 1)


def _flatten_declared_shape(users: list[dict], *, contract_checked: bool = False) -> pd.DataFrame | None:
    """The frame of USER_COLUMNS but partition_date and email_key, or None when a user is not
    shaped so that field-by-field reading equals json_normalize's (then it decides). Raises
    ValueError, as that path does, for a coordinate that would not be stored as sent.

    With `contract_checked` (the users passed contract.check_page), what the contract holds is
    not looked at again: every object on the paths is a dict with no key holding ".", and every
    text field but id.value is text (some 20 ms of a 5,000-user page)."""
    if not users:
        return None
    # The dicts on each path, level by level (users, then users' "location", then its "street"...).
    nodes: dict[tuple[str, ...], list] = {(): users}
    values: dict[str, list] = {}
    try:
        # map(itemgetter) and set().union walk the users in C: the same lookups, several times faster.
        for path in ((), *_PATH_DICTS):
            if path:
                nodes[path] = list(map(itemgetter(path[-1]), nodes[path[:-1]]))
            level = nodes[path]
            if contract_checked:
                continue
            if set(map(type, level)) != {dict} or any("." in key for key in set().union(*level)):
                return None
        for column, path in _FIELD_PATHS:
            values[column] = list(map(itemgetter(path[-1]), nodes[path[:-1]]))
    except (KeyError, TypeError):
        return None
    columns: dict[str, object] = {}
    for column, dtype in USER_COLUMNS.items():
        if column in ("partition_date", "email_key"):
            continue
        column_values = values[column]
        if contract_checked and dtype == "string" and column not in ("postcode", "id_value"):
            columns[column] = pd.array(column_values, dtype="string")
            continue
        types = set(map(type, column_values))
        if column in ("postcode", "id_value"):
            if types not in _TEXT_OR_INT_TYPES:
                return None
            if int in types:
                column_values = [value if type(value) is str else str(value) for value in column_values]
            columns[column] = pd.array(column_values, dtype="string")
        elif dtype == "string":
            if types not in _TEXT_TYPES:
                return None
            columns[column] = pd.array(column_values, dtype="string")
        elif dtype == "Int64":
            if types != {int} or min(column_values) < _INT64_BOUNDS[0] or max(column_values) > _INT64_BOUNDS[1]:
                return None
            columns[column] = pd.array(column_values, dtype="Int64")
        else:
            # json_normalize's frame holds numbers as numbers and text as text, read the same way.
            if not types <= {str, int, float, _NONE} or (_NONE in types and int in types):
                return None
            columns[column] = _stored_floats(column, column_values)
    return pd.DataFrame(columns)


def _stored_floats(column: str, values: list) -> np.ndarray:
    """Numbers or numeric text -> float64, read as the contract reads them (contract.stored_float);
    null and NaN stay NaN. Raises ValueError naming the column.

    Text that is already the shortest text of its float (repr), as the API sends most coordinates,
    is read in C, the whole column at once: such text is in the contract's notation and stored as
    sent. The rest ("70.2630", "nan", ...) is read value by value, in order, as before."""
    if set(map(type, values)) == {str}:
        try:
            floats = list(map(float, values))
        except ValueError:
            floats = None
        if floats is not None:
            numbers = np.array(floats, dtype="float64")
            finite = np.isfinite(numbers).tolist()
            texts = list(map(repr, floats))
            others = [
                i
                for i, (text, value, ok) in enumerate(zip(texts, values, finite, strict=True))
                if text != value or not ok
            ]
            try:
                for i in others:
                    numbers[i] = stored_float(values[i])
            except ValueError as error:
                raise ValueError(f"{column}: {error}") from None
            return numbers + 0.0
    try:
        numbers = [math.nan if value is None else stored_float(value) for value in values]
    except ValueError as error:
        raise ValueError(f"{column}: {error}") from None
    # + 0.0 turns -0.0 into 0.0: equal numbers, and SQLite cannot store the sign of a zero.
    return np.array(numbers, dtype="float64") + 0.0


def email_keys(emails: pd.Series) -> pd.Series:
    """The email identity: trimmed (Unicode whitespace) and case-folded (`str.casefold`); null stays null."""
    return emails.str.strip().map(str.casefold, na_action="ignore").astype("string")


def drop_duplicate_emails(frame: pd.DataFrame, seen_emails: set[str]) -> pd.DataFrame:
    """Keeps the first occurrence of each email key across calls; updates `seen_emails`.

    Membership is asked of the set value by value: `Series.isin(set)` copies the set into an array
    each call, so a day's calls cost quadratic time in its users (0.6 s of a 100,000-user day)."""
    keys = frame["email_key"]
    seen = np.fromiter(map(seen_emails.__contains__, keys.array), dtype=bool, count=len(keys))
    keep = ~keys.duplicated() & ~seen
    seen_emails.update(keys[keep])
    return frame[keep]


class NormalizedCsvWriter:
    """One day's CSV, written chunk by chunk of API users (`add`) to a temporary file that replaces
    `csv_path` on `commit` (or is removed by `abort`). Counts, audit and preview come from the
    frames as they are written, and `on_frame` sees each of them (for the receipt's
    fingerprints), so the new file is never read back; `sha256` is the digest of the bytes as
    written; `contract_checked`: every user `add` is given passed contract.check_page
    (normalize_users). Memory: one chunk of users, and the audit's sets."""

    def __init__(
        self,
        csv_path: Path,
        partition_date: str,
        *,
        preview_rows: int = 10,
        on_frame: Callable[[pd.DataFrame], None] = lambda frame: None,
        contract_checked: bool = False,
    ):
        self.path, self.partition_date = csv_path, partition_date
        self._contract_checked = contract_checked
        self._preview_rows, self._on_frame = preview_rows, on_frame
        self._seen_emails: set[str] = set()
        self._users_read = self._rows_written = 0
        self._previews: list[pd.DataFrame] = []
        self._auditor = CsvAuditor(USER_COLUMNS)
        self._summary: NormalizeSummary | None = None
        self._files = ExitStack()
        self._handle = self._files.enter_context(atomic_write(csv_path))
        self._hashing = _HashingWriter(self._handle)
        self._writer = CsvWriter(self._hashing, USER_COLUMNS)

    def add(self, users: list[dict]) -> None:
        """Normalizes and writes the next users in API order; raises ValueError (see CsvWriter.write)."""
        self._users_read += len(users)
        if not users:
            return
        frame = drop_duplicate_emails(
            normalize_users(users, self.partition_date, contract_checked=self._contract_checked), self._seen_emails
        )
        self._writer.write(frame)
        self._auditor.add(frame)
        self._on_frame(frame)
        if sum(map(len, self._previews)) < self._preview_rows:
            self._previews.append(frame.head(self._preview_rows))
        self._rows_written += len(frame)

    def finish(self) -> NormalizeSummary:
        """The summary of the complete file, flushed but not yet in place."""
        if self._summary is None:
            self._writer.close()
            self._handle.flush()
            preview = pd.concat(self._previews).head(self._preview_rows) if self._previews else empty_users_frame()
            self._summary = NormalizeSummary(
                users_read=self._users_read,
                rows_written=self._rows_written,
                duplicates_dropped=self._users_read - self._rows_written,
                preview=preview,
                audit=self._auditor.result(),
                bytes=self._handle.tell(),
            )
        return self._summary

    @property
    def sha256(self) -> str:
        return self._hashing.digest.hexdigest()

    def commit(self) -> NormalizeSummary:
        """Replaces `csv_path` by the new file."""
        summary = self.finish()
        self._files.close()
        return summary

    def abort(self) -> None:
        """Removes the temporary file: `csv_path` stays as it was. Idempotent."""
        self._files.__exit__(_Aborted, _Aborted(), None)


class _Aborted(Exception):
    pass


class _HashingWriter:
    """A binary file object that digests what passes through it (SHA-256)."""

    def __init__(self, handle: IO[bytes]):
        self._handle, self.digest = handle, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()

    @property
    def closed(self) -> bool:
        return self._handle.closed


def write_normalized_csv(
    raw_chunks: Iterable[list[dict]],
    csv_path: Path,
    partition_date: str,
    preview_rows: int = 10,
    before_commit: Callable[[NormalizeSummary], None] = lambda written: None,
    on_frame: Callable[[pd.DataFrame], None] = lambda frame: None,
) -> NormalizeSummary:
    """Normalizes chunk by chunk into one CSV, replaced atomically (NormalizedCsvWriter).

    `before_commit` sees the summary of the complete new file before it replaces the old one;
    raising there keeps the old file."""
    writer = NormalizedCsvWriter(csv_path, partition_date, preview_rows=preview_rows, on_frame=on_frame)
    try:
        for users in raw_chunks:
            writer.add(users)
        before_commit(writer.finish())
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


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
