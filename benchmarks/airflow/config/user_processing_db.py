"""The Airflow peer's connection arguments for its SQLite metadata database
(`[database] sql_alchemy_connect_args`, which Airflow imports by dotted path).

`timeout`: seconds a connection waits for another's write lock before "database is locked".
pysqlite's default, 5 s, is shorter than the scheduler's and dag processor's writes can hold the
lock on 2 loaded cores: `airflow backfill create` then failed before it made its backfill (seen
in the benchmark of 2026-12-01). Waiting instead changes nothing when nobody holds the lock.
"""

CONNECT_ARGS = {"timeout": 60}
