"""Per-day freshness through Dagster's time-partition freshness checks: a day past its deadline
gives exactly one alert naming the day, the late assets and whether it is missing, failed or late
(with the run id), through the same webhook and outbox as run failures."""

import dagster as dg
import pytest

from user_pipeline.automation.freshness import FRESHNESS_ASSETS, FRESHNESS_SENSOR_NAME, build_freshness_checks
from user_pipeline.automation.resources import AlertChannel
from user_pipeline.definitions import defs as load_definitions
from user_pipeline.partitions import daily_partitions
from user_pipeline.settings import automation_settings
from user_pipeline.users.resources import RandomUserApi
from user_pipeline_tests.runs import materialize_users
from user_pipeline_tests.webhook_receiver import WebhookReceiver

defs = load_definitions()
FRESHNESS_CHECKS = build_freshness_checks(automation_settings().freshness_deadline_cron)

# Deadline at midnight UTC: the day due is always the last closed day.
DUE = daily_partitions.get_last_partition_key()


@pytest.fixture(autouse=True)
def latest_day() -> None:
    """DUE as of the test's start, not of the module's import: pytest-xdist imports every module
    when a run begins, and a run begun before midnight UTC reaches this test after it."""
    global DUE
    DUE = daily_partitions.get_last_partition_key()


freshness_alerts = defs.resolve_sensor_def("freshness_alerts")


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def run_freshness_checks(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """What freshness_checks_sensor's run does: evaluates the freshness checks now."""
    checks = build_freshness_checks("0 0 * * *")
    job = dg.define_asset_job("freshness_checks", selection=dg.AssetSelection.checks(*checks))
    definitions = dg.Definitions(assets=defs.assets, asset_checks=checks, jobs=[job], resources=defs.resources)
    return definitions.resolve_job_def("freshness_checks").execute_in_process(instance=instance, raise_on_error=False)


def tick(instance, base_url: str, webhook_url: str, cursor: str | None):
    # A context manager: the definitions' users_api holds the warehouse resource (the circuit
    # breaker's store), which Dagster sets up and tears down around the tick.
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={
            "alerts": AlertChannel(webhook_url=webhook_url),
            "users_api": RandomUserApi(base_url=base_url, timeout_seconds=2),
        },
    ) as context:
        return freshness_alerts.evaluate_tick(context), context.cursor


def test_the_definitions_use_dagsters_freshness_checks_and_sensor():
    assert {spec.key.asset_key.to_user_string() for check in FRESHNESS_CHECKS for spec in check.check_specs} == set(
        FRESHNESS_ASSETS
    )
    sensor = defs.resolve_sensor_def(FRESHNESS_SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert freshness_alerts.default_status == dg.DefaultSensorStatus.RUNNING


def test_a_missing_day_past_its_deadline_raises_exactly_one_alert(users_api_server, instance, tmp_path):
    result = run_freshness_checks(instance)
    failed = [evaluation for evaluation in result.get_asset_check_evaluations() if not evaluation.passed]
    assert {evaluation.asset_key.to_user_string() for evaluation in failed} == set(FRESHNESS_ASSETS)
    with WebhookReceiver() as receiver:
        first, cursor = tick(instance, users_api_server.base_url, receiver.url, None)
        run_freshness_checks(instance)  # evaluated again, still failing: the same day
        _, cursor = tick(instance, users_api_server.base_url, receiver.url, cursor)
        tick(instance, users_api_server.base_url, receiver.url, cursor)
    [alert] = receiver.payloads
    assert (alert["kind"], alert["partition"], alert["status"], alert["alert_id"]) == (
        "freshness",
        DUE,
        "missing",
        f"freshness/{DUE}",
    )
    assert alert["assets"] == sorted(FRESHNESS_ASSETS)
    assert alert["reason"].startswith("nothing materialized it: no run was launched for it")
    assert alert["deadline"].endswith("00:00 UTC") and f"Partition {DUE} (" in alert["text"]
    assert first.skip_message.startswith("1 new late day(s); 1 alert(s) delivered")


def test_a_failed_day_names_its_run_the_step_and_the_error(users_api_server, instance, tmp_path):
    users_api_server.add_fault("error_body", seeds=[DUE])
    failed_run = materialize_users(users_api_server.base_url, tmp_path, DUE, instance=instance, users_per_partition=10)
    assert not failed_run.success
    run_freshness_checks(instance)
    users_api_server.stop()
    with WebhookReceiver() as receiver:
        tick(instance, users_api_server.base_url, receiver.url, None)
    [alert] = receiver.payloads
    assert (alert["partition"], alert["status"]) == (DUE, "failed")
    assert alert["reason"].startswith(f"run {failed_run.run_id} failed (daily_users: ")
    assert "HTTP 200 with an error" in alert["reason"]


def test_a_day_whose_run_is_still_running_is_late(users_api_server, instance):
    running = instance.create_run_for_job(
        defs.resolve_job_def("daily_users_job"), tags={"dagster/partition": DUE}, status=dg.DagsterRunStatus.STARTED
    )
    run_freshness_checks(instance)
    with WebhookReceiver() as receiver:
        tick(instance, users_api_server.base_url, receiver.url, None)
    [alert] = receiver.payloads
    assert (alert["status"], alert["reason"]) == ("late", f"run {running.run_id} is still running")


def test_a_day_ingested_but_not_carried_downstream_names_the_assets_and_the_run(users_api_server, instance, tmp_path):
    ingested = materialize_users(users_api_server.base_url, tmp_path, DUE, instance=instance, users_per_partition=10)
    assert ingested.success
    result = run_freshness_checks(instance)
    passed = {
        evaluation.asset_key.to_user_string(): evaluation.passed for evaluation in result.get_asset_check_evaluations()
    }
    assert passed == {"users_table": True, "user_registry": False, "daily_users_report": False, "users_parquet": False}
    users_api_server.stop()
    with WebhookReceiver() as receiver:
        tick(instance, users_api_server.base_url, receiver.url, None)
    [alert] = receiver.payloads
    assert alert["assets"] == ["daily_users_report", "user_registry", "users_parquet"]
    # The day's ingestion succeeded, so the API being down now is not why.
    assert alert["status"] == "missing" and alert["reason"].startswith(
        f"its latest run {ingested.run_id} succeeded, but nothing"
    )


def test_a_check_left_planned_by_a_failed_run_does_not_hold_back_later_failures(users_api_server, instance, tmp_path):
    users_api_server.add_fault("error_body", seeds=[DUE])
    # A run of the pipeline's own job that fails before its freshness check: the check stays PLANNED.
    failed = defs.resolve_job_def("daily_users_job").execute_in_process(
        instance=instance,
        partition_key=DUE,
        raise_on_error=False,
        resources={"users_api": RandomUserApi(base_url=users_api_server.base_url, users_per_partition=10)},
    )
    assert not failed.success
    run_freshness_checks(instance)
    with WebhookReceiver() as receiver:
        tick(instance, users_api_server.base_url, receiver.url, None)
    [alert] = receiver.payloads
    assert (alert["partition"], alert["status"], alert["assets"]) == (DUE, "failed", sorted(FRESHNESS_ASSETS))
    assert (
        alert["reason"].startswith(f"run {failed.run_id} failed (daily_users: ")
        and "HTTP 200 with an error" in alert["reason"]
    )


def test_a_missing_day_while_the_api_is_down_says_so(users_api_server, instance):
    run_freshness_checks(instance)
    users_api_server.stop()
    with WebhookReceiver() as receiver:
        tick(instance, users_api_server.base_url, receiver.url, None)
    [alert] = receiver.payloads
    assert alert["status"] == "missing"
    assert alert["reason"].startswith("nothing materialized it; the users API is unavailable: ")
