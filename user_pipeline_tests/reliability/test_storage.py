"""An unavailable warehouse: a locked SQLite file and a stopped PostgreSQL give a clear error, are
retried, lose nothing; a PostgreSQL restarted between two runs just works."""

import sqlite3
import threading
import time

import dagster as dg
import pandas as pd
import pytest

from user_pipeline.users.warehouse import WarehouseUnavailableError, open_warehouse
from user_pipeline_tests.postgres_cluster import ThrowawayPostgres, find_postgres_bin
from user_pipeline_tests.runs import USERS_ASSETS, materialize_users

DAY = "2026-09-20"


def run_day(base_url, data_dir, warehouse_url, lock_timeout_seconds=30, instance=None, assets=USERS_ASSETS):
    return materialize_users(
        base_url,
        data_dir,
        DAY,
        warehouse_url=warehouse_url,
        lock_timeout_seconds=lock_timeout_seconds,
        instance=instance,
        assets=assets,
        users_per_partition=50,
    )


def logged_messages(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(
        str(entry.dagster_event.event_specific_data) if entry.dagster_event else entry.user_message
        for entry in instance.all_logs(run_id)
    )


def test_a_locked_sqlite_warehouse_is_a_clear_error_then_a_successful_retry(users_api_server, tmp_path):
    warehouse_url = f"sqlite:///{tmp_path}/warehouse.sqlite"
    assert run_day(users_api_server.base_url, tmp_path, warehouse_url).success
    rows_before = open_warehouse(warehouse_url).read_partition(DAY)

    other_writer = sqlite3.connect(tmp_path / "warehouse.sqlite", isolation_level=None, check_same_thread=False)
    other_writer.execute("BEGIN IMMEDIATE")
    with dg.instance_for_test() as instance:

        def release_after_the_first_retry() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any(
                instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
                for run in instance.get_runs()
            ):
                time.sleep(0.1)
            other_writer.rollback()

        releaser = threading.Thread(target=release_after_the_first_retry)
        releaser.start()
        # Only the table step, so that it meets the lock at once.
        result = run_day(
            users_api_server.base_url,
            tmp_path,
            warehouse_url,
            lock_timeout_seconds=1,
            instance=instance,
            assets=["users_table"],
        )
        log = logged_messages(instance, result.run_id)
        releaser.join()
    other_writer.close()
    assert result.success, "the asset's retry policy waits out the other writer"
    assert f"warehouse {warehouse_url} unavailable: database is locked (waited 1s for the lock)" in log
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), rows_before)


@pytest.fixture
def own_postgres(monkeypatch):
    """A PostgreSQL cluster of this test's own, since the test stops and restarts it."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        from user_pipeline_tests.conftest import skip_or_fail

        skip_or_fail("PostgreSQL server binaries are not installed")
    cluster = ThrowawayPostgres(bin_dir).init()
    cluster.start()
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    yield cluster
    cluster.destroy()


def test_a_stopped_postgres_is_a_clear_error_and_a_restarted_one_works(users_api_server, tmp_path, own_postgres):
    warehouse_url = own_postgres.url()
    assert run_day(users_api_server.base_url, tmp_path, warehouse_url).success
    rows_before = open_warehouse(warehouse_url).read_partition(DAY)

    own_postgres.stop()
    with pytest.raises(WarehouseUnavailableError) as raised:
        open_warehouse(warehouse_url).count_rows(DAY)
    assert f"warehouse {warehouse_url} unavailable: connection failed" in str(raised.value)
    assert own_postgres.password not in str(raised.value)

    own_postgres.start()
    assert run_day(users_api_server.base_url, tmp_path, warehouse_url).success
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), rows_before)


def test_a_postgres_down_during_a_run_fails_it_after_retries_and_loses_nothing(
    users_api_server, tmp_path, own_postgres
):
    warehouse_url = own_postgres.url()
    assert run_day(users_api_server.base_url, tmp_path, warehouse_url).success
    rows_before = open_warehouse(warehouse_url).read_partition(DAY)
    own_postgres.stop()
    with dg.instance_for_test() as instance:
        result = run_day(users_api_server.base_url, tmp_path, warehouse_url, instance=instance)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "daily_users"
    assert "unavailable: connection failed" in failure.step_failure_data.error.message
    own_postgres.start()
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), rows_before)
