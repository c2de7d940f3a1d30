"""Which errors are permanent: warehouse integrity errors are recognised in SQLite's and PostgreSQL's
words and named by column; transient ones (a locked or unreachable warehouse) are not."""

import sqlite3

import pytest

from user_pipeline.users.warehouse import WarehouseUnavailableError, describe_integrity_error


def sqlite_error(sql: str) -> sqlite3.Error:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE users (user_id TEXT NOT NULL, email TEXT, PRIMARY KEY (email))")
    connection.execute("INSERT INTO users VALUES ('a', 'a@example.com')")
    with pytest.raises(sqlite3.Error) as raised:
        connection.execute(sql)
    return raised.value


def test_sqlite_integrity_errors_are_named_by_column():
    assert describe_integrity_error(sqlite_error("INSERT INTO users VALUES (NULL, 'b@example.com')")) == (
        "NOT NULL constraint failed: users.user_id (column users.user_id)"
    )
    assert describe_integrity_error(sqlite_error("INSERT INTO users VALUES ('b', 'a@example.com')")) == (
        "UNIQUE constraint failed: users.email (column users.email)"
    )


def test_postgres_integrity_errors_are_named_by_column():
    errors = pytest.importorskip("psycopg.errors")
    not_null = errors.NotNullViolation(
        'null value in column "user_id" of relation "users" violates not-null constraint'
    )
    assert describe_integrity_error(not_null).endswith("(column user_id)")
    unique = errors.UniqueViolation(
        'duplicate key value violates unique constraint "users_pkey"\nDETAIL:  Key (email)=(a@example.com) already exists.'
    )
    assert (
        describe_integrity_error(unique) == 'duplicate key value violates unique constraint "users_pkey" (column email)'
    )


def test_transient_and_other_errors_are_not_integrity_errors():
    assert describe_integrity_error(sqlite_error("SELECT * FROM missing_table")) is None
    assert describe_integrity_error(WarehouseUnavailableError("database is locked")) is None
    assert describe_integrity_error(ValueError("x")) is None
