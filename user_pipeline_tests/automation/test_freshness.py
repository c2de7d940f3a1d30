"""Per-partition freshness: a day past its deadline raises exactly one alert saying which day and
whether it is missing, failed or late, through the same webhook as run failures."""

import dagster as dg
import pytest

from user_pipeline.automation.resources import AlertChannel, PartitionDeadlines
from user_pipeline.automation.sensors import partition_freshness_sensor
from user_pipeline.definitions import defs as load_definitions
from user_pipeline.partitions import daily_partitions
from user_pipeline.users.resources import RandomUserApi
from user_pipeline_tests.runs import materialize_users
from user_pipeline_tests.webhook_receiver import WebhookReceiver

LAST_THREE = daily_partitions.get_partition_keys()[-3:]


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def materialize(instance, base_url: str, tmp_path, day: str) -> bool:
    return materialize_users(base_url, tmp_path, day, instance=instance, users_per_partition=10).success


def tick(instance, base_url: str, webhook_url: str, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=load_definitions(),
        resources={
            "alerts": AlertChannel(webhook_url=webhook_url),
            # Deadline at the end of the day itself: every closed day in the window is past due.
            "deadlines": PartitionDeadlines(deadline_hours=0, lookback_days=3),
            "users_api": RandomUserApi(base_url=base_url, timeout_seconds=2),
        },
    )
    return partition_freshness_sensor.evaluate_tick(context), context.cursor


def test_a_missing_day_past_its_deadline_raises_exactly_one_alert(users_api_server, instance, tmp_path):
    missing = LAST_THREE[1]
    for day in (LAST_THREE[0], LAST_THREE[2]):
        assert materialize(instance, users_api_server.base_url, tmp_path, day)
    with WebhookReceiver() as receiver:
        result, cursor = tick(instance, users_api_server.base_url, receiver.url, None)
        tick(instance, users_api_server.base_url, receiver.url, cursor)  # the next tick does not repeat it
    [alert] = receiver.payloads
    assert (alert["kind"], alert["partition"], alert["status"]) == ("freshness", missing, "missing")
    assert "no run was launched" in alert["reason"]
    assert result.skip_message == f"overdue: {missing} missing"


def test_a_failed_day_says_which_step_failed_and_why(users_api_server, instance, tmp_path):
    for day in LAST_THREE[:2]:
        assert materialize(instance, users_api_server.base_url, tmp_path, day)
    users_api_server.add_fault("error_body", seeds=[LAST_THREE[2]])
    assert not materialize(instance, users_api_server.base_url, tmp_path, LAST_THREE[2])
    users_api_server.stop()
    with WebhookReceiver() as receiver:
        tick(instance, users_api_server.base_url, receiver.url, None)
    [alert] = receiver.payloads
    assert (alert["partition"], alert["status"]) == (LAST_THREE[2], "failed")
    assert "raw_users: " in alert["reason"] and "HTTP 200 with an error" in alert["reason"]
