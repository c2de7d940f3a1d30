"""End to end: runs launched from the dagster CLI are queued, run by the real daemon, and land; one
that hangs is stopped at its maximum run time (Airflow's execution_timeout), with one alert naming
it, no process of it left, the previous good day intact, and Dagster's one run retry landing it."""

import re
from pathlib import Path

import psutil
import pytest

from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.e2e.support import (
    daemon_log,
    job_launch,
    materializations,
    partition_files,
    run_events,
    sensor_ticks,
    wait_for_run,
    wait_until,
)

DAY = "2026-10-01"
MAX_RUNTIME_SECONDS = 15
MONITOR_POLL_SECONDS = 5  # run_monitoring.poll_interval_seconds in dagster_home/dagster.yaml
ALERT_SENSOR_SECONDS = 3


def services_env(root: Path) -> dict[str, str]:
    return {
        # Short enough to wait for, long enough for this module's healthy runs on a loaded machine.
        "USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS": str(MAX_RUNTIME_SECONDS),
        # Each API request may wait far longer than that: only the run's maximum run time stops it.
        "USER_PIPELINE_API_TIMEOUT_SECONDS": "600",
        "USER_PIPELINE_ALERT_SENSOR_INTERVAL_SECONDS": str(ALERT_SENSOR_SECONDS),
    }


def launch(services, day: str) -> None:
    """`dagster job launch` of daily_users_job for `day`, as the README's Triggers section does it."""
    launched = job_launch(services, day)
    assert launched.returncode == 0, launched.stderr[-3000:]


@pytest.fixture(scope="module")
def landed_run(api_server, dagster_services) -> dict:
    """DAY, launched from the CLI and run by the daemon (the good day the hung run must leave intact)."""
    api_server.start()
    launch(dagster_services, DAY)
    [run] = dagster_services.wait_for_runs(1, tags=[{"key": "dagster/partition", "value": DAY}])
    return run


def test_job_launch_with_a_partition_tag_is_queued_run_by_the_daemon_and_lands(landed_run, dagster_services):
    assert landed_run["status"] == "SUCCESS", dagster_services.logs("daemon")
    data_dir = dagster_services.data_dir
    assert (data_dir / "raw_users" / f"{DAY}.jsonl").exists()
    assert open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").count_rows(DAY) > 0


def test_a_hung_step_is_stopped_at_the_runs_maximum_run_time_with_one_alert_and_the_day_intact(
    api_server, dagster_services, webhook, landed_run
):
    assert landed_run["status"] == "SUCCESS"
    api_server.start()
    api_server.clear_faults()
    data_dir, warehouse_url = dagster_services.data_dir, dagster_services.warehouse_url
    files_before = partition_files(data_dir, DAY)
    rows_before = open_warehouse(warehouse_url).read_partition(DAY)
    assert len(rows_before) > 0
    # The API answers the day's next request after 10 minutes, unless the fault is cleared.
    api_server.add_fault("slow", seeds=[DAY], times=1, delay_seconds=600)
    try:
        launch(dagster_services, DAY)

        def launched_run() -> str | None:
            runs = dagster_services.runs(tags=[{"key": "dagster/partition", "value": DAY}])
            return next((run["runId"] for run in runs if run["runId"] != landed_run["runId"]), None)

        run_id = wait_until(launched_run, 60, lambda: "the launched run" + daemon_log(dagster_services))
        run = wait_for_run(dagster_services, run_id, timeout=120)
        # Files and table as they were the moment the stopped run ended.
        files_after, rows_after = (
            partition_files(data_dir, DAY),
            open_warehouse(warehouse_url).read_partition(DAY),
        )
    finally:
        api_server.clear_faults()

    assert run["status"] == "FAILURE"
    assert run["tags"]["dagster/max_runtime"] == str(MAX_RUNTIME_SECONDS)
    ran_for = run["endTime"] - run["startTime"]
    assert MAX_RUNTIME_SECONDS <= ran_for <= MAX_RUNTIME_SECONDS + MONITOR_POLL_SECONDS + 10, ran_for
    expected = (
        f"daily_users_job run exceeded its maximum run time of {MAX_RUNTIME_SECONDS} s "
        f"(USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS={MAX_RUNTIME_SECONDS})"
    )

    # The monitor marks the run failed as it sends the termination; the interrupted run worker
    # writes its own line a little later (seen seconds later on a loaded CI machine).
    def worker_said_so() -> tuple[list[dict], list[str]] | None:
        events = run_events(dagster_services, run_id)
        messages = [event.get("message") or "" for event in events]
        return (events, messages) if any(message.startswith(expected) for message in messages) else None

    events, messages = wait_until(
        worker_said_so,
        60,
        lambda: (
            f"the run's own line {expected!r} in its log; last: "
            + repr([event.get("message") for event in run_events(dagster_services, run_id)][-8:])
        ),
    )
    assert f"Exceeded maximum runtime of {MAX_RUNTIME_SECONDS} seconds." in messages
    # The interrupted step was not retried inside the stopped run, and its process is gone.
    assert not [event for event in events if event["__typename"] == "ExecutionStepRestartEvent"]
    [pid] = [
        int(found[1]) for message in messages if (found := re.match(r"Started process for run \(pid: (\d+)\)", message))
    ]
    wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        15,
        f"the stopped run's process {pid} to exit",
    )
    # Nothing of the day was changed or recorded by the stopped run.
    assert files_after == files_before
    assert rows_after.equals(rows_before)
    assert all(run_id not in runs for runs in materializations(dagster_services, "users_table", [DAY]).values())

    # run_retries relaunches the stopped run once; the API answers again, and it lands the same day.
    def retry() -> dict | None:
        runs = dagster_services.runs(tags=[{"key": "dagster/parent_run_id", "value": run_id}])
        return runs[0] if runs else None

    retried = wait_until(retry, 60, lambda: f"the retry of {run_id}" + daemon_log(dagster_services))
    assert wait_for_run(dagster_services, retried["runId"], timeout=120)["status"] == "SUCCESS"
    assert partition_files(data_dir, DAY) == files_before
    assert open_warehouse(warehouse_url).read_partition(DAY).equals(rows_before)

    # Exactly one alert, naming the timeout and the step it stopped: the tick after the failure sent
    # it, and two more sent nothing again.
    wait_until(
        lambda: (
            len(
                [
                    tick
                    for tick in sensor_ticks(dagster_services, "run_failure_alerts")
                    if tick["timestamp"] > run["endTime"]
                ]
            )
            >= 3
        ),
        60,
        lambda: "three ticks of the alert sensor after the failure" + daemon_log(dagster_services),
    )
    [alert] = [payload for payload in webhook.payloads if payload.get("run_id") == run_id]
    assert (alert["error"], alert["failed_steps"], alert["partition"]) == (expected, ["daily_users"], DAY)
    assert expected in alert["text"]
