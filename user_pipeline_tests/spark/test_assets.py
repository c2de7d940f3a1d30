"""The Spark ingestion asset in local[*]: one day, a multi-day single run, and a corrupt day."""

import dagster as dg
import pytest

from user_pipeline.spark.assets import users_parquet
from user_pipeline.spark.resources import SparkSettings
from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import PartitionFiles
from user_pipeline_tests.runs import users_resources
from user_pipeline_tests.spark_jobs.support import partition_layout, read_agg, read_users

DAYS = ["2026-11-03", "2026-11-04", "2026-11-05"]
SMALL_SPARK = SparkSettings(shuffle_partitions=2)


def spark_resources(data_dir, settings: SparkSettings = SMALL_SPARK) -> dict:
    return {
        "files": PartitionFiles(data_dir=str(data_dir)),
        "spark": settings,
    }


def materialize_days(data_dir, first: str, last: str, settings: SparkSettings = SMALL_SPARK, instance=None):
    """users_parquet over [first, last] in ONE run, as a single-run backfill launches it."""
    return dg.materialize(
        [users_parquet],
        instance=instance,
        resources=spark_resources(data_dir, settings),
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )


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


def test_one_day_then_a_range_in_one_run_give_the_same_rows_and_files(local_spark, normalized_days):
    single = dg.materialize([users_parquet], partition_key=DAYS[1], resources=spark_resources(normalized_days))
    assert single.success
    [event] = single.asset_materializations_for_node("users_parquet")
    assert event.partition == DAYS[1]
    assert event.metadata["rows_by_day"].value == {DAYS[1]: 40 - 0}
    assert event.metadata["spark_application_id"].value == local_spark.sparkContext.applicationId
    day_rows = [
        row for row in read_users(local_spark, normalized_days / "parquet") if str(row["partition_date"]) == DAYS[1]
    ]

    ranged = materialize_days(normalized_days, DAYS[0], DAYS[2])
    assert ranged.success
    assert sorted(event.partition for event in ranged.asset_materializations_for_node("users_parquet")) == DAYS
    rows = read_users(local_spark, normalized_days / "parquet")
    assert [row for row in rows if str(row["partition_date"]) == DAYS[1]] == day_rows
    assert sorted({str(row["partition_date"]) for row in rows}) == DAYS
    layout = partition_layout(normalized_days / "parquet" / "users")
    assert sorted(layout) == ["", *(f"partition_date={day}" for day in DAYS)]
    assert all(len([name for name in names if not name.startswith(".")]) == 1 for part, names in layout.items() if part)
    assert read_agg(local_spark, normalized_days / "parquet")


def test_a_corrupt_day_fails_the_run_naming_the_file_and_keeps_the_parquet(local_spark, normalized_days, tmp_path):
    assert materialize_days(normalized_days, DAYS[0], DAYS[2]).success
    before = read_users(local_spark, normalized_days / "parquet")
    corrupt = normalized_days / "normalized_users" / f"{DAYS[2]}.csv"
    original = corrupt.read_bytes()
    corrupt.write_bytes(original.replace(b",", b";", 40))
    try:
        result = materialize_days(normalized_days, DAYS[0], DAYS[2])
    finally:
        corrupt.write_bytes(original)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert str(corrupt) in failure.step_failure_data.error.message
    assert read_users(local_spark, normalized_days / "parquet") == before
