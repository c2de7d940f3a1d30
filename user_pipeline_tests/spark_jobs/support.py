"""Helpers shared by the Spark tests: reading the Parquet outputs back, listing their files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ISO_MILLIS = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"


def read_users(spark, output_dir: Path) -> list[dict]:
    """users dataset as sorted dicts; timestamps rendered as ISO-8601 UTC strings."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    df = spark.read.parquet(str(output_dir / "users"))
    cols = [
        F.date_format(F.col(f.name), ISO_MILLIS).alias(f.name)
        if isinstance(f.dataType, TimestampType)
        else F.col(f.name)
        for f in df.schema.fields
    ]
    return [r.asDict() for r in df.select(*cols).orderBy("user_id").collect()]


def read_agg(spark, output_dir: Path) -> list[tuple]:
    df = spark.read.parquet(str(output_dir / "users_by_country_age_band"))
    return sorted(
        (r.partition_date.isoformat(), r.country, r.age_band, r.users)
        for r in df.select("partition_date", "country", "age_band", "users").collect()
    )


def snapshot_tree(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) for every file (hidden ones included)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def partition_layout(dataset_dir: Path) -> dict[str, list[str]]:
    """partition dir name -> sorted file names; root-level files listed under ''."""
    layout = {"": sorted(p.name for p in dataset_dir.iterdir() if p.is_file())}
    for part in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
        layout[part.name] = sorted(p.name for p in part.iterdir())
    return layout


def data_files(dataset_dir: Path, day: str) -> list[str]:
    part = dataset_dir / f"partition_date={day}"
    return sorted(p.name for p in part.iterdir() if not p.name.startswith((".", "_")))


def data_file_digest(dataset_dir: Path, day: str) -> str:
    """sha256 of the (single) data file of a partition."""
    (name,) = data_files(dataset_dir, day)
    return hashlib.sha256((dataset_dir / f"partition_date={day}" / name).read_bytes()).hexdigest()
