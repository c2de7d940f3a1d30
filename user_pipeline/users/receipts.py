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

import pandas as pd

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
