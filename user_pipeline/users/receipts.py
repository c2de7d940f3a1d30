"""Partition receipts: what a materialization of a day wrote, against what the day held before.

A receipt counts rows, fingerprints the content (order-independent), and diffs by user_id:
rows added, removed and changed. Rows are reduced to 64-bit fingerprints chunk by chunk, so a
receipt of any size costs a few bytes per row. Plain pandas, no Dagster.

A user_id on several rows of a day (the API repeating a login.uuid) is diffed as the multiset of
its rows: it counts as changed when that multiset differs. The blocking check
`user_ids_unique` refuses such a day; receipts still never fail on it, so a re-run of the day
after the API stops repeating the id works.
"""

import hashlib
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import NoneType

import numpy as np
import pandas as pd
import pyarrow as pa

from user_pipeline.shared.atomic_files import atomic_write
from user_pipeline.users.normalize import USER_COLUMNS


def row_fingerprints(chunks: Iterable[pd.DataFrame]) -> pd.Series:
    """user_id -> a 64-bit hash of the row's USER_COLUMNS values: `pandas_row_hashes`' (equal to
    `pd.util.hash_pandas_object(chunk[list(USER_COLUMNS)], index=False)`)."""
    parts = [
        pd.Series(pandas_row_hashes(chunk), index=np.asarray(chunk["user_id"].array, dtype=object)) for chunk in chunks
    ]
    return pd.concat(parts) if parts else pd.Series([], dtype="uint64")


# How pandas hashes a missing text value: text (object) columns are categorized first, and a
# missing category is u8max (Categorical._hash_pandas_object).
_MISSING_TEXT_HASH = np.uint64(2**64 - 1)
_IS_NA = partial(operator.is_, pd.NA)
_IS_NONE = partial(operator.is_, None)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# The arrays row_fingerprints' frames hold, by USER_COLUMNS dtype (others take pandas' own path).
_ARRAY_TYPES = {
    "string": pd.arrays.StringArray,
    "Int64": pd.arrays.IntegerArray,
    "float64": pd.arrays.NumpyExtensionArray,
}


def pandas_row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """`pd.util.hash_pandas_object(frame[list(USER_COLUMNS)], index=False)` as uint64, the same
    numbers made without categorizing each text column first (pandas' default: a factorization
    per column, which costs more than the hashing on a day's mostly distinct values). Text is
    hashed value by value (`pd.util.hash_array(categorize=False)`, what the categorized path
    applies to the distinct values) and a missing text value takes the categorized path's u8max.

    One difference, on purpose: pandas' factorization compares text as C strings, so in one call
    "" and "\x00x" are one category and both rows get the hash of the first seen: a row's
    fingerprint would depend on the other rows of its chunk. Here each value is hashed alone. The
    contract refuses U+0000 in every text field normalized_users reads (contract.py), so no day's
    rows have such text. A frame of other dtypes takes pandas' own path.
    Pinned to pandas by user_pipeline_tests/users/test_fingerprints.py (hypothesis)."""
    columns = []
    for name, dtype in USER_COLUMNS.items():
        series = frame[name]
        if str(series.dtype) != dtype or type(series.array) is not _ARRAY_TYPES[dtype]:
            return pd.util.hash_pandas_object(frame[list(USER_COLUMNS)], index=False).to_numpy()
        if dtype == "string":
            # A StringArray holds text and the pd.NA singleton: see _text_hashes.
            columns.append((np.asarray(series.array, dtype=object), _MISSING_AS_NA))
        elif dtype == "Int64":
            columns.append((series.array, _NUMBERS))
        else:
            columns.append((series.to_numpy(), _NUMBERS))
    return _combined_hashes(columns, len(frame))


def record_fingerprints(records: list[tuple]) -> pd.Series | None:
    """row_fingerprints of the frame the records (tuples of USER_COLUMNS' values as a database
    returns them: str, int, float or None; partition_date as text or a date) make as USER_COLUMNS
    types, without making the frame; None when a value is of another type (then make the frame)."""
    if not records:
        return pd.Series([], dtype="uint64")
    columns = []
    user_ids = None
    for (name, dtype), values in zip(USER_COLUMNS.items(), zip(*records, strict=True), strict=True):
        types = set(map(type, values))
        if name == "partition_date" and types - {str, NoneType}:
            values = tuple(value if value is None else str(value) for value in values)
            types = set(map(type, values))
        if dtype == "string":
            if not types <= {str, NoneType}:
                return None
            columns.append((np.array(values, dtype=object), _MISSING_AS_NONE if NoneType in types else _NONE_MISSING))
            if name == "user_id":
                user_ids = np.array([pd.NA if value is None else value for value in values], dtype=object)
        elif dtype == "Int64":
            numbers = [value for value in values if value is not None]
            if not types <= {int, NoneType} or (
                numbers and not _INT64_MIN <= min(numbers) <= max(numbers) <= _INT64_MAX
            ):
                return None
            columns.append((pd.array(values, dtype="Int64"), _NUMBERS))
        else:
            if not types <= {float, int, NoneType}:
                return None
            columns.append(
                (np.array([np.nan if value is None else value for value in values], dtype="float64"), _NUMBERS)
            )
    return pd.Series(_combined_hashes(columns, len(records)), index=user_ids)


# A column for _combined_hashes: text whose missing values are pd.NA (a StringArray's), None (a
# database's), or text with none missing; or numbers (pandas hashes them as they are).
_MISSING_AS_NA, _MISSING_AS_NONE, _NONE_MISSING, _NUMBERS = "pd.NA", "None", "none missing", "numbers"


def _text_hashes(values: np.ndarray, missing_as: str) -> np.ndarray:
    """pandas' hash of a text column (object values: str, missing ones as `missing_as` says),
    value by value: a missing value gets u8max, as the categorized path gives it."""
    if missing_as == _NONE_MISSING:
        return pd.util.hash_array(values, categorize=False)
    # Found by identity: faster than isna's check of every value against every kind of missing.
    missing = np.fromiter(
        map(_IS_NA if missing_as == _MISSING_AS_NA else _IS_NONE, values), dtype=bool, count=len(values)
    )
    if not missing.any():
        return pd.util.hash_array(values, categorize=False)
    values = values.copy()
    values[missing] = ""
    hashed = pd.util.hash_array(values, categorize=False)
    hashed[missing] = _MISSING_TEXT_HASH
    return hashed


def _combined_hashes(columns: list[tuple[object, str]], rows: int) -> np.ndarray:
    """pandas' combination of per-column hashes into one per row (combine_hash_arrays in
    pandas/core/util/hashing.py, after CPython's tuple hash); each column is (values, its kind)."""
    out = np.full(rows, 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    count = len(columns)
    for position, (values, kind) in enumerate(columns):
        hashed = pd.util.hash_array(values) if kind == _NUMBERS else _text_hashes(values, kind)
        out ^= hashed
        out *= mult
        mult += np.uint64(82520 + 2 * (count - position))
    out += np.uint64(97531)
    return out


@dataclass(frozen=True)
class PartitionReceipt:
    rows: int
    content_hash: str
    previous_rows: int | None
    added: int
    removed: int
    changed: int

    @property
    def changed_since_previous(self) -> bool:
        return self.previous_rows is not None and (self.added + self.removed + self.changed) > 0

    @property
    def row_drop_fraction(self) -> float:
        if not self.previous_rows:
            return 0.0
        return max(0.0, (self.previous_rows - self.rows) / self.previous_rows)

    def as_metadata(self) -> dict:
        return {
            "receipt/rows": self.rows,
            "receipt/content_hash": self.content_hash,
            "receipt/previous_rows": self.previous_rows
            if self.previous_rows is not None
            else "none (first materialization)",
            "receipt/rows_added": self.added,
            "receipt/rows_removed": self.removed,
            "receipt/rows_changed": self.changed,
            "receipt/changed_since_previous": self.changed_since_previous,
        }


def content_hash(fingerprints: pd.Series) -> str:
    """SHA-256 over the rows' (user_id, fingerprint) pairs, sorted: equal for equal content, whatever the row order."""
    ordered = pd.DataFrame({"user_id": fingerprints.index.astype(str), "fingerprint": fingerprints.to_numpy()})
    ordered = ordered.sort_values(["user_id", "fingerprint"], kind="stable")
    digest = hashlib.sha256(ordered["user_id"].str.cat(sep="\n").encode())
    digest.update(ordered["fingerprint"].to_numpy(dtype="uint64").tobytes())
    return digest.hexdigest()


def _rows_by_user_id(fingerprints: pd.Series) -> dict[str, tuple[int, ...]]:
    """user_id -> the sorted fingerprints of its rows (one, unless the id is repeated)."""
    rows: dict[str, list[int]] = {}
    for user_id, fingerprint in zip(fingerprints.index, fingerprints.to_numpy().tolist(), strict=True):
        rows.setdefault(user_id, []).append(fingerprint)
    return {user_id: tuple(sorted(values)) for user_id, values in rows.items()}


def make_receipt(previous: pd.Series | None, current: pd.Series) -> PartitionReceipt:
    """The receipt of `current` against `previous` (None: the first materialization); user_ids may repeat."""
    if previous is None:
        return PartitionReceipt(len(current), content_hash(current), None, len(current), 0, 0)
    now, before = _rows_by_user_id(current), _rows_by_user_id(previous)
    return PartitionReceipt(
        rows=len(current),
        content_hash=content_hash(current),
        previous_rows=len(previous),
        added=len(now.keys() - before.keys()),
        removed=len(before.keys() - now.keys()),
        changed=sum(now[user_id] != before[user_id] for user_id in now.keys() & before.keys()),
    )


# The fingerprints of a day's CSV, kept beside it (<day>.fingerprints.arrow, Arrow IPC: user_id,
# fingerprint, in the CSV's row order) so that the next receipt of the day need not parse the CSV
# again. The CSV's size and SHA-256 are in the schema's metadata: a file written with another
# version of the CSV is ignored.
_FINGERPRINTS_SCHEMA = pa.schema([pa.field("user_id", pa.string()), pa.field("fingerprint", pa.uint64())])


def fingerprints_path(csv_path: Path) -> Path:
    """Where the fingerprints of `csv_path` are kept: <day>.fingerprints.arrow beside <day>.csv."""
    return csv_path.with_suffix(".fingerprints.arrow")


def write_fingerprints(path: Path, fingerprints: pd.Series, *, csv_path: Path, csv_sha256: str) -> None:
    """Keeps `fingerprints` (row_fingerprints of the CSV at `csv_path`, whose bytes have `csv_sha256`)."""
    metadata = {"csv_bytes": str(csv_path.stat().st_size), "csv_sha256": csv_sha256}
    table = pa.table(
        {
            "user_id": pa.array(fingerprints.index.to_numpy(dtype=object), type=pa.string(), from_pandas=True),
            "fingerprint": pa.array(fingerprints.to_numpy(dtype="uint64"), type=pa.uint64()),
        },
        schema=_FINGERPRINTS_SCHEMA.with_metadata(metadata),
    )
    with atomic_write(path) as handle, pa.ipc.new_file(handle, table.schema) as writer:
        writer.write_table(table)


def read_fingerprints(path: Path, csv_path: Path) -> pd.Series | None:
    """The fingerprints kept for `csv_path` (as row_fingerprints gives them), or None when there
    are none or they were written with other bytes than the CSV's now."""
    try:
        with pa.ipc.open_file(path) as reader:
            table = reader.read_all()
    except (FileNotFoundError, pa.ArrowInvalid):
        return None
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    if metadata.get("csv_bytes") != str(csv_path.stat().st_size):
        return None
    with csv_path.open("rb") as csv_file:
        if hashlib.file_digest(csv_file, "sha256").hexdigest() != metadata.get("csv_sha256"):
            return None
    if table.num_rows == 0:
        return pd.Series([], dtype="uint64")
    # row_fingerprints' index: the CSV's user_ids as objects, pd.NA where one is missing.
    user_ids = table.column("user_id").to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get).to_numpy()
    return pd.Series(table.column("fingerprint").to_numpy(), index=user_ids)
