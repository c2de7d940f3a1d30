"""The work of the seed's user_processing DAG, fixed: plain functions with no Airflow import.

The DAG (user_processing.py beside this file) calls them; the project's tests import them
without Airflow to keep them doing what user_pipeline does (same columns, same duplicate rule,
same CSV bytes). They are written the way an Airflow user would write them, not by importing
user_pipeline: the Airflow venv does not have it.

Per day D (the run's ``ds``, also the API seed):

- ``fetch_raw_users``: GET ``{api_url}?results=..&seed=D&page=..&format=json``, pages of at most
  5,000 users (the API's limit), every user written as one JSON line to
  ``{data_dir}/raw_users/D.jsonl`` without ``login.password``, replaced atomically;
- ``normalize_raw_users``: ``pd.json_normalize`` into the 29 columns of user_pipeline's
  ``normalized_users`` (USER_COLUMNS), with ``email_key`` (the email trimmed and case-folded,
  ``str.strip().casefold()``) and coordinates of -0.0 written as 0.0; duplicate email keys
  dropped (first occurrence in API order kept), into ``{data_dir}/normalized_users/D.csv``,
  replaced atomically (the seed wrote one shared ``/tmp/processed_user.csv``);
- ``replace_partition``: the day's rows of table ``users`` (unique: partition_date + email_key)
  deleted and the CSV's inserted in one transaction (the seed's ``copy_expert`` appended on every
  re-run).

The CSV format is user_pipeline's (user_pipeline/users/csv_format.py), written and read with
pyarrow: a header of bare names, every text value quoted, an unquoted empty field for a missing
value, so that CR, LF, U+0000, ``\\N`` or ``""`` come back byte for byte (pandas' ``to_csv`` and
``read_csv`` do not keep them).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import requests

MAX_PAGE_SIZE = 5000  # randomuser.me's largest `results`

# Column -> pandas dtype, in file order: user_pipeline.users.normalize.USER_COLUMNS (a test keeps them equal).
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

SOURCE_FIELDS: dict[str, str] = {
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

_SQL_TYPES = {"string": "TEXT", "Int64": "INTEGER", "float64": "DOUBLE PRECISION"}

# create_table's statements: the same table, index and view as user_pipeline's SQLite warehouse
# (its primary key is the unique index on partition_date + email_key).
CREATE_TABLE_SQL: list[str] = [
    "PRAGMA journal_mode=WAL",
    "CREATE TABLE IF NOT EXISTS users (\n  "
    + ",\n  ".join(
        f"{name} {_SQL_TYPES[dtype]}"
        + (" NOT NULL" if name in ("partition_date", "user_id", "email", "email_key") else "")
        for name, dtype in USER_COLUMNS.items()
    )
    + ",\n  PRIMARY KEY (partition_date, email_key)\n)",
    "CREATE INDEX IF NOT EXISTS users_email_key_idx ON users (email_key, partition_date)",
    "CREATE VIEW IF NOT EXISTS users_latest AS\nSELECT "
    + ", ".join(f"u.{name}" for name in USER_COLUMNS)
    + " FROM users u\nWHERE u.partition_date = "
    "(SELECT MAX(l.partition_date) FROM users l WHERE l.email_key = u.email_key)",
]

CHUNK_USERS = 5000

_ARROW_TYPES = {"string": pa.string(), "Int64": pa.int64(), "float64": pa.float64()}
CSV_SCHEMA = pa.schema([pa.field(name, _ARROW_TYPES[dtype]) for name, dtype in USER_COLUMNS.items()])
# "needed" quotes every string value (Arrow quotes all strings under it) and leaves numbers and nulls bare.
_CSV_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="needed", delimiter=",")
_CSV_PARSE_OPTIONS = pa_csv.ParseOptions(
    delimiter=",", quote_char='"', double_quote=True, escape_char=False, newlines_in_values=True
)
# Only an unquoted empty field is null; "" is the empty string.
_CSV_CONVERT_OPTIONS = pa_csv.ConvertOptions(
    column_types=CSV_SCHEMA,
    null_values=[""],
    true_values=[],
    false_values=[],
    strings_can_be_null=True,
    quoted_strings_can_be_null=False,
)


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO]:
    """A temporary file beside `path` (`mode` "w": UTF-8 text, "wb": bytes), flushed, fsynced and
    renamed over it on a clean exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        text = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def fetch_raw_users(api_url: str, day: str, users: int, path: Path, *, timeout: float = 30.0) -> int:
    """Writes the `users` users of seed `day` to `path` (JSON Lines, no plaintext password).

    Raises requests.HTTPError on an error status and ValueError on an error body or a short page,
    naming the seed and page; the task's retries handle transient failures."""
    page_size = min(users, MAX_PAGE_SIZE)
    pages = -(-users // page_size)
    written = 0
    with requests.Session() as session, atomic_write(path) as handle:
        for page in range(1, pages + 1):
            response = session.get(
                api_url, params={"results": page_size, "seed": day, "page": page, "format": "json"}, timeout=timeout
            )
            response.raise_for_status()
            payload = response.json()
            if "error" in payload:
                raise ValueError(f"seed={day!r} page={page}: the API answered an error: {payload['error']}")
            keep = min(page_size, users - (page - 1) * page_size)
            results = payload.get("results")
            if not isinstance(results, list) or len(results) < keep:
                raise ValueError(f"seed={day!r} page={page}: expected {keep} users, got {len(results or [])}")
            for user in results[:keep]:
                login = {key: value for key, value in user["login"].items() if key != "password"}
                handle.write(json.dumps({**user, "login": login}, ensure_ascii=False, separators=(",", ":")) + "\n")
                written += 1
    return written


def _read_raw_chunks(path: Path) -> Iterator[list[dict]]:
    with path.open(encoding="utf-8") as lines:
        while chunk := list(islice(lines, CHUNK_USERS)):
            yield [json.loads(line) for line in chunk]


def normalize_frame(users: list[dict], day: str) -> pd.DataFrame:
    flat = pd.json_normalize(users)
    missing = sorted(set(SOURCE_FIELDS) - set(flat.columns))
    if missing:
        raise ValueError(f"users for {day} lack fields {missing}")
    frame = flat[list(SOURCE_FIELDS)].rename(columns=SOURCE_FIELDS)
    frame["partition_date"] = day
    frame["email_key"] = frame["email"].astype("string").str.strip().map(str.casefold, na_action="ignore")
    frame["postcode"] = frame["postcode"].map(str, na_action="ignore")
    frame["id_value"] = frame["id_value"].map(str, na_action="ignore")
    # + 0.0 turns -0.0 into 0.0 (SQLite cannot store the sign of a zero).
    frame["latitude"] = pd.to_numeric(frame["latitude"], errors="raise") + 0.0
    frame["longitude"] = pd.to_numeric(frame["longitude"], errors="raise") + 0.0
    return frame[list(USER_COLUMNS)].astype(USER_COLUMNS)


def normalize_raw_users(raw_path: Path, csv_path: Path, day: str) -> dict[str, int]:
    """Writes the day's CSV; returns {"users_read", "rows_written", "duplicates_dropped"}."""
    seen: set[str] = set()
    users_read = rows_written = 0
    with atomic_write(csv_path, "wb") as handle:
        handle.write((",".join(USER_COLUMNS) + "\n").encode("utf-8"))
        writer = pa_csv.CSVWriter(handle, CSV_SCHEMA, write_options=_CSV_WRITE_OPTIONS)
        for users in _read_raw_chunks(raw_path):
            users_read += len(users)
            frame = normalize_frame(users, day)
            keys = frame["email_key"]
            if keys.isna().any():
                raise ValueError(f"{day}: {int(keys.isna().sum())} users without an email")
            keep = ~keys.duplicated() & ~keys.isin(seen)
            seen.update(keys[keep])
            writer.write_table(pa.Table.from_pandas(frame[keep], schema=CSV_SCHEMA, preserve_index=False))
            rows_written += int(keep.sum())
        writer.close()
    return {"users_read": users_read, "rows_written": rows_written, "duplicates_dropped": users_read - rows_written}


def replace_partition(connection: sqlite3.Connection, csv_path: Path, day: str) -> int:
    """Deletes the day's rows of `users` and inserts the CSV's, in one transaction; returns rows."""
    columns = list(USER_COLUMNS)
    insert = f"INSERT INTO users ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    connection.isolation_level = None  # explicit BEGIN/COMMIT below
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        cursor.execute("DELETE FROM users WHERE partition_date = ?", (day,))
        inserted = 0
        reader = pa_csv.open_csv(csv_path, parse_options=_CSV_PARSE_OPTIONS, convert_options=_CSV_CONVERT_OPTIONS)
        for batch in reader:
            for start in range(0, batch.num_rows, CHUNK_USERS):
                chunk = batch.slice(start, CHUNK_USERS).select(columns)
                if set(chunk.column("partition_date").to_pylist()) - {day}:
                    raise ValueError(f"{csv_path} holds rows of another day than {day}")
                # Arrow -> Python: str, int, float, None for a missing value; "" stays "".
                cursor.executemany(insert, list(zip(*(column.to_pylist() for column in chunk.columns), strict=True)))
                inserted += chunk.num_rows
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    return inserted
