"""The users table in a SQL warehouse: SQLite by default, PostgreSQL by URL.

A partition is replaced in one transaction (delete the day, insert its rows), so a reader sees
the previous day or the new one, never a mix, and a failed load leaves the previous rows.
Values always travel as bound parameters.

Two questions, two relations:
- `users`: every partition's rows (unique: partition_date + email_key, the trimmed, case-folded
  email; `email` keeps the address as sent);
- `users_latest`: one row per email key, from the latest partition that has it.

Text is stored byte for byte; what a store cannot hold (U+0000 in PostgreSQL text) fails the
load naming the user and the column, never truncated.
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from itertools import repeat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.users.normalize import USER_COLUMNS, email_keys
from user_pipeline.users.receipts import content_hash, record_fingerprints, row_fingerprints

TABLE = "users"
LATEST_VIEW = "users_latest"

_SQL_TYPES = {"string": "TEXT", "Int64": "INTEGER", "float64": "DOUBLE PRECISION"}


def _create_table_sql(partition_date_type: str) -> str:
    columns = ",\n  ".join(
        f"{name} {partition_date_type if name == 'partition_date' else _SQL_TYPES[dtype]}"
        + (" NOT NULL" if name in ("partition_date", "user_id", "email", "email_key") else "")
        for name, dtype in USER_COLUMNS.items()
    )
    return f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  {columns},\n  PRIMARY KEY (partition_date, email_key)\n)"


_CREATE_EMAIL_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_email_key_idx ON {TABLE} (email_key, partition_date)"
# A table made before email_key had PRIMARY KEY (partition_date, email); this index gives it the same key.
_CREATE_UNIQUE_EMAIL_KEY = (
    f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_day_email_key_uq ON {TABLE} (partition_date, email_key)"
)
_CREATE_LATEST_VIEW = f"""CREATE VIEW {LATEST_VIEW} AS
SELECT {", ".join(f"u.{name}" for name in USER_COLUMNS)} FROM {TABLE} u
WHERE u.partition_date = (SELECT MAX(l.partition_date) FROM {TABLE} l WHERE l.email_key = u.email_key)"""
_DROP_LATEST_VIEW = f"DROP VIEW IF EXISTS {LATEST_VIEW}"


class TableMismatchError(ValueError):
    """The rows read back from the table are not the rows normalized: the load is rolled back.

    `loaded_*` describe what the day should hold (the rows as normalized when given, else the rows
    read from the CSV), `stored_*` what the table held after the load."""

    def __init__(
        self, partition_date: str, loaded_hash: str, stored_hash: str, loaded_rows: int = 0, stored_rows: int = 0
    ):
        super().__init__(
            f"{TABLE} {partition_date}: the rows read back ({stored_rows} rows, content hash {stored_hash[:12]}) differ "
            f"from the normalized_users CSV ({loaded_rows} rows, content hash {loaded_hash[:12]}); the load was rolled back"
        )
        self.partition_date, self.loaded_hash, self.stored_hash = partition_date, loaded_hash, stored_hash
        self.loaded_rows, self.stored_rows = loaded_rows, stored_rows


@dataclass(frozen=True)
class LoadResult:
    rows_inserted: int
    previous: pd.Series | None
    """user_id -> row fingerprint of the day before the load; None if the day had no rows."""
    stored: pd.Series
    """user_id -> row fingerprint of the day as committed."""
    content_hash: str
    """of the rows loaded, equal to the rows stored (receipts.content_hash)."""


class WarehouseUnavailableError(RuntimeError):
    """The warehouse cannot be reached or written right now (down, locked): worth a retry."""


def describe_integrity_error(error: Exception) -> str | None:
    """The reason and column of a warehouse integrity error (NOT NULL, UNIQUE, CHECK, ...), or
    None when `error` is not one. SQLite names `table.column`; PostgreSQL `column "name"` or `Key (name)`."""
    psycopg_errors = _psycopg_errors()
    if not isinstance(error, sqlite3.IntegrityError) and not (
        psycopg_errors and isinstance(error, psycopg_errors.IntegrityError)
    ):
        return None
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    column = re.search(r"constraint failed: ([\w.]+)|column \"(\w+)\"|Key \((\w+)\)", str(error))
    named = next((group for group in column.groups() if group), None) if column else None
    return f"{text} (column {named})" if named else text


def _psycopg_errors():
    try:
        import psycopg.errors as errors
    except ImportError:
        return None
    return errors


def redact_url(url: str) -> str:
    """The URL with any password removed, for logs and metadata."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}" if user else f"***@{netloc}"))


class Warehouse(ABC):
    """A SQL database holding the users table and the users_latest view."""

    url: str

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def replace_partition(self, partition_date: str, chunks: Iterable[pd.DataFrame]) -> int:
        """Replaces every row of `partition_date` with the rows of `chunks`; returns rows inserted."""
        return self.replace_partition_verified(partition_date, chunks).rows_inserted

    def replace_partition_verified(
        self,
        partition_date: str,
        chunks: Iterable[pd.DataFrame],
        chunk_rows: int = 5000,
        *,
        expected_hash: str | None = None,
    ) -> LoadResult:
        """Replaces the day's rows, then reads them back in the same transaction and commits only if
        their content hash equals the hash of what was loaded, and `expected_hash` when given (the
        hash of the rows as normalized, receipts.content_hash: so the CSV's round trip is checked
        too); TableMismatchError otherwise.

        Returns the fingerprints of the day's rows before the load (None if there were none) and
        after it, for the receipt (user_pipeline.users.receipts). The rows loaded are hashed only
        without `expected_hash`."""
        day = date.fromisoformat(partition_date)
        loaded: list[pd.Series] = []
        inserted = 0
        with self._transaction(write=True) as cursor:
            self._lock_partition(cursor, partition_date)
            previous = self._fingerprints(cursor, day, chunk_rows)
            cursor.execute(f"DELETE FROM {TABLE} WHERE partition_date = {self._param}", (self._date_param(day),))
            for chunk in chunks:
                mismatched = chunk["partition_date"] != partition_date
                if mismatched.any():
                    raise ValueError(
                        f"rows for {partition_date} include partition_date {chunk.loc[mismatched, 'partition_date'].iloc[0]!r}"
                    )
                self._check_storable(chunk, partition_date)
                self._insert(cursor, _rows_for_sql(chunk, self._date_param(day)))
                if expected_hash is None:
                    loaded.append(row_fingerprints([chunk]))
                inserted += len(chunk)
            stored = self._fingerprints(cursor, day, chunk_rows)
            stored_hash = content_hash(stored)
            # With `expected_hash`, the rows read back are compared with the rows as normalized,
            # which the rows loaded must equal too: hashing them as well would add nothing.
            loaded_hash = expected_hash or content_hash(_concat(loaded))
            if stored_hash != loaded_hash:
                raise TableMismatchError(
                    partition_date,
                    loaded_hash,
                    stored_hash,
                    loaded_rows=inserted,
                    stored_rows=len(stored),
                )
        return LoadResult(inserted, previous if len(previous) else None, stored, loaded_hash)

    def _fingerprints(self, cursor: Any, day: date, chunk_rows: int) -> pd.Series:
        cursor.execute(
            f"SELECT {', '.join(USER_COLUMNS)} FROM {TABLE} WHERE partition_date = {self._param}",
            (self._date_param(day),),
        )
        parts = []
        while records := cursor.fetchmany(chunk_rows):
            # The frame's fingerprints, straight from the values (the frame is made only for a
            # value of an unexpected type, which its dtypes then refuse as before).
            fingerprints = record_fingerprints(records)
            parts.append(fingerprints if fingerprints is not None else row_fingerprints([_users_frame(records)]))
        return _concat(parts)

    def _check_storable(self, chunk: pd.DataFrame, partition_date: str) -> None:  # noqa: B027 - a hook: most stores hold any value
        """Raises ValueError naming the user and column of a value this store cannot hold."""

    def read_partition(self, partition_date: str) -> pd.DataFrame:
        """The stored rows of one partition as USER_COLUMNS types, ordered by email key."""
        sql = f"SELECT {', '.join(USER_COLUMNS)} FROM {TABLE} WHERE partition_date = {self._param} ORDER BY email_key"
        return self._read_users(sql, (self._date_param(date.fromisoformat(partition_date)),))

    def iter_partition(self, partition_date: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The stored rows of one partition, `chunk_rows` at a time, as USER_COLUMNS types."""
        sql = f"SELECT {', '.join(USER_COLUMNS)} FROM {TABLE} WHERE partition_date = {self._param}"
        with self._transaction(write=False) as cursor:
            cursor.execute(sql, (self._date_param(date.fromisoformat(partition_date)),))
            while records := cursor.fetchmany(chunk_rows):
                yield _users_frame(records)

    def read_latest(self) -> pd.DataFrame:
        sql = f"SELECT {', '.join(USER_COLUMNS)} FROM {LATEST_VIEW} ORDER BY email_key"
        return self._read_users(sql, ())

    def count_rows(self, partition_date: str | None = None) -> int:
        with self._transaction(write=False) as cursor:
            if partition_date is None:
                cursor.execute(f"SELECT COUNT(*) FROM {TABLE}")
            else:
                cursor.execute(
                    f"SELECT COUNT(*) FROM {TABLE} WHERE partition_date = {self._param}",
                    (self._date_param(date.fromisoformat(partition_date)),),
                )
            return int(cursor.fetchone()[0])

    def _read_users(self, sql: str, params: tuple) -> pd.DataFrame:
        with self._transaction(write=False) as cursor:
            cursor.execute(sql, params)
            return _users_frame(cursor.fetchall())

    _param: str

    @abstractmethod
    def _transaction(self, *, write: bool) -> Any:
        """A context manager yielding a cursor inside one transaction, the schema in place."""

    @abstractmethod
    def _lock_partition(self, cursor: Any, partition_date: str) -> None:
        """Serializes writers of one partition."""

    @abstractmethod
    def _insert(self, cursor: Any, rows: list[tuple]) -> None: ...

    def _date_param(self, day: date) -> Any:
        return day


class SqlDatabase:
    """A SQL database at `url` whose schema the first transaction of the object creates
    (`_create_schema`); `what` and the redacted URL name it in errors."""

    _param: str
    what = "database"

    def __init__(self, url: str, lock_timeout_seconds: float = 30.0):
        self.url = url
        self.lock_timeout_seconds = lock_timeout_seconds
        self._schema_ready = False

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def _create_schema(self, cursor: Any) -> None:
        """Creates what is missing (idempotent), in a transaction of its own, and sets `_schema_ready`."""
        raise NotImplementedError


class SqliteDatabase(SqlDatabase):
    """A SQLite database file at `url` (sqlite:///path): each `_transaction()` one transaction
    (BEGIN IMMEDIATE when writing: the database's single write lock, waited for at most
    `lock_timeout_seconds`), the first of the object preceded by `_create_schema`; a database
    locked or unopenable raises WarehouseUnavailableError naming it as `what` and its URL."""

    _param = "?"

    def __init__(self, url: str, lock_timeout_seconds: float = 30.0):
        super().__init__(url, lock_timeout_seconds)
        self.path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if not str(self.path) or str(self.path) == ".":
            raise InvalidSettingError("warehouse_url", url, "sqlite:///path/to/file.sqlite")

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Cursor]:
        try:
            with self._sqlite_transaction(write=write) as cursor:
                yield cursor
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "unable to open" not in str(error):
                raise
            raise WarehouseUnavailableError(
                f"{self.what} {self.display_url} unavailable: {error} (waited {self.lock_timeout_seconds:g}s for the lock)"
            ) from error

    @contextmanager
    def _sqlite_transaction(self, *, write: bool) -> Iterator[sqlite3.Cursor]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self.lock_timeout_seconds, isolation_level=None)
        try:
            cursor = connection.cursor()
            if not self._schema_ready:
                self._create_schema(cursor)
            # IMMEDIATE takes the write lock up front: two writers queue, never interleave.
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield cursor
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            connection.close()


class SqliteWarehouse(SqliteDatabase, Warehouse):
    """The users table and view in a SQLite file (WAL journal: readers do not wait for a load)."""

    what = "warehouse"

    def _create_schema(self, cursor: sqlite3.Cursor) -> None:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(_create_table_sql("TEXT"))
        cursor.execute(f"PRAGMA table_info({TABLE})")
        if "email_key" not in {row[1] for row in cursor.fetchall()}:
            cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN email_key TEXT")
            _fill_email_keys(cursor, "?")
            cursor.execute(_CREATE_UNIQUE_EMAIL_KEY)
            cursor.execute(_DROP_LATEST_VIEW)  # it compared emails, not keys
        cursor.execute(_CREATE_EMAIL_INDEX)
        cursor.execute(_CREATE_LATEST_VIEW.replace("CREATE VIEW", "CREATE VIEW IF NOT EXISTS", 1))
        cursor.execute("COMMIT")
        self._schema_ready = True

    def _lock_partition(self, cursor: sqlite3.Cursor, partition_date: str) -> None:
        pass  # BEGIN IMMEDIATE already holds the database's single write lock.

    def _insert(self, cursor: sqlite3.Cursor, rows: list[tuple]) -> None:
        placeholders = ", ".join("?" for _ in USER_COLUMNS)
        cursor.executemany(f"INSERT INTO {TABLE} ({', '.join(USER_COLUMNS)}) VALUES ({placeholders})", rows)

    def _date_param(self, day: date) -> str:
        return day.isoformat()


@contextmanager
def postgres_transaction(
    url: str, lock_timeout_seconds: float, what: str, *, create_schema: Callable[[Any], None] | None = None
) -> Iterator[Any]:
    """A psycopg 3 cursor in one transaction on the PostgreSQL database at `url`, waiting at most
    `lock_timeout_seconds` for a lock; `create_schema(cursor)` runs first, in a transaction of its
    own, when given. A database down, restarting or locked raises WarehouseUnavailableError naming
    `what` (e.g. "warehouse postgresql://user@host/db", a URL already redacted) and libpq's reason."""
    import psycopg  # Imported here so that SQLite users need no PostgreSQL client library.

    try:
        with (
            psycopg.connect(
                url, connect_timeout=10, options=f"-c lock_timeout={int(lock_timeout_seconds * 1000)}"
            ) as connection,
            connection.cursor() as cursor,
        ):
            if create_schema is not None:
                with connection.transaction():
                    create_schema(cursor)
            with connection.transaction():
                yield cursor
    except psycopg.OperationalError as error:
        # libpq's first line says which, and never holds the password.
        reason = str(error).strip().splitlines()[0]
        raise WarehouseUnavailableError(f"{what} unavailable: {reason}") from None


class PostgresDatabase(SqlDatabase):
    """A PostgreSQL database at `url`, through psycopg 3 (the password in PGPASSWORD or ~/.pgpass,
    not in the URL): each `_transaction()` is one `postgres_transaction`, the first of a process
    preceded by `_create_schema`; errors name it as `what` and its redacted URL."""

    _param = "%s"

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Any]:
        with postgres_transaction(
            self.url,
            self.lock_timeout_seconds,
            f"{self.what} {self.display_url}",
            create_schema=None if self._schema_ready else self._create_schema,
        ) as cursor:
            yield cursor


class PostgresWarehouse(PostgresDatabase, Warehouse):
    """The users table and view in PostgreSQL."""

    what = "warehouse"

    def _create_schema(self, cursor: Any) -> None:
        # Concurrent first runs would race on CREATE ... IF NOT EXISTS; one lock orders them.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{TABLE}:schema",))
        cursor.execute(_create_table_sql("DATE"))
        cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s AND column_name = %s",
            (TABLE, "email_key"),
        )
        if cursor.fetchone() is None:
            cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN email_key TEXT")
            _fill_email_keys(cursor, "%s")
            cursor.execute(_CREATE_UNIQUE_EMAIL_KEY)
            # Its columns change (CREATE OR REPLACE cannot do that) and it compared emails, not keys.
            cursor.execute(_DROP_LATEST_VIEW)
        cursor.execute(_CREATE_EMAIL_INDEX)
        cursor.execute(_CREATE_LATEST_VIEW.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
        self._schema_ready = True

    def _lock_partition(self, cursor: Any, partition_date: str) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{TABLE}:{partition_date}",))

    def _check_storable(self, chunk: pd.DataFrame, partition_date: str) -> None:
        # PostgreSQL text cannot hold U+0000; psycopg would fail without naming the value.
        for column, dtype in USER_COLUMNS.items():
            if dtype != "string":
                continue
            has_nul = chunk[column].str.contains("\x00", regex=False).fillna(False)
            if has_nul.any():
                user_id = chunk.loc[has_nul, "user_id"].iloc[0]
                raise ValueError(
                    f"{partition_date} user {user_id}: {column} holds U+0000, which PostgreSQL text cannot store"
                )

    def _insert(self, cursor: Any, rows: list[tuple]) -> None:
        with cursor.copy(f"COPY {TABLE} ({', '.join(USER_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def open_warehouse(url: str, lock_timeout_seconds: float = 30.0) -> Warehouse:
    """The warehouse for a URL: sqlite:///path or postgresql://user@host:port/database."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteWarehouse(url, lock_timeout_seconds)
    if scheme in ("postgresql", "postgres"):
        return PostgresWarehouse(url, lock_timeout_seconds)
    raise InvalidSettingError(
        "warehouse_url", redact_url(url), "a sqlite:///path or postgresql://user@host:port/database URL"
    )


def _fill_email_keys(cursor: Any, param: str) -> None:
    """Fills email_key of rows loaded before the column existed (same rule as normalize.email_keys)."""
    cursor.execute(f"SELECT DISTINCT email FROM {TABLE} WHERE email_key IS NULL")
    emails = [row[0] for row in cursor.fetchall()]
    if emails:
        keys = email_keys(pd.Series(emails, dtype="string"))
        cursor.executemany(
            f"UPDATE {TABLE} SET email_key = {param} WHERE email = {param} AND email_key IS NULL",
            list(zip(keys, emails, strict=True)),
        )


def _concat(parts: list[pd.Series]) -> pd.Series:
    return pd.concat(parts) if parts else pd.Series([], dtype="uint64")


def _users_frame(records: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=list(USER_COLUMNS))
    frame["partition_date"] = frame["partition_date"].map(str)
    return frame.astype(USER_COLUMNS)


def _rows_for_sql(chunk: pd.DataFrame, partition_date: Any) -> list[tuple]:
    """The rows as tuples of USER_COLUMNS' Python values (str, int, float), None where missing."""
    columns = [
        repeat(partition_date, len(chunk))
        if name == "partition_date"
        else chunk[name].to_numpy(dtype=object, na_value=None).tolist()
        for name in USER_COLUMNS
    ]
    return list(zip(*columns, strict=False))
