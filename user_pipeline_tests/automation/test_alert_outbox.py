"""The alert outbox: an undelivered alert is kept and sent again with backoff, never twice, and
survives the cursor round trip; delivery has a timeout and retries."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from user_pipeline.automation.alerts import AlertDeliveryError, AlertOutbox, post_payload
from user_pipeline_tests.webhook_receiver import WebhookReceiver


def test_an_undelivered_alert_waits_with_backoff_and_is_delivered_once():
    outbox = AlertOutbox(base_delay_seconds=10, max_delay_seconds=35)
    assert outbox.add("run-1", {"text": "a"}) and outbox.add("run-2", {"text": "b"})
    sent: list[str] = []
    failures_left = {"run-1": 3, "run-2": 1}

    def send(payload):
        if failures_left[payload["alert_id"]]:
            failures_left[payload["alert_id"]] -= 1
            raise AlertDeliveryError("HTTP 503")
        sent.append(payload["alert_id"])

    assert outbox.deliver(send, now=0) == (0, "alert run-1 not delivered (attempt 1): HTTP 503")
    assert outbox.deliver(send, now=5) == (0, "alert run-2 not delivered (attempt 1): HTTP 503")  # run-1 not due
    assert outbox.deliver(send, now=10)[0] == 0 and outbox.pending[0].next_attempt_at == 30  # 10 + 2 x 10
    assert outbox.deliver(send, now=15) == (1, None) and sent == ["run-2"]
    outbox = AlertOutbox.from_cursor(outbox.to_cursor())  # kept across ticks in the cursor
    outbox.base_delay_seconds, outbox.max_delay_seconds = 10, 35
    assert outbox.deliver(send, now=30)[0] == 0 and outbox.pending[0].next_attempt_at == 65  # 4 x 10, capped at 35
    assert outbox.deliver(send, now=64) == (0, None)
    assert outbox.deliver(send, now=65) == (1, None)
    assert sent == ["run-2", "run-1"] and not outbox.pending
    assert not outbox.add("run-1", {"text": "a"})  # never twice
    assert outbox.deliver(send, now=1000) == (0, None) and sent == ["run-2", "run-1"]


@given(st.lists(st.booleans(), max_size=30), st.lists(st.sampled_from(["r1", "r2", "r3"]), max_size=10))
def test_whatever_fails_each_alert_is_delivered_at_most_once_and_none_is_dropped(outcomes, found):
    outbox = AlertOutbox(base_delay_seconds=1, max_delay_seconds=1)
    results = iter(outcomes)
    sent: list[str] = []

    def send(payload):
        if not next(results, True):
            raise AlertDeliveryError("down")
        sent.append(payload["alert_id"])

    for now, alert_id in enumerate(found):
        outbox.add(alert_id, {})
        outbox = AlertOutbox.from_cursor(outbox.to_cursor())
        outbox.deliver(send, now=now * 10)
    assert len(sent) == len(set(sent))
    assert set(sent) | {item.alert_id for item in outbox.pending} == set(found)


@pytest.mark.parametrize(("script", "delivered"), [([503, 503], True), ([503, 503, 503], False), (["hang"], True)])
def test_a_post_is_retried_with_backoff_and_times_out(script, delivered):
    with WebhookReceiver(script=script, hang_seconds=3) as receiver:
        started = time.monotonic()
        if delivered:
            post_payload({"alert_id": "x"}, receiver.url, timeout_seconds=1)
            assert receiver.payloads == [{"alert_id": "x"}]
        else:
            with pytest.raises(AlertDeliveryError, match="503"):
                post_payload({"alert_id": "x"}, receiver.url, timeout_seconds=1)
            assert receiver.payloads == []
        assert len(receiver.attempts) == min(len(script) + 1, 3)
        assert time.monotonic() - started < 10
