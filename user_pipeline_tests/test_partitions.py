"""Partition keys are checked before any work: one line naming the key and the valid range, never retried."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from user_pipeline.partitions import InvalidPartitionKeyError, check_partition_key, daily_partitions
from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource
from user_pipeline_tools.dagster_services import REPO_ROOT

FIRST = daily_partitions.get_first_partition_key()


def valid_range() -> str:
    return f"valid days: {FIRST} to {daily_partitions.get_last_partition_key()}"


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("2019-01-01", "is not a daily partition"),
        ("2099-01-01", "is not a daily partition"),
        ("2026-02-30", "is not a daily partition"),
        ("yesterday", "is not a day YYYY-MM-DD"),
        ("2026-1-5", "is not a day YYYY-MM-DD"),
        ("", "is not a day YYYY-MM-DD"),
    ],
)
def test_a_bad_key_is_refused_in_one_line_naming_it_and_the_range(key, why):
    with pytest.raises(InvalidPartitionKeyError) as raised:
        check_partition_key(key)
    assert str(raised.value) == f"partition key {key!r} {why}; {valid_range()}"


def test_today_is_not_a_partition_until_it_closes():
    today = datetime.now(UTC).date()
    with pytest.raises(InvalidPartitionKeyError):
        check_partition_key(today.isoformat())
    assert check_partition_key((today - timedelta(days=1)).isoformat())


@given(st.text(max_size=30))
def test_any_text_is_either_a_partition_or_refused_naming_it(text):
    try:
        assert check_partition_key(text) in daily_partitions.get_partition_keys()
    except InvalidPartitionKeyError as error:
        assert repr(text) in str(error) and valid_range() in str(error) and "\n" not in str(error)


@pytest.mark.parametrize("tag", ["2019-01-01", "2099-12-31"])
def test_a_run_tagged_with_a_day_outside_the_range_fails_at_once_naming_it(tmp_path, tag):
    """Before: raw_users retried twice (30 s delays) and ended in `CheckError: Invariant failed`."""
    resources = {
        # An unreachable API: the check must fail the run before any call is made.
        "users_api": RandomUserApi(base_url="http://127.0.0.1:9/api/", users_per_partition=1),
        "files": PartitionFiles(data_dir=str(tmp_path)),
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/warehouse.sqlite"),
        "day_limits": DayLimits(),
    }
    job = dg.Definitions(assets=[daily_users], resources=resources).resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, tags={"dagster/partition": tag}, raise_on_error=False)
        failures = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
        retries = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert not result.success and not retries
    [failure] = failures
    assert failure.step_key == "daily_users"
    assert failure.event_specific_data.error.message.strip().endswith(
        f"partition key {tag!r} is not a daily partition; {valid_range()}"
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bad", ["yesterday", "2019-01-01"])
def test_repair_refuses_a_bad_day_in_one_line(bad, tmp_path):
    """Before: `repair --from yesterday` printed a 46-line traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "user_pipeline.automation.repair", "--from", bad, "--to", "2026-11-07", "--dry-run"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: partition key {bad!r} {'is not a day YYYY-MM-DD' if bad == 'yesterday' else 'is not a daily partition'}; {valid_range()}"
    ]
