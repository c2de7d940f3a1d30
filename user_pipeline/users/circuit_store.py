"""The circuit breaker's state in the warehouse's database, which every node reaches.

Two tables: `pipeline_circuit_state`, one row per source (its key, its base URL with any password
redacted, the state, the failures in a row, when it opened, when the trial call went out, the last
error), and `pipeline_circuit_skipped_days` (source key, day). Each change of a state is one
transaction: the row is created if missing, then locked (PostgreSQL: `SELECT ... FOR UPDATE`, a row
lock every node's transaction waits for; SQLite: `BEGIN IMMEDIATE`, the database's write lock),
read, changed by the breaker and written back before the commit. Values travel as bound parameters.

PostgreSQL (the multi-node profile): the tables live in the warehouse database itself. SQLite (one
machine): in a file beside the warehouse file, `<warehouse>-circuit.sqlite`, because SQLite has one
write lock per file and a long load of a day would otherwise hold up every API call for as long.
Plain Python, no Dagster.
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from user_pipeline.users.circuit_breaker import STATES, CircuitState, CircuitStore
from user_pipeline.users.warehouse import (
    PostgresDatabase,
    PostgresWarehouse,
    SqliteDatabase,
    SqliteWarehouse,
    Warehouse,
    redact_url,
)

STATE_TABLE = "pipeline_circuit_state"
SKIPPED_DAYS_TABLE = "pipeline_circuit_skipped_days"
_COLUMNS = ("state", "consecutive_failures", "opened_at", "trial_started_at", "last_error")
_CREATE_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
  source_key TEXT PRIMARY KEY,
  source TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ({", ".join(f"'{state}'" for state in STATES)})),
  consecutive_failures INTEGER NOT NULL,
  opened_at DOUBLE PRECISION,
  trial_started_at DOUBLE PRECISION,
  last_error TEXT NOT NULL
)""",
    f"""CREATE TABLE IF NOT EXISTS {SKIPPED_DAYS_TABLE} (
  source_key TEXT NOT NULL REFERENCES {STATE_TABLE} (source_key),
  day TEXT NOT NULL,
  PRIMARY KEY (source_key, day)
)""",
)


class SqlCircuitStore(CircuitStore):
    """The states in two tables of a SQL database; `display_url` names it in errors."""

    display_url: str
    _param: str
    _row_lock: str

    @contextmanager
    def locked(self, key: str, source: str) -> Iterator[CircuitState]:
        with self._transaction() as cursor:
            state = self._read(cursor, key, source)
            before = state.copy()
            yield state
            self._write(cursor, key, before, state)

    def _read(self, cursor: Any, key: str, source: str) -> CircuitState:
        p = self._param
        cursor.execute(
            f"INSERT INTO {STATE_TABLE} (source_key, source, {', '.join(_COLUMNS)}) "
            f"VALUES ({p}, {p}, 'closed', 0, NULL, NULL, '') ON CONFLICT (source_key) DO NOTHING",
            (key, redact_url(source)),
        )
        cursor.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM {STATE_TABLE} WHERE source_key = {p}{self._row_lock}", (key,)
        )
        state, failures, opened_at, trial_started_at, last_error = cursor.fetchone()
        cursor.execute(f"SELECT day FROM {SKIPPED_DAYS_TABLE} WHERE source_key = {p} ORDER BY day", (key,))
        days = [row[0] for row in cursor.fetchall()]
        return CircuitState(state, failures, opened_at, trial_started_at, last_error, days)

    def _write(self, cursor: Any, key: str, before: CircuitState, after: CircuitState) -> None:
        p = self._param
        if after.state not in STATES:
            raise ValueError(f"circuit state {after.state!r} is none of {', '.join(STATES)}")
        values = (
            after.state,
            after.consecutive_failures,
            after.opened_at,
            after.trial_started_at,
            # PostgreSQL text holds no U+0000; an error text is shown, never parsed: escape it.
            after.last_error.replace("\x00", "\\x00"),
        )
        if values != tuple(getattr(before, column) for column in _COLUMNS):
            cursor.execute(
                f"UPDATE {STATE_TABLE} SET {', '.join(f'{column} = {p}' for column in _COLUMNS)} WHERE source_key = {p}",
                (*values, key),
            )
        removed = sorted(set(before.skipped_days) - set(after.skipped_days))
        added = sorted(set(after.skipped_days) - set(before.skipped_days))
        if removed:
            cursor.executemany(
                f"DELETE FROM {SKIPPED_DAYS_TABLE} WHERE source_key = {p} AND day = {p}",
                [(key, day) for day in removed],
            )
        if added:
            cursor.executemany(
                f"INSERT INTO {SKIPPED_DAYS_TABLE} (source_key, day) VALUES ({p}, {p})", [(key, day) for day in added]
            )

    @abstractmethod
    def _transaction(self) -> Any:
        """A context manager yielding a cursor inside one transaction that holds the states' lock,
        the tables in place; WarehouseUnavailableError when the database cannot be reached or locked."""


class SqliteCircuitStore(SqliteDatabase, SqlCircuitStore):
    """The states in a SQLite file beside the warehouse's; BEGIN IMMEDIATE holds its single write lock."""

    what = "circuit breaker state"
    _row_lock = ""

    def __init__(self, path: Path, lock_timeout_seconds: float = 30.0):
        super().__init__(f"sqlite:///{path}", lock_timeout_seconds)

    def _create_schema(self, cursor: sqlite3.Cursor) -> None:
        cursor.execute("BEGIN IMMEDIATE")
        for statement in _CREATE_TABLES:
            cursor.execute(statement)
        cursor.execute("COMMIT")
        self._schema_ready = True


class PostgresCircuitStore(PostgresDatabase, SqlCircuitStore):
    """The states in PostgreSQL (the warehouse's database), reached like the warehouse."""

    what = "circuit breaker state"
    _row_lock = " FOR UPDATE"

    def _create_schema(self, cursor: Any) -> None:
        # Nodes starting together would race on CREATE ... IF NOT EXISTS; one lock orders them.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{STATE_TABLE}:schema",))
        for statement in _CREATE_TABLES:
            cursor.execute(statement)
        self._schema_ready = True


def circuit_store_for(warehouse: Warehouse) -> SqlCircuitStore:
    """The store of the breaker's state for a warehouse: its own database for PostgreSQL, a file
    beside it (`<stem>-circuit<suffix>`) for SQLite."""
    if isinstance(warehouse, PostgresWarehouse):
        return PostgresCircuitStore(warehouse.url, warehouse.lock_timeout_seconds)
    if isinstance(warehouse, SqliteWarehouse):
        path = warehouse.path.with_name(f"{warehouse.path.stem}-circuit{warehouse.path.suffix}")
        return SqliteCircuitStore(path, warehouse.lock_timeout_seconds)
    raise TypeError(f"no circuit store for {type(warehouse).__name__}")
