"""users_parquet runs the Spark job with spark-submit through Dagster Pipes (local[*]): the job reports the
materialization's metadata and its log lines; a failing day fails the run, naming it, and keeps the Parquet."""

import json
import logging
import shutil

import dagster as dg
import pytest

from spark_jobs.ingest_users import run_ingestion
from user_pipeline.spark.assets import users_parquet
from user_pipeline.spark.resources import SparkSettings
from user_pipeline.users.assets import daily_users
from user_pipeline.users.normalize import read_normalized_csv
from user_pipeline.users.resources import PartitionFiles
from user_pipeline_tests.runs import users_resources
from user_pipeline_tests.spark_jobs.support import data_files, partition_layout, read_agg, read_users, snapshot_tree

DAYS = ["2026-11-03", "2026-11-04", "2026-11-05"]
SMALL_SPARK = SparkSettings(shuffle_partitions=2)


def spark_resources(data_dir, settings: SparkSettings = SMALL_SPARK) -> dict:
    return {
        "files": PartitionFiles(data_dir=str(data_dir)),
        "spark": settings,
    }


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of one run over [first, last], as a single-run backfill launches it."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def materialize_days(data_dir, first: str, last: str, settings: SparkSettings = SMALL_SPARK, instance=None):
    """users_parquet over [first, last] in ONE run, as a single-run backfill launches it."""
    return dg.materialize(
        [users_parquet],
        instance=instance,
        resources=spark_resources(data_dir, settings),
        tags=range_tags(first, last),
        raise_on_error=False,
    )


def step_logs(instance: dg.DagsterInstance, run_id: str) -> list[tuple[int, str]]:
    """(level, message) of the users_parquet step's log lines in the run's event log."""
    return [
        (entry.level, entry.user_message)
        for entry in instance.all_logs(run_id)
        if entry.step_key == "users_parquet" and entry.dagster_event is None
    ]


def csv_rows(data_dir) -> dict[str, int]:
    return {day: len(read_normalized_csv(data_dir / "normalized_users" / f"{day}.csv")) for day in DAYS}


@pytest.fixture(scope="module")
def normalized_days(api_server, tmp_path_factory):
    """Three days of normalized users from the bundled API server."""
    data_dir = tmp_path_factory.mktemp("spark_data")
    for day in DAYS:
        assert dg.materialize(
            [daily_users],
            selection=["raw_users", "normalized_users"],
            partition_key=day,
            resources=users_resources(api_server.base_url, data_dir, users_per_partition=40),
        ).success
    return data_dir


def test_a_range_is_one_spark_submit_whose_job_reports_the_metadata_and_log(local_spark, normalized_days):
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_days(normalized_days, DAYS[0], DAYS[2], instance=instance)
    assert result.success, [event.message for event in result.all_events if event.is_failure]
    events = result.asset_materializations_for_node("users_parquet")
    assert sorted(event.partition for event in events) == DAYS
    parquet = normalized_days / "parquet"
    expected_rows = csv_rows(normalized_days)
    assert sum(expected_rows.values()) == 120

    # The job's own numbers, reported through Pipes: its application is not this process's session.
    metadata = events[0].metadata
    app_id = metadata["spark_application_id"].value
    assert app_id.startswith("local-") and app_id != local_spark.sparkContext.applicationId
    assert metadata["spark_master"].value == "local[*]"
    assert metadata["rows_by_day"].value == expected_rows
    assert metadata["dagster/row_count"].value == 120
    assert metadata["files"].value == 3
    assert metadata["bytes"].value == sum(
        (parquet / "users" / f"partition_date={day}" / name).stat().st_size
        for day in DAYS
        for name in data_files(parquet / "users", day)
    )
    assert metadata["path"].value == str(parquet / "users")
    assert metadata["aggregate_path"].value == str(parquet / "users_by_country_age_band")
    assert metadata["aggregate_rows"].value == len(read_agg(local_spark, parquet))
    assert "spark_ui" not in metadata  # no master web UI configured
    assert all(event.metadata == metadata for event in events)

    # The job's log lines are the step's log events, sent by the job through Pipes.
    logged = step_logs(instance, result.run_id)
    for line in (
        f"Spark application {app_id} on local[*]",
        f"read {len(DAYS)} CSV file(s), 120 row(s): {json.dumps(expected_rows)}",
        f"wrote {parquet / 'users'} and {parquet / 'users_by_country_age_band'}",
    ):
        assert (logging.INFO, line) in logged, logged

    rows = read_users(local_spark, parquet)
    assert len(rows) == 120 and sorted({str(row["partition_date"]) for row in rows}) == DAYS
    layout = partition_layout(parquet / "users")
    assert sorted(layout) == ["", *(f"partition_date={day}" for day in DAYS)]
    assert all(len([name for name in names if not name.startswith(".")]) == 1 for part, names in layout.items() if part)


def test_a_missing_day_fails_the_run_at_once_naming_it_and_keeps_the_parquet(local_spark, normalized_days, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(normalized_days / "normalized_users", data_dir / "normalized_users")
    # The previous good Parquet, written by the job's own function on this process's session.
    run_ingestion(
        local_spark,
        input_dir=data_dir / "normalized_users",
        start_date=DAYS[0],
        end_date=DAYS[2],
        output_dir=data_dir / "parquet",
    )
    before = {
        dataset: snapshot_tree(data_dir / "parquet" / dataset) for dataset in ("users", "users_by_country_age_band")
    }
    missing = data_dir / "normalized_users" / f"{DAYS[1]}.csv"
    missing.unlink()

    # Even with a retry policy the bad input is not retried: it would fail the same way.
    job = dg.Definitions(
        assets=[users_parquet],
        resources=spark_resources(data_dir),
        jobs=[dg.define_asset_job("retrying_spark", op_retry_policy=dg.RetryPolicy(max_retries=1))],
    ).resolve_job_def("retrying_spark")
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, tags=range_tags(DAYS[0], DAYS[2]), raise_on_error=False)
    assert not result.success
    event_types = [event.event_type for event in result.all_events]
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in event_types
    message = f"Missing input CSV for 1 day(s) of the requested range: {missing}"
    [failure] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_failure_data.error.message.strip().endswith(message)
    assert failure.step_failure_data.user_failure_data.description == message
    # The job said so itself, in the run's log, through Pipes.
    assert (logging.ERROR, message) in step_logs(instance, result.run_id)

    assert {dataset: snapshot_tree(data_dir / "parquet" / dataset) for dataset in before} == before
