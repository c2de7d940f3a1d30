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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from user_pipeline.shared.atomic_files import atomic_write
from user_pipeline.users.normalize import USER_COLUMNS


def row_fingerprints(chunks: Iterable[pd.DataFrame]) -> pd.Series:
    """user_id -> a 64-bit hash of the row's USER_COLUMNS values."""
    parts = [
        pd.Series(
            pd.util.hash_pandas_object(chunk[list(USER_COLUMNS)], index=False).to_numpy(),
            index=chunk["user_id"].to_numpy(),
        )
        for chunk in chunks
    ]
    return pd.concat(parts) if parts else pd.Series([], dtype="uint64")


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
