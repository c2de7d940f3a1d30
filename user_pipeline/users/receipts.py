"""Partition receipts: what a materialization of a day wrote, against what the day held before.

A receipt counts rows, fingerprints the content (order-independent), and diffs by user_id:
rows added, removed and changed. Rows are reduced to 64-bit fingerprints chunk by chunk, so a
receipt of any size costs a few bytes per row. Plain pandas, no Dagster.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from user_pipeline.users.normalize import USER_COLUMNS


def row_fingerprints(chunks: Iterable[pd.DataFrame]) -> pd.Series:
    """user_id -> a 64-bit hash of the row's USER_COLUMNS values."""
    parts = [
        pd.Series(pd.util.hash_pandas_object(chunk[list(USER_COLUMNS)], index=False).to_numpy(), index=chunk["user_id"].to_numpy())
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
            "receipt/previous_rows": self.previous_rows if self.previous_rows is not None else "none (first materialization)",
            "receipt/rows_added": self.added,
            "receipt/rows_removed": self.removed,
            "receipt/rows_changed": self.changed,
            "receipt/changed_since_previous": self.changed_since_previous,
        }


def content_hash(fingerprints: pd.Series) -> str:
    """SHA-256 over the rows' fingerprints in user_id order: equal for equal content, whatever the row order."""
    ordered = fingerprints.sort_index(kind="stable")
    digest = hashlib.sha256(ordered.index.astype(str).str.cat(sep="\n").encode())
    digest.update(ordered.to_numpy().tobytes())
    return digest.hexdigest()


def make_receipt(previous: pd.Series | None, current: pd.Series) -> PartitionReceipt:
    if previous is None:
        return PartitionReceipt(len(current), content_hash(current), None, len(current), 0, 0)
    common = current.index.intersection(previous.index)
    return PartitionReceipt(
        rows=len(current),
        content_hash=content_hash(current),
        previous_rows=len(previous),
        added=len(current.index.difference(previous.index)),
        removed=len(previous.index.difference(current.index)),
        changed=int((current.loc[common] != previous.loc[common]).sum()),
    )
