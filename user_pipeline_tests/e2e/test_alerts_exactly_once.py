"""Alerts are delivered exactly once for every failed run, however launched (daemon, `dagster asset
materialize`, the Python API on the instance), through a webhook that fails, hangs, then recovers."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from user_pipeline_tests.e2e.support import daemon_log, sensor_ticks, trigger, wait_for_run, wait_until
from user_pipeline_tests.webhook_receiver import WebhookReceiver
from user_pipeline_tools.dagster_services import REPO_ROOT

DAEMON_DAY, CLI_DAY, PYTHON_API_DAY = "2026-09-01", "2026-09-02", "2026-09-03"
# The webhook answers 503 twice, hangs past the alert timeout, answers 503 again, then recovers.
SCRIPT = [503, 503, "hang", 503]


@pytest.fixture(scope="module")
def webhook():
    with WebhookReceiver(script=SCRIPT, hang_seconds=6) as receiver:
        yield receiver


def services_env(root: Path) -> dict[str, str]:
    return {"USER_PIPELINE_ALERT_TIMEOUT_SECONDS": "2", "USER_PIPELINE_ALERT_SENSOR_INTERVAL_SECONDS": "3"}


PYTHON_API_RUN = f"""
import dagster as dg
from user_pipeline.definitions import defs as load_definitions
with dg.DagsterInstance.get() as instance:
    result = load_definitions().resolve_job_def("daily_users_job").execute_in_process(
        partition_key="{PYTHON_API_DAY}", instance=instance, raise_on_error=False)
    print(result.run_id)
"""


def test_every_failed_run_however_launched_gets_exactly_one_alert_through_a_flaky_webhook(
    api_server, dagster_services, webhook
):
    api_server.start()
    api_server.clear_faults()
    api_server.add_fault("error_body", seeds=[DAEMON_DAY, CLI_DAY, PYTHON_API_DAY])
    try:
        daemon_run = trigger(dagster_services, "launch-run", "--job", "daily_users_job", "--partition", DAEMON_DAY)
        assert wait_for_run(dagster_services, daemon_run)["status"] == "FAILURE"
        cli = dagster_services.dagster(
            "asset",
            "materialize",
            "-m",
            "user_pipeline.definitions",
            "--select",
            "raw_users,normalized_users,users_table",
            "--partition",
            CLI_DAY,
        )
        assert cli.returncode != 0
        python_api = subprocess.run(
            [sys.executable, "-c", PYTHON_API_RUN],
            cwd=REPO_ROOT,
            env=dagster_services.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert python_api.returncode == 0, python_api.stderr[-3000:]
    finally:
        api_server.clear_faults()
    failed = {run["runId"]: run for run in dagster_services.runs(statuses=["FAILURE"])}
    assert {run["tags"].get("dagster/partition") for run in failed.values()} == {DAEMON_DAY, CLI_DAY, PYTHON_API_DAY}

    def run_failure_alerts():
        # The late-day alerts of the freshness checks (which ride along with these runs) go to the same webhook.
        return [payload for payload in webhook.payloads if payload["kind"] == "run_failure"]

    def all_delivered():
        return set(failed) <= {payload["run_id"] for payload in run_failure_alerts()}

    wait_until(
        all_delivered,
        180,
        lambda: f"alerts for {sorted(failed)}; got {webhook.attempts}" + daemon_log(dagster_services),
    )
    # Two more ticks: nothing is sent again.
    ticks_before = len(sensor_ticks(dagster_services, "run_failure_alerts", limit=200))
    wait_until(
        lambda: len(sensor_ticks(dagster_services, "run_failure_alerts", limit=200)) >= ticks_before + 2,
        60,
        "two more ticks",
    )

    assert Counter(payload["run_id"] for payload in run_failure_alerts()) == Counter(set(failed))
    assert [behaviour for behaviour, _ in webhook.attempts[: len(SCRIPT)]] == [str(step) for step in SCRIPT]
    by_day = {payload["partition"]: payload for payload in run_failure_alerts()}
    assert set(by_day) == {DAEMON_DAY, CLI_DAY, PYTHON_API_DAY}
    for payload in by_day.values():
        assert payload["failed_steps"] == ["daily_users"] and "Uh oh" in payload["error"]
        assert payload["alert_id"] == payload["run_id"] and payload["run_url"].endswith(f"/runs/{payload['run_id']}")
