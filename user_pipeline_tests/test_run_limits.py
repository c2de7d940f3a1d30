"""Run limits: every launch path gives the ingestion's and Spark's runs their maximum run time from
its setting; a run stopped at it retries no step and is alerted naming the timeout; the users_api
pool alone is limited, by its setting."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from user_pipeline.automation.resources import AlertChannel
from user_pipeline.automation.sensors import INGESTION_ASSETS, run_failure_alert
from user_pipeline.definitions import defs as load_definitions
from user_pipeline.run_checks import executor_checking_settings
from user_pipeline.run_limits import INGESTION_ASSETS as TIMED_INGESTION
from user_pipeline.run_limits import (
    INSTANCE_MAX_RUNTIME,
    MAX_RUNTIME_SETTING_TAG,
    MAX_RUNTIME_TAG,
    apply_users_api_pool_limit,
    max_runtime_source,
    max_runtime_tags,
    users_api_pool_limit,
)
from user_pipeline.settings import run_limits
from user_pipeline.shared.pools import USERS_API_POOL
from user_pipeline.users.resources import RandomUserApi
from user_pipeline_tools.dagster_services import REPO_ROOT

INGESTION = {MAX_RUNTIME_TAG: "3600", MAX_RUNTIME_SETTING_TAG: "USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=3600"}
SPARK = {MAX_RUNTIME_TAG: "7200", MAX_RUNTIME_SETTING_TAG: "USER_PIPELINE_SPARK_MAX_RUNTIME_SECONDS=7200"}
KEYS = {name: dg.AssetKey(name) for name in ("user_registry", "daily_users_report", "users_parquet", "users_table")}

defs = load_definitions()


@pytest.mark.parametrize(
    ("job", "tags"),
    [
        ("daily_users_job", INGESTION),
        ("day_assets_job", INGESTION),
        ("spark_ingestion_job", SPARK),
        # Neither ingestion nor Spark: the instance's run_monitoring.max_runtime_seconds.
        ("user_registry_job", {}),
        ("daily_users_report_job", {}),
    ],
)
def test_each_job_carries_its_maximum_run_time_for_every_run_launched_or_backfilled_from_it(job, tags):
    """A job's run tags go on each of its runs however launched: UI, `dagster job launch`, GraphQL,
    `dagster job backfill` (one run per day)."""
    run_tags = defs.resolve_job_def(job).run_tags
    assert {key: run_tags[key] for key in (MAX_RUNTIME_TAG, MAX_RUNTIME_SETTING_TAG) if key in run_tags} == tags


def test_the_schedules_and_the_api_sensors_runs_get_the_ingestion_jobs_maximum_run_time(users_api_server):
    """The scheduler and the sensor daemon tag a run with its job's run tags, then the request's
    (dagster/_scheduler/scheduler.py, dagster/_daemon/sensor.py: `{**remote_job.run_tags, **request.tags}`)."""
    schedule = defs.resolve_schedule_def("daily_users_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 25, 1, tzinfo=UTC), repository_def=defs.get_repository_def()
    )
    [scheduled] = schedule.evaluate_tick(context).run_requests
    sensor = defs.resolve_sensor_def("users_api_sensor")
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance,
            definitions=defs,
            resources={"users_api": RandomUserApi(base_url=users_api_server.base_url, timeout_seconds=2)},
        ) as context,
    ):
        result = sensor.evaluate_tick(context)
    [sensed] = result.run_requests
    job_tags = defs.resolve_job_def("daily_users_job").run_tags
    for request, job_name in ((scheduled, schedule.job_name), (sensed, sensor.job_name)):
        assert job_name == "daily_users_job"
        assert {**job_tags, **request.tags}[MAX_RUNTIME_TAG] == "3600"


def test_a_setting_sets_the_jobs_tags_when_the_definitions_load(monkeypatch):
    monkeypatch.setenv("USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS", "20")
    monkeypatch.setenv("USER_PIPELINE_SPARK_MAX_RUNTIME_SECONDS", "30")
    loaded = load_definitions()
    assert loaded.resolve_job_def("daily_users_job").run_tags[MAX_RUNTIME_SETTING_TAG] == (
        "USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=20"
    )
    assert loaded.resolve_job_def("spark_ingestion_job").run_tags[MAX_RUNTIME_TAG] == "30"


@pytest.mark.parametrize(
    ("assets", "seconds"),
    [
        # The automation's run of a landed day (registry, report, Parquet): Spark's.
        ({"user_registry", "daily_users_report", "users_parquet"}, "7200"),
        # The automation's run of the ingestion's tail, or an asset backfill of the ingestion: the ingestion's.
        ({"users_table"}, "3600"),
        # The UI's "Materialize all": both, one after the other.
        ({"users_table", "users_parquet", "user_registry"}, "10800"),
        # The registry alone: none of its own (the instance's default).
        ({"user_registry"}, None),
    ],
)
def test_a_run_of_assets_gets_the_maximum_run_time_of_what_it_materializes(assets, seconds):
    """Runs of Dagster's implicit asset job (UI *Materialize*, asset backfills, the automation sensor)
    carry no job tags: the run takes these when it starts (user_pipeline/run_checks.py)."""
    tags = max_runtime_tags({KEYS[name] for name in assets}, run_limits({}))
    assert tags.get(MAX_RUNTIME_TAG) == seconds


def test_the_source_named_is_the_one_that_set_the_runs_maximum_run_time():
    setting = {MAX_RUNTIME_TAG: "20", MAX_RUNTIME_SETTING_TAG: "USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=20"}
    assert max_runtime_source(setting, 20) == "USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=20"
    # Launched with another value (`--tags '{"dagster/max_runtime": "60"}'`): the setting did not set it.
    assert max_runtime_source({**setting, MAX_RUNTIME_TAG: "60"}, 60) == "the run's dagster/max_runtime tag"
    assert max_runtime_source({}, 10800) == INSTANCE_MAX_RUNTIME
    both = max_runtime_tags({KEYS["users_table"], KEYS["users_parquet"]}, run_limits({}))
    assert max_runtime_source(both, 10800) == (
        "USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=3600 + USER_PIPELINE_SPARK_MAX_RUNTIME_SECONDS=7200"
    )


# --- A run, through the definitions' executor ------------------------------------------------------
# dg.execute_job runs a reconstructable job with its own executor (execute_in_process would swap it
# for the plain in-process one), so these runs start and stop as launched runs do.

ATTEMPTS: list[str] = []


@dg.asset(
    key="raw_users",
    pool=USERS_API_POOL,
    retry_policy=dg.RetryPolicy(max_retries=2),
)
def stopped_while_fetching(context: dg.AssetExecutionContext) -> None:
    """What the run monitor does to a run past its maximum run time (its events, in its order),
    seen from the step: the step's call then fails, and its RetryPolicy asks for a retry."""
    ATTEMPTS.append(context.run.run_id)
    run = context.instance.get_run_by_id(context.run.run_id)
    context.instance.report_run_canceling(run, message="Canceling due to exceeding maximum runtime of 20 seconds.")
    context.instance.report_run_failed(run, "Exceeded maximum runtime of 20 seconds.")
    raise ConnectionError("the API call was interrupted")


@dg.asset(key="users_parquet")
def quick_parquet() -> None:
    return None


def _untagged_job(name: str, asset: dg.AssetsDefinition) -> dg.JobDefinition:
    """A job without run tags, like Dagster's implicit asset job (its name is reserved for Dagster)."""
    return dg.Definitions(
        assets=[asset],
        jobs=[dg.define_asset_job(name, selection=[asset.key])],
        executor=executor_checking_settings(dg.in_process_executor),
    ).resolve_job_def(name)


def stopped_job() -> dg.JobDefinition:
    return _untagged_job("materialize_raw_users", stopped_while_fetching)


def parquet_job() -> dg.JobDefinition:
    return _untagged_job("materialize_users_parquet", quick_parquet)


def test_a_run_launched_without_the_tag_takes_its_assets_maximum_run_time_when_it_starts():
    with dg.instance_for_test() as instance:
        result = dg.execute_job(
            dg.reconstructable(parquet_job), instance=instance, asset_selection=[KEYS["users_parquet"]]
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert {key: run.tags[key] for key in SPARK} == SPARK
        logged = [entry.message for entry in instance.all_logs(result.run_id)]
        assert "Maximum run time: 7200 s (USER_PIPELINE_SPARK_MAX_RUNTIME_SECONDS=7200); " in "\n".join(logged)


def test_a_run_launched_with_its_own_maximum_run_time_keeps_it_and_a_bad_one_is_said_in_its_log():
    with dg.instance_for_test() as instance:
        for given, line in (
            ("60", "Maximum run time: 60 s (the run's dagster/max_runtime tag); "),
            (
                "an hour",
                "Maximum run time: none: the run's dagster/max_runtime tag 'an hour' is not a number of seconds.",
            ),
        ):
            result = dg.execute_job(dg.reconstructable(parquet_job), instance=instance, tags={MAX_RUNTIME_TAG: given})
            assert result.success
            assert instance.get_run_by_id(result.run_id).tags[MAX_RUNTIME_TAG] == given
            assert line in "\n".join(entry.message for entry in instance.all_logs(result.run_id))


def test_a_run_stopped_at_its_maximum_run_time_retries_no_step_and_its_alert_names_the_timeout(monkeypatch):
    monkeypatch.setenv("USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS", "20")
    ATTEMPTS.clear()
    with dg.instance_for_test() as instance:
        assert users_api_pool_limit(instance) is None
        result = dg.execute_job(dg.reconstructable(stopped_job), instance=instance, raise_on_error=False)
        run = instance.get_run_by_id(result.run_id)
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert [result.run_id] == ATTEMPTS, "the step's RetryPolicy must not start it again in a stopped run"
        expected = "materialize_raw_users run exceeded its maximum run time of 20 s (USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=20)"
        assert f"{expected}: stopped, and no step of it retried." in [
            entry.message for entry in instance.all_logs(run.run_id)
        ]
        alert = run_failure_alert(instance, run, AlertChannel())
        assert (alert.error, alert.failed_steps) == (expected, ["raw_users"])
        # The run's step used the users_api pool, which had no limit: the run gave it the setting's.
        assert users_api_pool_limit(instance) == 2


# --- The users_api pool ----------------------------------------------------------------------------


@pytest.fixture
def instance_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME with the repository's instance file (SQLite in tmp_path)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster_home" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_make_pools_limits_the_users_api_pool_alone(instance_home: Path):
    """`make pools` (python -m user_pipeline_tools.pools) sets users_api's limit from its setting; no
    other pool gets one, and Dagster does not limit a pool without one
    (instance_concurrency_context.claim: no limit and no default_limit -> the step runs)."""
    applied = subprocess.run(
        [sys.executable, "-m", "user_pipeline_tools.pools"],
        cwd=REPO_ROOT,
        env={**_environ(), "DAGSTER_HOME": str(instance_home), "USER_PIPELINE_USERS_API_POOL_LIMIT": "3"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert applied.stdout.strip() == (
        "Pool users_api had no limit: now at most 3 step(s) at once (USER_PIPELINE_USERS_API_POOL_LIMIT)."
    )
    with dg.DagsterInstance.get() as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit is None
        assert [(pool.name, pool.limit) for pool in instance.event_log_storage.get_pool_limits()] == [("users_api", 3)]
        claims = [
            instance.event_log_storage.claim_concurrency_slot(USERS_API_POOL, "run", f"step_{n}").is_claimed
            for n in range(4)
        ]
        assert claims == [True, True, True, False]


def test_a_limit_set_by_hand_stays_until_the_stack_applies_the_setting_again(instance_home: Path):
    limits = run_limits({})
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots(
            USERS_API_POOL, 1
        )  # dagster instance concurrency set users_api 1
        assert apply_users_api_pool_limit(instance, limits, replace=False) is None
        assert users_api_pool_limit(instance) == 1
        assert apply_users_api_pool_limit(instance, limits, replace=True) == (
            "Pool users_api was limited to 1: now at most 2 step(s) at once (USER_PIPELINE_USERS_API_POOL_LIMIT)."
        )
        assert users_api_pool_limit(instance) == 2


def test_the_ingestion_the_maximum_run_time_names_is_the_one_the_sensor_and_schedule_request():
    assert frozenset(INGESTION_ASSETS) == TIMED_INGESTION


def _environ() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("USER_PIPELINE_")}


RACERS = 8
RACE = """
import sys, time
import dagster as dg
from user_pipeline.run_limits import apply_users_api_pool_limit
from user_pipeline.settings import run_limits
start = float(sys.argv[1])
with dg.DagsterInstance.get() as instance:
    instance.event_log_storage.get_pool_limits()  # storage open before the start line
    time.sleep(max(0.0, start - time.time()))
    print(apply_users_api_pool_limit(instance, run_limits({}), replace=False))
"""


def test_runs_starting_together_on_a_pool_without_a_limit_all_start(instance_home: Path):
    """Several first runs of a fresh instance each find the pool without a limit and set it at the
    same moment (seen in CI as an IntegrityError failing one of three first runs): one sets it, the
    others see it set, none fails."""
    with dg.DagsterInstance.get():
        pass  # storage created, as `make install` does
    start = time.time() + 4
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(start)],
            cwd=REPO_ROOT,
            env={**_environ(), "DAGSTER_HOME": str(instance_home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * RACERS, [err[-1500:] for _, err in outputs]
    with dg.DagsterInstance.get() as instance:
        assert users_api_pool_limit(instance) == 2
