"""The Spark asset on a real standalone master + worker, through Dagster Pipes: a 3-day range is one finished
application, and the materialization's metadata and log lines come from the job."""

import json
import logging

import dagster as dg
import pytest

from spark_jobs import ingest_users
from user_pipeline.spark.resources import SparkSettings
from user_pipeline_tests.conftest import skip_or_fail
from user_pipeline_tests.spark.test_assets import DAYS, materialize_days, step_logs
from user_pipeline_tests.spark_jobs import golden
from user_pipeline_tests.spark_jobs.support import read_agg, read_users
from user_pipeline_tools import spark_cluster
from user_pipeline_tools.spark_cluster import ClusterStartError, StandaloneCluster


def test_a_missing_java_is_reported_clearly(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterStartError, match="Java not found"):
        StandaloneCluster(work_dir=tmp_path / "cluster").start()


def test_the_cli_reports_no_cluster(tmp_path, capsys):
    assert spark_cluster.main(["status", "--state-dir", str(tmp_path / "none")]) == 1
    assert "not running" in capsys.readouterr().out
    assert spark_cluster.main(["stop", "--state-dir", str(tmp_path / "none")]) == 0


def test_a_range_runs_as_one_application_on_the_cluster(local_spark, tmp_path):
    golden.write_days(tmp_path / "normalized_users", DAYS)
    cluster = StandaloneCluster(work_dir=tmp_path / "cluster", startup_timeout=150)
    try:
        cluster.start()
    except ClusterStartError as error:
        skip_or_fail(f"cannot start a Spark standalone cluster: {error}")
    pids = dict(cluster.pids)
    try:
        assert [worker["state"] for worker in cluster.master_json()["workers"]] == ["ALIVE"]
        settings = SparkSettings(
            master=cluster.master_url,
            executor_memory="512m",
            driver_memory="512m",
            executor_cores=1,
            total_executor_cores=1,
            shuffle_partitions=2,
            master_web_ui_url=cluster.web_ui_url,
        )
        applications_before = len(cluster.master_json()["completedapps"])
        instance = dg.DagsterInstance.ephemeral()
        result = materialize_days(tmp_path, DAYS[0], DAYS[2], settings, instance=instance)
        assert result.success, [event.message for event in result.all_events if event.is_failure]
        events = result.asset_materializations_for_node("users_parquet")
        assert sorted(event.partition for event in events) == DAYS
        metadata = events[0].metadata
        app_id = metadata["spark_application_id"].value
        assert metadata["spark_master"].value == cluster.master_url
        assert metadata["spark_ui"].value == f"{cluster.web_ui_url}/app/?appId={app_id}"
        rows = {day: len(golden.ROWS[day]) for day in DAYS}
        assert metadata["rows_by_day"].value == rows
        assert metadata["dagster/row_count"].value == sum(rows.values())
        # The job's log lines reach the run's event log through Pipes.
        logged = step_logs(instance, result.run_id)
        for line in (
            f"Spark application {app_id} on {cluster.master_url}",
            f"read {len(DAYS)} CSV file(s), {sum(rows.values())} row(s): {json.dumps(rows)}",
        ):
            assert (logging.INFO, line) in logged, logged

        state = cluster.wait_for(lambda s: not s["activeapps"] and s["completedapps"], timeout=60)
        assert len(state["completedapps"]) == applications_before + 1
        [application] = [app for app in state["completedapps"] if app["id"] == app_id]
        assert (application["name"], application["state"]) == (ingest_users.APP_NAME, "FINISHED")
    finally:
        cluster.stop()
    assert not any(spark_cluster._pid_alive(pid) for pid in pids.values())
    assert read_users(local_spark, tmp_path / "parquet") == golden.expected_user_rows()
    assert read_agg(local_spark, tmp_path / "parquet") == golden.EXPECTED_AGG
