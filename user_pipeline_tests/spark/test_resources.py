"""The spark-submit command the Spark settings give (SparkSubmitOperator's knobs as settings), and the settings
that cannot run refused in words before anything is launched."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.spark.resources import SparkSettings, check_packages
from user_pipeline.spark.submit import JOB_FILE, spark_home
from user_pipeline_tests.spark.test_assets import materialize_days

DAYS = {"input_dir": "/data/normalized_users", "start_date": "2026-11-03", "end_date": "2026-11-05"}
JOB_ARGS = [
    f"{JOB_FILE}",
    "--input-dir=/data/normalized_users",
    "--start-date=2026-11-03",
    "--end-date=2026-11-05",
    "--output-dir=/data/parquet",
]


def command(settings: SparkSettings) -> list[str]:
    return settings.submit_command(**DAYS, output_dir="/data/parquet")


def test_the_defaults_submit_to_local_with_every_option_named():
    assert command(SparkSettings()) == [
        f"{spark_home()}/bin/spark-submit",
        *("--master", "local[*]", "--driver-memory", "1g", "--executor-memory", "1g"),
        *("--executor-cores", "1", "--total-executor-cores", "1", "--conf", "spark.log.level=WARN"),
        *JOB_ARGS,
        "--shuffle-partitions=4",
    ]


def test_a_cluster_gets_its_cores_memory_and_packages_and_a_loopback_driver():
    settings = SparkSettings(
        master="spark://127.0.0.1:7077",
        driver_memory="2g",
        executor_memory="3g",
        executor_cores=2,
        total_executor_cores=4,
        packages="org.apache.spark:spark-avro_2.13:4.0.0,io.delta:delta-spark_2.13:4.0.0",
        shuffle_partitions=8,
    )
    assert command(settings)[1:] == [
        *("--master", "spark://127.0.0.1:7077", "--driver-memory", "2g", "--executor-memory", "3g"),
        *("--executor-cores", "2", "--total-executor-cores", "4", "--conf", "spark.log.level=WARN"),
        *("--packages", "org.apache.spark:spark-avro_2.13:4.0.0,io.delta:delta-spark_2.13:4.0.0"),
        *("--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1"),
        *JOB_ARGS,
        "--shuffle-partitions=8",
    ]


def test_executors_bigger_than_the_application_are_refused_on_a_cluster_only():
    too_big = {"executor_cores": 2, "total_executor_cores": 1}
    assert "--executor-cores" in command(SparkSettings(**too_big))  # local: Spark ignores both
    with pytest.raises(
        InvalidSettingError, match=r"invalid executor_cores=2: expected at most total_executor_cores \(1\)"
    ):
        command(SparkSettings(master="spark://spark-master:7077", **too_big))


def test_a_run_with_executors_bigger_than_the_application_fails_at_once_without_submitting(tmp_path):
    settings = SparkSettings(master="spark://127.0.0.1:9", executor_cores=4, total_executor_cores=2)
    result = materialize_days(tmp_path, "2026-11-03", "2026-11-03", settings)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_failure_data.user_failure_data.description == (
        "invalid executor_cores=4: expected at most total_executor_cores (2): "
        "a standalone master starts no executor bigger than the application"
    )
    assert failure.step_key == "users_parquet"
    assert not (tmp_path / "parquet").exists()


COORDINATE_PART = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=12)
COORDINATE = st.builds(lambda *parts: ":".join(parts), COORDINATE_PART, COORDINATE_PART, COORDINATE_PART)


@given(st.lists(COORDINATE, min_size=1, max_size=4))
def test_any_comma_list_of_maven_coordinates_is_accepted_as_is(coordinates):
    packages = ",".join(coordinates)
    assert check_packages(packages) == packages
    assert SparkSettings(packages=packages).packages == packages


@given(st.text(max_size=60))
def test_a_packages_value_is_accepted_only_as_comma_separated_three_part_coordinates(text):
    try:
        check_packages(text)
    except InvalidSettingError as error:
        assert str(error).startswith(f"invalid packages={text!r}: expected Maven coordinates")
        return
    for item in text.split(",") if text else []:
        parts = item.split(":")
        assert len(parts) == 3 and all(parts) and not any(character.isspace() for character in item), text
