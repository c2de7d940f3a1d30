"""Ingest the daily normalized user CSVs into partitioned Parquet datasets.

Plain PySpark (no Dagster, no ``user_pipeline`` import) so the very same file runs

* under plain ``spark-submit`` (local master or a standalone cluster)::

      spark-submit [--master local[*]] spark_jobs/ingest_users.py \\
          --input-dir DIR --start-date 2026-11-03 --end-date 2026-11-05 \\
          --output-dir OUT [--shuffle-partitions 4]

  which logs its progress (``ingest_users: ...`` on the driver's stderr, which spark-submit
  passes on to its stdout) and prints exactly one final stdout line ``INGESTION_SUMMARY {json}``
  (exit status 0; 1 for a bad input, named in an ``ERROR:`` line);

* under Dagster: the ``users_parquet`` asset launches the same spark-submit command through
  Dagster Pipes (``dagster.PipesSubprocessClient``). The job then also reports its
  materialization's metadata (``materialization_metadata``) and sends its progress lines to the
  run's log with ``dagster_pipes``, a small dependency-free package imported only when Dagster
  launched the job; a bad input is reported as an ``ingestion_error`` message (see ``main``).

``run_ingestion(spark, ...)`` also runs on an existing session (the tests do).

Input: ``<input_dir>/<YYYY-MM-DD>.csv`` per day, in the pipeline's CSV format
(``user_pipeline/users/csv_format.py``): UTF-8, a header, every text value quoted (RFC 4180,
quotes doubled; CR, LF, tabs inside are data), ``""`` = the empty string, an unquoted empty
field = null. Paths are read literally: ``[``, ``{``, ``*``, ``?`` and ``\\`` in a directory
name are not glob patterns.

Output (both Parquet, partitioned by ``partition_date``, dynamic partition overwrite so a
run replaces exactly the days of its range and leaves every other day alone):

* ``<output_dir>/users/partition_date=YYYY-MM-DD/`` - one row per user.
* ``<output_dir>/users_by_country_age_band/partition_date=YYYY-MM-DD/`` - columns
  country, age_band, users (long) (+ partition_date from the directory).

Files on disk after a run: each written partition directory holds exactly ONE data file
``part-<task>-<uuid>.c000.snappy.parquet`` plus, on the local (checksummed Hadoop) file
system, its hidden ``.part-<...>.parquet.crc``. Nothing else - in particular NO ``_SUCCESS``
marker: with dynamic partition overwrite Spark writes the job into
``<dataset>/.spark-staging-<jobId>/``, then on commit moves only the partition
directories into place and deletes the staging directory (``_SUCCESS`` included); on abort
the staging directory is deleted as well. Readers should therefore use the partition
directories, not a ``_SUCCESS`` marker. A day whose CSV has a header but no rows ends up
with no partition directory (any older data for that day is removed).

Failure semantics: all inputs of the range are checked for existence, then parsed and
validated (FAILFAST, explicit schema, header checked against the schema, partition_date
equal to the file's date, ISO-8601 timestamps parseable) BEFORE anything is written; an
error names the offending path and leaves existing output untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

APP_NAME = "user_pipeline.ingest_users"
SUMMARY_PREFIX = "INGESTION_SUMMARY "
#: Under Dagster Pipes: the custom message carrying a bad input's error, and the extra naming the
#: standalone master's web UI (for the Spark UI link); user_pipeline/spark/assets.py uses both.
PIPES_INGESTION_ERROR = "ingestion_error"
PIPES_MASTER_WEB_UI_URL = "spark_master_web_ui_url"

#: Progress lines; run_ingestion's default when no logger is given (silent unless configured).
LOG = logging.getLogger("ingest_users")

USERS_DATASET = "users"
AGG_DATASET = "users_by_country_age_band"
PARTITION_COLUMN = "partition_date"

DEFAULT_SHUFFLE_PARTITIONS = 4

#: Schema of the upstream CSV, in file column order. Never inferred: postcode and
#: id_value stay text ("00123" keeps its leading zeros), timestamps are parsed afterwards.
CSV_SCHEMA = StructType(
    [
        StructField("partition_date", DateType(), True),
        StructField("user_id", StringType(), True),
        StructField("email", StringType(), True),
        StructField("email_key", StringType(), True),
        StructField("username", StringType(), True),
        StructField("title", StringType(), True),
        StructField("first_name", StringType(), True),
        StructField("last_name", StringType(), True),
        StructField("gender", StringType(), True),
        StructField("date_of_birth", StringType(), True),
        StructField("age", IntegerType(), True),
        StructField("registered_at", StringType(), True),
        StructField("phone", StringType(), True),
        StructField("cell", StringType(), True),
        StructField("street_number", IntegerType(), True),
        StructField("street_name", StringType(), True),
        StructField("city", StringType(), True),
        StructField("state", StringType(), True),
        StructField("country", StringType(), True),
        StructField("postcode", StringType(), True),
        StructField("latitude", DoubleType(), True),
        StructField("longitude", DoubleType(), True),
        StructField("timezone_offset", StringType(), True),
        StructField("nationality", StringType(), True),
        StructField("id_name", StringType(), True),
        StructField("id_value", StringType(), True),
        StructField("password_salt", StringType(), True),
        StructField("password_sha256", StringType(), True),
        StructField("picture_url", StringType(), True),
    ]
)
CSV_COLUMNS = tuple(f.name for f in CSV_SCHEMA.fields)

#: ISO-8601 string columns stored as TimestampType in the output.
TIMESTAMP_COLUMNS = ("date_of_birth", "registered_at")

#: Schema of the ``users`` dataset (same column order as the CSV).
USERS_SCHEMA = StructType(
    [StructField(f.name, TimestampType(), True) if f.name in TIMESTAMP_COLUMNS else f for f in CSV_SCHEMA.fields]
)

#: Schema of the ``users_by_country_age_band`` dataset.
AGG_SCHEMA = StructType(
    [
        StructField("partition_date", DateType(), True),
        StructField("country", StringType(), True),
        StructField("age_band", StringType(), False),
        StructField("users", LongType(), False),
    ]
)

#: (label, lower bound inclusive, upper bound exclusive or None). Null age -> "unknown".
AGE_BANDS = (
    ("<18", None, 18),
    ("18-29", 18, 30),
    ("30-44", 30, 45),
    ("45-59", 45, 60),
    ("60+", 60, None),
)
UNKNOWN_AGE_BAND = "unknown"

#: What Spark reads a quoted empty field (``""``) as, before it is turned back into "":
#: with ``emptyValue`` left at "", Spark reads "" and a missing value alike as null. It holds
#: U+0000, which no value holds (the pipeline's contract refuses it in text), so it is never data.
EMPTY_STRING_MARK = "\u0000empty\u0000"

#: CSV reader options matching the pipeline's CSV format (user_pipeline/users/csv_format.py).
CSV_READ_OPTIONS = {
    "header": "true",
    # Compare the header with CSV_SCHEMA (names and order) instead of ignoring it.
    "enforceSchema": "false",
    "mode": "FAILFAST",
    # Quoted fields may contain newlines; a daily file is small, so not splitting is fine.
    "multiLine": "true",
    "encoding": "UTF-8",
    "sep": ",",
    "quote": '"',
    # pandas escapes a quote by doubling it (RFC 4180); Spark's default escape is "\\".
    "escape": '"',
    # An unquoted empty field is null; a quoted one is EMPTY_STRING_MARK, then "".
    "nullValue": "",
    "emptyValue": EMPTY_STRING_MARK,
    # pyarrow writes non-finite floats as nan / inf / -inf.
    "nanValue": "nan",
    "positiveInf": "inf",
    "negativeInf": "-inf",
    "dateFormat": "yyyy-MM-dd",
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
}

_RAW_PREFIX = "__raw_"

#: After (partition_date, user_id), every other column: a total order, so the bytes of a
#: partition's file only depend on its rows.
USERS_SORT_TIEBREAK = tuple(c for c in CSV_COLUMNS if c not in (PARTITION_COLUMN, "user_id"))


class IngestionError(Exception):
    """Base class for input problems detected by the ingestion job."""


class MissingInputError(IngestionError, FileNotFoundError):
    """One or more daily CSV files of the requested range do not exist."""

    def __init__(self, missing_paths: Sequence[str]):
        self.missing_paths = list(missing_paths)
        super().__init__(
            f"Missing input CSV for {len(self.missing_paths)} day(s) of the requested range: "
            + ", ".join(self.missing_paths)
        )


class CorruptInputError(IngestionError, ValueError):
    """A daily CSV exists but cannot be parsed/validated against CSV_SCHEMA."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"Invalid input CSV {path}: {reason}")


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _as_date(value: dt.date | str, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{name} must be a date or YYYY-MM-DD string, got {value!r}") from exc


def date_range(start_date: dt.date | str, end_date: dt.date | str) -> list[dt.date]:
    """Inclusive list of days from start_date to end_date."""
    start = _as_date(start_date, "start_date")
    end = _as_date(end_date, "end_date")
    if end < start:
        raise ValueError(f"end_date {end} is before start_date {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _normalize_dir(path: str | os.PathLike) -> str:
    """Absolute path for scheme-less local paths (executors may run with another cwd)."""
    path = os.fspath(path)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path):  # hdfs://, s3a://, file:/...
        return path.rstrip("/")
    return os.path.abspath(path)


def input_path(input_dir: str, day: dt.date) -> str:
    return f"{_normalize_dir(input_dir)}/{day.isoformat()}.csv"


_HADOOP_GLOB_CHARACTERS = re.compile(r"([\\{}\[\]*?])")


def literal_path(path: str) -> str:
    """``path`` with Hadoop's glob characters escaped, so that Spark reads exactly that file.

    Spark's file sources expand ``{}[]*?`` (and ``\\`` escapes) in every path they are given
    (``DataSource.checkAndGlobPathIfNecessary``): ``data dir [v1]/x.csv`` would be a pattern
    matching ``data dir v/x.csv`` or ``data dir 1/x.csv``, and not itself."""
    return _HADOOP_GLOB_CHARACTERS.sub(r"\\\1", path)


def age_band_column(age_col: str = "age"):
    """Column expression mapping an integer age to its AGE_BANDS label."""
    age = F.col(age_col)
    expr = F.when(age.isNull(), F.lit(UNKNOWN_AGE_BAND))
    for label, low, high in AGE_BANDS:
        cond = F.lit(True)
        if low is not None:
            cond = cond & (age >= low)
        if high is not None:
            cond = cond & (age < high)
        expr = expr.when(cond, F.lit(label))
    return expr


class _FileSystem:
    """Minimal file-system view: Hadoop FS through the JVM when available, else os."""

    def __init__(self, spark: SparkSession):
        self._jvm = None
        self._conf = None
        try:
            self._jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
            self._conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        except Exception:  # Spark Connect or similar: fall back to the local file system.
            self._jvm = None

    def _hpath(self, path: str):
        hpath = self._jvm.org.apache.hadoop.fs.Path(path)
        return hpath, hpath.getFileSystem(self._conf)

    def status(self, path: str) -> tuple[bool, bool, int]:
        """(exists, is_file, length)."""
        if self._jvm is not None:
            hpath, fs = self._hpath(path)
            if not fs.exists(hpath):
                return False, False, 0
            st = fs.getFileStatus(hpath)
            return True, bool(st.isFile()), int(st.getLen())
        local = path[len("file:") :] if path.startswith("file:") else path
        if not os.path.exists(local):
            return False, False, 0
        return True, os.path.isfile(local), os.path.getsize(local) if os.path.isfile(local) else 0

    def delete_dir(self, directory: str) -> bool:
        """Recursively delete directory; False if it did not exist."""
        if self._jvm is not None:
            hpath, fs = self._hpath(directory)
            return bool(fs.exists(hpath) and fs.delete(hpath, True))
        local = directory[len("file:") :] if directory.startswith("file:") else directory
        if not os.path.isdir(local):
            return False
        import shutil  # noqa: PLC0415

        shutil.rmtree(local)
        return True

    def list_files(self, directory: str) -> list[tuple[str, int]]:
        """(name, size) of regular files directly under directory ([] if absent)."""
        if self._jvm is not None:
            hpath, fs = self._hpath(directory)
            if not fs.exists(hpath):
                return []
            return sorted((str(st.getPath().getName()), int(st.getLen())) for st in fs.listStatus(hpath) if st.isFile())
        local = directory[len("file:") :] if directory.startswith("file:") else directory
        if not os.path.isdir(local):
            return []
        return sorted(
            (name, os.path.getsize(os.path.join(local, name)))
            for name in os.listdir(local)
            if os.path.isfile(os.path.join(local, name))
        )


def is_data_file(name: str) -> bool:
    """Hadoop convention: names starting with '_' or '.' are metadata/checksums."""
    return not (name.startswith(("_", ".")))


def _spark_error_reason(exc: BaseException, limit: int = 600) -> str:
    """Condense a (Py4J) Spark error into its root-cause message(s)."""
    text = str(exc)
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("Caused by: "):
            current = [line[len("Caused by: ") :].strip()]
            blocks.append("")
        elif current is not None:
            if re.match(r"^\s+at |^\s*\.\.\. \d+ more", line):
                blocks[-1] = " ".join(current)
                current = None
                continue
            current.append(line.strip())
        if current is not None:
            blocks[-1] = " ".join(current)
    if blocks:
        # The header mismatch is a cause of the file-read error; the deepest cause of a
        # malformed row is the most specific (e.g. NumberFormatException: "abc").
        reason = " <- ".join(reversed([b for b in blocks if b][-2:]))
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("at ")]
        reason = " ".join(lines[:3])
    reason = re.sub(r"\s+", " ", reason)
    mismatch = re.search(r"Expected: \S+ but found: \S+", text)
    if mismatch:  # the decisive part of a header error, before the long column lists
        reason = f"{mismatch.group(0)}; {reason}"
    return reason[:limit] + ("..." if len(reason) > limit else "")


# --------------------------------------------------------------------------------------
# Core
# --------------------------------------------------------------------------------------


def _check_inputs_exist(fs: _FileSystem, paths: Iterable[str]) -> None:
    missing: list[str] = []
    for path in paths:
        exists, is_file, _length = fs.status(path)
        if not exists or not is_file:
            missing.append(path)
    if missing:
        raise MissingInputError(missing)


_FILE_DAY = "__file_day"


def _parse(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """Typed view of the CSVs plus the raw timestamp strings and each row's file day."""
    raw = spark.read.schema(CSV_SCHEMA).options(**CSV_READ_OPTIONS).csv([literal_path(p) for p in paths])
    raw = raw.select(
        *[
            F.when(F.col(f.name) == F.lit(EMPTY_STRING_MARK), F.lit("")).otherwise(F.col(f.name)).alias(f.name)
            if isinstance(f.dataType, StringType)
            else F.col(f.name)
            for f in CSV_SCHEMA.fields
        ],
        F.col("_metadata.file_name").alias("__file_name"),
    )
    return raw.select(
        *[F.try_to_timestamp(F.col(c)).alias(c) if c in TIMESTAMP_COLUMNS else F.col(c) for c in CSV_COLUMNS],
        *[F.col(c).alias(_RAW_PREFIX + c) for c in TIMESTAMP_COLUMNS],
        F.regexp_extract(F.col("__file_name"), r"^(\d{4}-\d{2}-\d{2})\.csv$", 1).alias(_FILE_DAY),
    )


def _validation_stats(typed: DataFrame) -> dict[str, Any]:
    """One Spark job: per file day, row count and counts of semantically bad rows.

    ``typed`` must be persisted: building the cache materialises EVERY column, so the
    FAILFAST parser sees every field (a plain aggregate would let CSV column pruning
    skip the fields it does not need).
    """

    def flag(cond):
        return F.sum(F.when(cond, 1).otherwise(0))

    pdate = F.col(PARTITION_COLUMN)
    rows = (
        typed.groupBy(_FILE_DAY)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            flag(pdate.isNull() | (pdate != F.to_date(F.col(_FILE_DAY)))).alias("bad_partition_date"),
            *[
                flag(F.col(_RAW_PREFIX + c).isNotNull() & F.col(c).isNull()).alias("bad_" + c)
                for c in TIMESTAMP_COLUMNS
            ],
        )
        .collect()
    )
    return {row[_FILE_DAY]: row.asDict() for row in rows}


def _read_and_validate(
    spark: SparkSession, fs: _FileSystem, days: Sequence[dt.date], paths: Sequence[str]
) -> tuple[DataFrame, dict[str, int]]:
    """Parse and validate all daily CSVs of the range; return (persisted DataFrame, rows/day).

    The returned DataFrame is the persisted one (it carries helper columns): the caller
    must select CSV_COLUMNS from it and unpersist THIS object afterwards - otherwise the
    cache entry would outlive the run and a later read of the same paths would be served
    stale rows from it.
    """
    for path in paths:
        if fs.status(path)[2] == 0:
            raise CorruptInputError(path, "file is empty (no header row)")

    typed = None
    try:
        typed = _parse(spark, paths).persist(StorageLevel.MEMORY_AND_DISK)
        stats = _validation_stats(typed)  # happy path: a single job for the whole range
    except Exception as exc:
        if typed is not None:
            typed.unpersist()
        _raise_for_bad_file(spark, paths, exc)
        raise  # pragma: no cover - _raise_for_bad_file always raises

    for day, path in zip(days, paths, strict=True):
        day_stats = stats.get(day.isoformat())
        if not day_stats:
            continue
        problems = []
        if day_stats["bad_partition_date"]:
            problems.append(
                f"{day_stats['bad_partition_date']} row(s) with partition_date missing or != {day.isoformat()}"
            )
        for c in TIMESTAMP_COLUMNS:
            if day_stats["bad_" + c]:
                problems.append(f"{day_stats['bad_' + c]} row(s) with unparseable ISO-8601 {c}")
        if problems:
            typed.unpersist()
            raise CorruptInputError(path, "; ".join(problems))

    unexpected = set(stats) - {d.isoformat() for d in days}
    if unexpected:  # pragma: no cover - paths are built from the days
        typed.unpersist()
        raise IngestionError(f"rows from unexpected files: {sorted(unexpected)}")
    rows = {d.isoformat(): int(stats.get(d.isoformat(), {}).get("rows", 0)) for d in days}
    return typed, rows


def _raise_for_bad_file(spark: SparkSession, paths: Sequence[str], exc: BaseException) -> None:
    """Failure path: re-validate file by file to name the offending CSV."""
    for path in paths:
        single = None
        try:
            single = _parse(spark, [path]).persist(StorageLevel.MEMORY_AND_DISK)
            _validation_stats(single)
        except Exception as file_exc:
            raise CorruptInputError(path, _spark_error_reason(file_exc)) from file_exc
        finally:
            if single is not None:
                single.unpersist()
    raise IngestionError(f"Reading {len(paths)} input CSV(s) failed: {_spark_error_reason(exc)}") from exc


def _write_partitioned(df: DataFrame, path: str, sort_columns: Sequence[str]) -> None:
    """One file per partition_date, deterministic row order, dynamic partition overwrite."""
    (
        df.repartition(PARTITION_COLUMN)
        .sortWithinPartitions(PARTITION_COLUMN, *sort_columns)
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .option("maxRecordsPerFile", 0)
        .option("compression", "snappy")
        .partitionBy(PARTITION_COLUMN)
        .parquet(path)
    )


def _partition_files(fs: _FileSystem, dataset_path: str, days: Sequence[dt.date]) -> dict[str, Any]:
    files_by_partition: dict[str, int] = {}
    bytes_by_partition: dict[str, int] = {}
    for day in days:
        listing = [
            (n, s) for n, s in fs.list_files(f"{dataset_path}/{PARTITION_COLUMN}={day.isoformat()}") if is_data_file(n)
        ]
        files_by_partition[day.isoformat()] = len(listing)
        bytes_by_partition[day.isoformat()] = sum(s for _n, s in listing)
    return {
        "files": sum(files_by_partition.values()),
        "bytes": sum(bytes_by_partition.values()),
        "files_by_partition": files_by_partition,
        "bytes_by_partition": bytes_by_partition,
    }


def _spark_identity(spark: SparkSession) -> tuple[str | None, str | None]:
    try:
        sc = spark.sparkContext
        return sc.applicationId, sc.master
    except Exception:  # pragma: no cover - Spark Connect
        return spark.conf.get("spark.app.id", None), spark.conf.get("spark.master", None)


def run_ingestion(
    spark: SparkSession,
    *,
    input_dir: str | os.PathLike,
    start_date: dt.date | str,
    end_date: dt.date | str,
    output_dir: str | os.PathLike,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Ingest every day of [start_date, end_date] (inclusive) on the given session; progress lines
    go to ``log`` at INFO (what it read, what it wrote, a day emptied).

    Returns a JSON-serialisable summary::

        {
          "app_id", "master", "spark_version", "input_dir", "output_dir",
          "start_date", "end_date", "partitions": ["YYYY-MM-DD", ...],
          "input_files": [...], "duration_seconds",
          "users": {"path", "rows": {day: n}, "total_rows",
                    "files", "bytes", "files_by_partition", "bytes_by_partition"},
          "users_by_country_age_band": {same keys},
        }

    ``rows`` and the file statistics cover only the partitions of this run.
    Raises MissingInputError / CorruptInputError (naming the path) before writing anything.

    Session side effects: none lasting. ``spark.sql.parquet.outputTimestampType`` is set
    to TIMESTAMP_MICROS for the duration of the writes and restored afterwards (do not
    run two ingestions concurrently on one session); cached inputs are unpersisted.
    Dynamic partition overwrite comes from the write option, the session's
    ``spark.sql.sources.partitionOverwriteMode`` is not needed.
    """
    started = time.monotonic()
    days = date_range(start_date, end_date)
    in_dir = _normalize_dir(input_dir)
    out_dir = _normalize_dir(output_dir)
    users_path = f"{out_dir}/{USERS_DATASET}"
    agg_path = f"{out_dir}/{AGG_DATASET}"
    paths = [input_path(in_dir, d) for d in days]

    log.info("reading %s to %s from %s", days[0], days[-1], in_dir)
    fs = _FileSystem(spark)
    _check_inputs_exist(fs, paths)

    typed: DataFrame | None = None
    conf_key = "spark.sql.parquet.outputTimestampType"
    previous_ts_type = spark.conf.get(conf_key, None)
    agg_df: DataFrame | None = None
    try:
        typed, user_rows = _read_and_validate(spark, fs, days, paths)
        log.info("read %d CSV file(s), %d row(s): %s", len(paths), sum(user_rows.values()), json.dumps(user_rows))
        users_df = typed.select(*CSV_COLUMNS)

        agg_df = (
            users_df.groupBy(PARTITION_COLUMN, "country", age_band_column().alias("age_band"))
            .agg(F.count(F.lit(1)).alias("users"))
            .select(PARTITION_COLUMN, "country", "age_band", "users")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )

        # Standard Parquet timestamps (not legacy INT96) so non-Spark readers agree.
        spark.conf.set(conf_key, "TIMESTAMP_MICROS")
        _write_partitioned(users_df, users_path, ["user_id", *USERS_SORT_TIEBREAK])
        _write_partitioned(agg_df, agg_path, ["country", "age_band"])
        # Dynamic overwrite only replaces partitions that receive rows: a day whose CSV
        # has a header but no rows must still end up empty, not keep a previous run's data.
        for day, rows in user_rows.items():
            if rows == 0:
                for dataset_path in (users_path, agg_path):
                    fs.delete_dir(f"{dataset_path}/{PARTITION_COLUMN}={day}")
                log.info("%s has no rows: its partitions are removed", day)
        log.info("wrote %s and %s", users_path, agg_path)

        agg_rows = {d.isoformat(): 0 for d in days}
        for row in agg_df.groupBy(PARTITION_COLUMN).count().collect():
            agg_rows[row[PARTITION_COLUMN].isoformat()] = int(row["count"])
    finally:
        if previous_ts_type is None:
            spark.conf.unset(conf_key)
        else:
            spark.conf.set(conf_key, previous_ts_type)
        if typed is not None:
            typed.unpersist()
        if agg_df is not None:
            agg_df.unpersist()

    app_id, master = _spark_identity(spark)
    return {
        "app_id": app_id,
        "master": master,
        "spark_version": spark.version,
        "input_dir": in_dir,
        "output_dir": out_dir,
        "start_date": days[0].isoformat(),
        "end_date": days[-1].isoformat(),
        "partitions": [d.isoformat() for d in days],
        "input_files": paths,
        "duration_seconds": round(time.monotonic() - started, 3),
        USERS_DATASET: {
            "path": users_path,
            "rows": user_rows,
            "total_rows": sum(user_rows.values()),
            **_partition_files(fs, users_path, days),
        },
        AGG_DATASET: {
            "path": agg_path,
            "rows": agg_rows,
            "total_rows": sum(agg_rows.values()),
            **_partition_files(fs, agg_path, days),
        },
    }


# --------------------------------------------------------------------------------------
# spark-submit entry point
# --------------------------------------------------------------------------------------


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest_users.py",
        description="Ingest daily user CSVs into partitioned Parquet (users + aggregate).",
    )
    parser.add_argument("--input-dir", required=True, help="directory holding <YYYY-MM-DD>.csv")
    parser.add_argument("--start-date", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--end-date", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD (inclusive)")
    parser.add_argument("--output-dir", required=True, help="root of the Parquet datasets")
    parser.add_argument(
        "--master",
        default=None,
        help="Spark master URL, e.g. local[*] or spark://host:7077. Default: whatever "
        "spark-submit --master / spark-defaults say (local[*] when nothing is set).",
    )
    parser.add_argument(
        "--shuffle-partitions",
        type=int,
        default=DEFAULT_SHUFFLE_PARTITIONS,
        help=f"spark.sql.shuffle.partitions (default {DEFAULT_SHUFFLE_PARTITIONS}; "
        "small daily batches on a 2-core machine)",
    )
    parser.add_argument("--app-name", default=APP_NAME)
    parser.add_argument("--log-level", default="WARN", help="Spark log level (default WARN)")
    return parser


def build_session(
    *,
    app_name: str = APP_NAME,
    master: str | None = None,
    shuffle_partitions: int = DEFAULT_SHUFFLE_PARTITIONS,
) -> SparkSession:
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(max(shuffle_partitions, 1)))
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.adaptive.coalescePartitions.enabled", "true")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if master:
        builder = builder.master(master)
    return builder.getOrCreate()


def dagster_pipes_context() -> Any:
    """The Dagster Pipes context (``dagster_pipes.PipesContext``) when Dagster launched this job,
    else None: under plain spark-submit, Pipes stays off even where dagster-pipes is installed."""
    try:
        from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes
    except ImportError:
        if os.environ.get("DAGSTER_PIPES_CONTEXT"):
            print("WARNING: launched by Dagster, but dagster_pipes is not importable here", file=sys.stderr)
        return None
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        return None
    return open_dagster_pipes()


def stderr_logger() -> logging.Logger:
    """Progress lines on stderr, for a user of plain spark-submit."""
    if not LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("ingest_users: %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        LOG.propagate = False
    return LOG


def _metadata_value(raw_value: Any, kind: str) -> dict[str, Any]:
    return {"raw_value": raw_value, "type": kind}


def materialization_metadata(summary: dict[str, Any], master_web_ui_url: str = "") -> dict[str, dict[str, Any]]:
    """The users_parquet materialization's metadata from a run's summary, as Dagster Pipes values
    (``{"raw_value", "type"}``). ``spark_ui`` links the application on the standalone master's
    web UI (``<url>/app/?appId=<id>``) when that URL is given."""
    users, aggregate = summary[USERS_DATASET], summary[AGG_DATASET]
    metadata = {
        "dagster/row_count": _metadata_value(users["total_rows"], "int"),
        "rows_by_day": _metadata_value(users["rows"], "json"),
        "files": _metadata_value(users["files"], "int"),
        "bytes": _metadata_value(users["bytes"], "int"),
        "path": _metadata_value(users["path"], "path"),
        "aggregate_path": _metadata_value(aggregate["path"], "path"),
        "aggregate_rows": _metadata_value(aggregate["total_rows"], "int"),
        "spark_application_id": _metadata_value(summary["app_id"], "text"),
        "spark_master": _metadata_value(summary["master"], "text"),
    }
    if master_web_ui_url:
        link = f"{master_web_ui_url.rstrip('/')}/app/?appId={summary['app_id']}"
        metadata["spark_ui"] = _metadata_value(link, "url")
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    """The spark-submit entry point: 0 when the days are written; 1 for a bad input (the error on
    stderr), 2 for bad arguments.

    Under Dagster Pipes the outcome travels through Pipes: a materialization with its metadata, or
    a bad input as a ``{PIPES_INGESTION_ERROR: message}`` message with exit status 0 (the job ran
    to a verdict; the asset fails the step with that message and no retry). Any other exception
    ends the process non-zero, reported to Dagster with its traceback by ``open_dagster_pipes``.
    """
    args = build_arg_parser().parse_args(argv)
    if args.end_date < args.start_date:
        print(f"ERROR: --end-date {args.end_date} is before --start-date {args.start_date}", file=sys.stderr)
        return 2
    pipes = dagster_pipes_context()
    with pipes or contextlib.nullcontext():
        log = pipes.log if pipes else stderr_logger()
        spark = build_session(app_name=args.app_name, master=args.master, shuffle_partitions=args.shuffle_partitions)
        try:
            spark.sparkContext.setLogLevel(args.log_level)
            log.info("Spark application %s on %s", *_spark_identity(spark))
            try:
                summary = run_ingestion(
                    spark,
                    input_dir=args.input_dir,
                    start_date=args.start_date,
                    end_date=args.end_date,
                    output_dir=args.output_dir,
                    log=log,
                )
            except IngestionError as exc:
                print(f"ERROR: {exc}", file=sys.stderr)
                if pipes is None:
                    return 1
                log.error("%s", exc)
                pipes.report_custom_message({PIPES_INGESTION_ERROR: str(exc)})
                return 0
        finally:
            spark.stop()
        sys.stdout.flush()
        print(SUMMARY_PREFIX + json.dumps(summary, sort_keys=True), flush=True)
        if pipes is not None:
            web_ui_url = pipes.extras.get(PIPES_MASTER_WEB_UI_URL) or ""
            pipes.report_asset_materialization(metadata=materialization_metadata(summary, web_ui_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
