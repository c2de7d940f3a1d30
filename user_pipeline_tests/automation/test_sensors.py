"""The users API sensor and the run failure alerts, on a real API server and a real webhook receiver."""

import dagster as dg
import pytest

from user_pipeline.automation.resources import AlertChannel
from user_pipeline.definitions import defs as load_definitions
from user_pipeline.partitions import daily_partitions
from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource
from user_pipeline_tests.webhook_receiver import WebhookReceiver

defs = load_definitions()

LATEST_DAY = daily_partitions.get_last_partition_key()


@pytest.fixture(autouse=True)
def latest_day() -> None:
    """LATEST_DAY as of the test's start, not of the module's import: pytest-xdist imports every module
    when a run begins, and a run begun before midnight UTC reaches this test after it."""
    global LATEST_DAY
    LATEST_DAY = daily_partitions.get_last_partition_key()


users_api_sensor = defs.resolve_sensor_def("users_api_sensor")
run_failure_alerts = defs.resolve_sensor_def("run_failure_alerts")


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def evaluate(instance, base_url: str, cursor: str | None = None):
    # A context manager: the definitions' users_api holds the warehouse resource (the circuit
    # breaker's store), which Dagster sets up and tears down around the tick.
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=load_definitions(),
        resources={"users_api": RandomUserApi(base_url=base_url, timeout_seconds=2)},
    ) as context:
        return users_api_sensor.evaluate_tick(context), context


def test_the_sensor_skips_with_the_reason_while_the_api_is_down(users_api_server, instance):
    users_api_server.stop()
    result, context = evaluate(instance, users_api_server.base_url)
    assert result.run_requests == []
    assert f"users API {users_api_server.base_url} is unavailable: connection failed" in result.skip_message
    assert context.cursor is None


def test_the_sensor_skips_while_the_api_answers_errors(users_api_server, instance):
    users_api_server.add_fault("server_error", status=503)
    result, _ = evaluate(instance, users_api_server.base_url)
    assert "is unavailable: HTTP 503" in result.skip_message


def test_once_the_api_is_up_it_requests_the_latest_day_once(users_api_server, instance):
    result, context = evaluate(instance, users_api_server.base_url)
    [request] = result.run_requests
    assert (request.partition_key, request.run_key) == (LATEST_DAY, LATEST_DAY)
    assert sorted(key.to_user_string() for key in request.asset_selection) == [
        "normalized_users",
        "raw_users",
        "users_table",
    ]
    assert context.cursor == LATEST_DAY
    again, _ = evaluate(instance, users_api_server.base_url, cursor=context.cursor)
    assert again.run_requests == []
    assert again.skip_message == f"the run for {LATEST_DAY} was already requested"


def test_a_materialized_latest_day_is_not_requested(users_api_server, instance, tmp_path):
    assert dg.materialize(
        [daily_users],
        partition_key=LATEST_DAY,
        instance=instance,
        resources={
            "users_api": RandomUserApi(base_url=users_api_server.base_url, users_per_partition=5),
            "files": PartitionFiles(data_dir=str(tmp_path)),
            "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/w.sqlite"),
            "day_limits": DayLimits(),
        },
    ).success
    result, _ = evaluate(instance, users_api_server.base_url)
    assert result.skip_message == f"{LATEST_DAY} is already materialized"


def test_a_failed_run_sends_one_alert_naming_job_partition_step_and_error(users_api_server, instance, tmp_path):
    users_api_server.add_fault("error_body", seeds=["2026-11-20"])
    result = dg.materialize(
        [daily_users],
        partition_key="2026-11-20",
        instance=instance,
        resources={
            "users_api": RandomUserApi(base_url=users_api_server.base_url),
            "files": PartitionFiles(data_dir=str(tmp_path)),
            "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/w.sqlite"),
            "day_limits": DayLimits(),
        },
        raise_on_error=False,
    )
    assert not result.success
    with WebhookReceiver() as receiver:
        channel = AlertChannel(webhook_url=receiver.url, ui_base_url="http://ui.test")
        context = dg.build_sensor_context(instance=instance, resources={"alerts": channel})
        run_failure_alerts.evaluate_tick(context)
        # The next tick finds nothing new and sends nothing again.
        run_failure_alerts.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"alerts": channel})
        )
    [alert] = receiver.payloads
    assert alert["partition"] == "2026-11-20"
    assert alert["failed_steps"] == ["daily_users"]
    assert "HTTP 200 with an error" in alert["error"] and "Uh oh" in alert["error"]
    assert alert["run_url"] == f"http://ui.test/runs/{result.run_id}"
    assert alert["job"] == result.dagster_run.job_name
    assert alert["alert_id"] == result.run_id
    assert "partition 2026-11-20" in alert["text"]


def test_a_run_failing_outside_its_steps_is_alerted_with_its_cause(instance, tmp_path):
    """A run that fails before any step (here a resource refusing a value out of bounds, as a bad
    setting in the launchpad's config does) has no step failure: its alert names the cause, not
    Dagster's headline "An exception was thrown during execution"."""
    from user_pipeline.automation.sensors import run_failure_alert

    result = dg.materialize(
        [daily_users],
        selection=["raw_users"],
        partition_key=daily_partitions.get_last_partition_key(),
        instance=instance,
        resources={
            "users_api": RandomUserApi(base_url="http://127.0.0.1:9/api/"),
            "files": PartitionFiles(data_dir=str(tmp_path)),
            "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/warehouse.sqlite"),
            "day_limits": DayLimits(),
        },
        run_config={"resources": {"users_api": {"config": {"users_per_partition": 0}}}},
        raise_on_error=False,
    )
    assert not result.success and not result.get_step_failure_events()
    alert = run_failure_alert(instance, instance.get_run_by_id(result.run_id), AlertChannel())
    assert alert.failed_steps == []
    assert "users_per_partition" in alert.error and "greater than or equal to 1" in alert.error, alert.error
    assert "An exception was thrown during execution" not in alert.error
