"""The users table in a SQL warehouse: SQLite by default, PostgreSQL by URL.

A partition is replaced in one transaction (delete the day, insert its rows), so a reader sees
the previous day or the new one, never a mix, and a failed load leaves the previous rows.
Values always travel as bound parameters.

Two questions, two relations:
- `users`: every partition's rows (primary key partition_date + email);
- `users_latest`: one row per email, from the latest partition that has it.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from user_pipeline.users.api_client import InvalidSettingError
from user_pipeline.users.normalize import USER_COLUMNS

TABLE = "users"
LATEST_VIEW = "users_latest"

_SQL_TYPES = {"string": "TEXT", "Int64": "INTEGER", "float64": "DOUBLE PRECISION"}


def _create_table_sql(partition_date_type: str) -> str:
    columns = ",\n  ".join(
        f"{name} {partition_date_type if name == 'partition_date' else _SQL_TYPES[dtype]}"
        + (" NOT NULL" if name in ("partition_date", "user_id", "email") else "")
        for name, dtype in USER_COLUMNS.items()
    )
    return f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  {columns},\n  PRIMARY KEY (partition_date, email)\n)"


_CREATE_EMAIL_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_email_idx ON {TABLE} (email, partition_date)"
_CREATE_LATEST_VIEW = f"""CREATE VIEW {LATEST_VIEW} AS
SELECT u.* FROM {TABLE} u
WHERE u.partition_date = (SELECT MAX(l.partition_date) FROM {TABLE} l WHERE l.email = u.email)"""


class WarehouseUnavailableError(RuntimeError):
    """The warehouse cannot be reached or written right now (down, locked): worth a retry."""


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
        day = date.fromisoformat(partition_date)
        inserted = 0
        with self._transaction(write=True) as cursor:
            self._lock_partition(cursor, partition_date)
            cursor.execute(f"DELETE FROM {TABLE} WHERE partition_date = {self._param}", (self._date_param(day),))
            for chunk in chunks:
                mismatched = chunk["partition_date"] != partition_date
                if mismatched.any():
                    raise ValueError(
                        f"rows for {partition_date} include partition_date {chunk.loc[mismatched, 'partition_date'].iloc[0]!r}"
                    )
                self._insert(cursor, _rows_for_sql(chunk, self._date_param(day)))
                inserted += len(chunk)
        return inserted

    def read_partition(self, partition_date: str) -> pd.DataFrame:
        """The stored rows of one partition as USER_COLUMNS types, ordered by email."""
        sql = f"SELECT {', '.join(USER_COLUMNS)} FROM {TABLE} WHERE partition_date = {self._param} ORDER BY email"
        return self._read_users(sql, (self._date_param(date.fromisoformat(partition_date)),))

    def iter_partition(self, partition_date: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The stored rows of one partition, `chunk_rows` at a time, as USER_COLUMNS types."""
        sql = f"SELECT {', '.join(USER_COLUMNS)} FROM {TABLE} WHERE partition_date = {self._param}"
        with self._transaction(write=False) as cursor:
            cursor.execute(sql, (self._date_param(date.fromisoformat(partition_date)),))
            while records := cursor.fetchmany(chunk_rows):
                yield _users_frame(records)

    def read_latest(self) -> pd.DataFrame:
        sql = f"SELECT {', '.join(USER_COLUMNS)} FROM {LATEST_VIEW} ORDER BY email"
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


class SqliteWarehouse(Warehouse):
    _param = "?"

    def __init__(self, url: str, lock_timeout_seconds: float = 30.0):
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if not str(self.path) or str(self.path) == ".":
            raise InvalidSettingError("warehouse_url", url, "sqlite:///path/to/file.sqlite")
        self.lock_timeout_seconds = lock_timeout_seconds
        self._schema_ready = False

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Cursor]:
        try:
            with self._sqlite_transaction(write=write) as cursor:
                yield cursor
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "unable to open" not in str(error):
                raise
            raise WarehouseUnavailableError(
                f"warehouse {self.display_url} unavailable: {error} (waited {self.lock_timeout_seconds:g}s for the lock)"
            ) from error

    @contextmanager
    def _sqlite_transaction(self, *, write: bool) -> Iterator[sqlite3.Cursor]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self.lock_timeout_seconds, isolation_level=None)
        try:
            cursor = connection.cursor()
            if not self._schema_ready:
                self._create_schema(cursor)
            # IMMEDIATE takes the write lock up front: two loads of one day queue, never interleave.
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield cursor
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            connection.close()

    def _create_schema(self, cursor: sqlite3.Cursor) -> None:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(_create_table_sql("TEXT"))
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


class PostgresWarehouse(Warehouse):
    """PostgreSQL through psycopg 3; put the password in PGPASSWORD or ~/.pgpass, not in the URL."""

    _param = "%s"

    def __init__(self, url: str, lock_timeout_seconds: float = 30.0):
        import psycopg  # Imported here so that SQLite users need no PostgreSQL client library.

        self._psycopg = psycopg
        self.url = url
        self.lock_timeout_seconds = lock_timeout_seconds
        self._schema_ready = False

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Any]:
        try:
            with self._psycopg.connect(
                self.url, connect_timeout=10, options=f"-c lock_timeout={int(self.lock_timeout_seconds * 1000)}"
            ) as connection:
                with connection.cursor() as cursor:
                    if not self._schema_ready:
                        with connection.transaction():
                            self._create_schema(cursor)
                    with connection.transaction():
                        yield cursor
        except self._psycopg.OperationalError as error:
            # Down, restarting or locked: libpq's first line says which, and never holds the password.
            reason = str(error).strip().splitlines()[0]
            raise WarehouseUnavailableError(f"warehouse {self.display_url} unavailable: {reason}") from None

    def _create_schema(self, cursor: Any) -> None:
        # Concurrent first runs would race on CREATE ... IF NOT EXISTS; one lock orders them.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{TABLE}:schema",))
        cursor.execute(_create_table_sql("DATE"))
        cursor.execute(_CREATE_EMAIL_INDEX)
        cursor.execute(_CREATE_LATEST_VIEW.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
        self._schema_ready = True

    def _lock_partition(self, cursor: Any, partition_date: str) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{TABLE}:{partition_date}",))

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


def _users_frame(records: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=list(USER_COLUMNS))
    frame["partition_date"] = frame["partition_date"].map(str)
    return frame.astype(USER_COLUMNS)


def _rows_for_sql(chunk: pd.DataFrame, partition_date: Any) -> list[tuple]:
    values = chunk.astype(object).where(chunk.notna(), None)
    values["partition_date"] = partition_date
    return list(values.itertuples(index=False, name=None))
