"""Shared fixtures: the bundled API server, a throwaway PostgreSQL, the recorded API answers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from user_pipeline_tests.postgres_cluster import ThrowawayPostgres, find_postgres_bin
from user_pipeline_tools.randomuser_server.launcher import RandomUserServer

FIXTURES_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "randomuser"
IN_CI = os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> None:
    """Skips on a developer machine without the service; under CI=true the test must run."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def api_server() -> Iterator[RandomUserServer]:
    """One real randomuser-compatible server process on loopback for the whole session."""
    with RandomUserServer() as server:
        yield server


@pytest.fixture
def users_api_server(api_server: RandomUserServer) -> Iterator[RandomUserServer]:
    """The session's server, started and fault-free for this test, and so left afterwards."""
    api_server.start()
    api_server.clear_faults()
    api_server.reset_stats()
    yield api_server
    api_server.start()
    api_server.clear_faults()


@pytest.fixture(scope="session")
def local_spark():
    """One local[2] SparkSession (one JVM) for every test that needs Spark in process."""
    try:
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master("local[2]")
            .appName("user_pipeline_tests")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
    except Exception as error:  # no Java, or the JVM cannot start
        skip_or_fail(f"cannot start a local SparkSession: {error}")
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    """A real PostgreSQL server on loopback, or a skip saying why there is none."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    cluster = ThrowawayPostgres(bin_dir).init()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def postgres_url(postgres: ThrowawayPostgres, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database for this test; its password is in PGPASSWORD only."""
    for name, value in postgres.env.items():
        monkeypatch.setenv(name, value)
    database = f"test_{uuid.uuid4().hex[:12]}"
    return postgres.create_database(database)


# The JVMs the tests start (Spark's driver, the standalone cluster) compile with the client
# compiler only and collect with one thread: their data is tiny and they live seconds, so the
# optimizing compiler's threads were a third of their CPU (31 s -> 21 s on the Spark range test),
# on a 2-core machine shared by the test workers. The pipeline's own Spark settings are unchanged.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("JDK_JAVA_OPTIONS", TEST_JVM_OPTIONS)


# The longest test files first, so that the workers of `make test` (pytest-xdist, whole files per
# worker) end together, the short files filling in last: end-to-end, then Spark, reliability,
# the benchmark's smoke and acceptance, then the rest, each group in its usual order.
_LONG_FIRST = ("e2e", "spark", "spark_jobs", "reliability", "benchmarks", "acceptance")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        folder = item.path.parent.name
        return _LONG_FIRST.index(folder) if folder in _LONG_FIRST else len(_LONG_FIRST)

    items.sort(key=rank)  # stable: the order within each group is kept
