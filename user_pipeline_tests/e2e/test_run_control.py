"""On the real daemon: the API sensor waits out an outage then requests one run; re-execution from
failure re-runs only the failed step; two runs of one day queue one behind the other; a failed run
sends exactly one alert and spares the old data."""

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from user_pipeline.users.normalize import read_normalized_csv
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.e2e.support import (
    assert_same_partition,
    daemon_log,
    executed_steps,
    materializations,
    materialize_in_process,
    partition_files,
    run_events,
    run_info,
    sensor_ticks,
    start_sensor,
    stop_sensor,
    trigger,
    wait_for_run,
    wait_until,
)
from user_pipeline_tools.dagster_services import REPO_ROOT, TERMINAL_RUN_STATUSES
from user_pipeline_tools.randomuser_server.faults import ERROR_MESSAGE

API_SENSOR = "users_api_sensor"
ALERT_SENSOR = "run_failure_alerts"
ALERT_DAY = "2026-10-21"
REEXECUTE_DAY = "2026-10-23"
QUEUE_DAY = "2026-10-25"


def services_env(root: Path) -> dict[str, str]:
    # A warehouse in its own directory, which a test can make impossible to create.
    return {"USER_PIPELINE_WAREHOUSE_URL": f"sqlite:///{root}/warehouse/users.sqlite"}


@dataclass
class FailedRun:
    run: dict
    files_before: dict[str, bytes]
    rows_before: pd.DataFrame


@pytest.fixture(scope="module", autouse=True)
def failed_run(api_server, dagster_services) -> FailedRun:
    """A day materialized successfully, then a run of it failing on the API's error body.

    Autouse, so it runs at the start of the module: the failure sensor evaluates every 30 s, and
    its ticks go by while the other tests run; the alert test, last, then finds them done.
    """
    api_server.start()
    api_server.clear_faults()
    data_dir, warehouse_url = dagster_services.data_dir, dagster_services.warehouse_url
    # The day was materialized successfully before: same files, same warehouse.
    materialize_in_process(api_server.base_url, data_dir, [ALERT_DAY], warehouse_url)
    files_before = partition_files(data_dir, ALERT_DAY)
    rows_before = open_warehouse(warehouse_url).read_partition(ALERT_DAY)
    assert len(rows_before) > 0
    api_server.add_fault("error_body", seeds=[ALERT_DAY])
    try:
        run_id = trigger(dagster_services, "launch-run", "--job", "daily_users_job", "--partition", ALERT_DAY)
        run = wait_for_run(dagster_services, run_id)
    finally:
        api_server.clear_faults()
    return FailedRun(run, files_before, rows_before)


def latest_closed_day() -> str:
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def ticks_after(services, sensor: str, timestamp: float) -> list[dict]:
    return [
        tick for tick in sensor_ticks(services, sensor) if tick["timestamp"] > timestamp and tick["status"] != "STARTED"
    ]


def test_api_sensor_skips_while_the_api_is_down_then_requests_one_run_for_the_latest_day(
    users_api_server, dagster_services
):
    day = latest_closed_day()
    assert not materializations(dagster_services, "users_table", [day]), "the latest day must not be materialized yet"
    users_api_server.stop()
    started_at = time.time()
    start_sensor(dagster_services, API_SENSOR)
    try:
        skipped = wait_until(
            lambda: len(ticks := ticks_after(dagster_services, API_SENSOR, started_at)) >= 2 and ticks,
            60,
            lambda: "two ticks of the API sensor" + daemon_log(dagster_services),
        )
        assert [tick["status"] for tick in skipped] == ["SKIPPED"] * len(skipped)
        for tick in skipped:
            assert f"users API {users_api_server.base_url} is unavailable" in tick["skipReason"], tick
        assert not dagster_services.runs(tags=[{"key": "dagster/sensor_name", "value": API_SENSOR}])

        users_api_server.start()
        [requested] = wait_until(
            lambda: [tick for tick in ticks_after(dagster_services, API_SENSOR, started_at) if tick["runIds"]],
            60,
            lambda: "the API sensor to request a run" + daemon_log(dagster_services),
        )
        assert requested["status"] == "SUCCESS"
        [run_id] = requested["runIds"]
        # Further ticks request nothing more: the day was already requested.
        later = wait_until(
            lambda: len(ticks := ticks_after(dagster_services, API_SENSOR, requested["timestamp"])) >= 2 and ticks,
            60,
            "two more ticks of the API sensor",
        )
        assert all(tick["status"] == "SKIPPED" and not tick["runIds"] for tick in later), later
        assert all("already requested" in tick["skipReason"] for tick in later), later
    finally:
        stop_sensor(dagster_services, API_SENSOR)

    [sensor_run] = dagster_services.runs(tags=[{"key": "dagster/sensor_name", "value": API_SENSOR}])
    assert sensor_run["runId"] == run_id
    assert sensor_run["tags"]["dagster/partition"] in {day, latest_closed_day()}
    assert wait_for_run(dagster_services, run_id)["status"] == "SUCCESS"
    assert open_warehouse(dagster_services.warehouse_url).count_rows(sensor_run["tags"]["dagster/partition"]) > 0


def test_reexecution_from_failure_reruns_the_failed_day_chain_and_succeeds(users_api_server, dagster_services):
    warehouse_dir = dagster_services.root / "warehouse"
    aside = dagster_services.root / "warehouse.aside"
    if warehouse_dir.exists():
        warehouse_dir.rename(aside)
    # A file where the warehouse's directory should be: the database can be neither opened nor created.
    warehouse_dir.write_text("not a directory\n")
    try:
        failed_id = trigger(dagster_services, "launch-run", "--job", "daily_users_job", "--partition", REEXECUTE_DAY)
        failed = wait_for_run(dagster_services, failed_id)
    finally:
        warehouse_dir.unlink()
        if aside.exists():
            aside.rename(warehouse_dir)
    assert failed["status"] == "FAILURE"
    # One step for the day's chain (fetch, normalize, load): it fails on the load, after its retries.
    assert {step["stepKey"]: step["status"] for step in failed["stepStats"]} == {"daily_users": "FAILURE"}

    [failure] = [
        event for event in run_events(dagster_services, failed_id) if event["__typename"] == "ExecutionStepFailureEvent"
    ]
    assert failure["stepKey"] == "daily_users" and str(warehouse_dir) in failure["error"]["message"], failure
    # The day was not committed: nothing of it was recorded by the failed run.
    assert materializations(dagster_services, "raw_users", [REEXECUTE_DAY]) == {}

    rerun_id = trigger(dagster_services, "reexecute", "--run-id", failed_id, "--from-failure")
    rerun = wait_for_run(dagster_services, rerun_id)
    assert rerun["status"] == "SUCCESS"
    assert (rerun["parentRunId"], rerun["rootRunId"]) == (failed_id, failed_id)
    assert rerun["tags"]["dagster/partition"] == REEXECUTE_DAY
    # The failed step, and the step skipped after it: Dagster's freshness check of users_table
    # (user_pipeline/automation/freshness.py), which runs after the asset it checks.
    [freshness_step] = [key for key in rerun["stepKeysToExecute"] if key.startswith("freshness_check")]
    assert rerun["stepKeysToExecute"] == ["daily_users", freshness_step]
    assert [(step["stepKey"], step["status"]) for step in rerun["stepStats"]] == [
        ("daily_users", "SUCCESS"),
        (freshness_step, "SUCCESS"),
    ]
    assert executed_steps(dagster_services, rerun_id) == ["daily_users", freshness_step]
    # The re-execution fetched, normalized, loaded and committed the day, all three recorded once.
    for asset in ("raw_users", "normalized_users", "users_table"):
        assert materializations(dagster_services, asset, [REEXECUTE_DAY]) == {REEXECUTE_DAY: {rerun_id}}, asset
    csv = read_normalized_csv(dagster_services.data_dir / "normalized_users" / f"{REEXECUTE_DAY}.csv")
    rows = open_warehouse(dagster_services.warehouse_url).read_partition(REEXECUTE_DAY)
    assert len(rows) == len(csv) > 0
    assert sorted(rows["email"]) == sorted(csv["email"])


def test_second_run_of_the_same_day_waits_queued_until_the_first_ends_and_data_lands_once(
    users_api_server, dagster_services, tmp_path
):
    # The first run to fetch the day waits 5 s for the API: time enough to see the other one queued.
    users_api_server.add_fault("slow", seeds=[QUEUE_DAY], times=1, delay_seconds=5)
    launches = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "user_pipeline.graphql_triggers",
                "--url",
                dagster_services.url,
                "launch-run",
                "--job",
                "daily_users_job",
                "--partition",
                QUEUE_DAY,
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [launch.communicate(timeout=120) for launch in launches]
    assert [launch.returncode for launch in launches] == [0, 0], [err for _, err in outputs]
    run_ids = [out.strip() for out, _ in outputs]

    snapshots: list[dict[str, str]] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        snapshots.append({run_id: run_info(dagster_services, run_id)["status"] for run_id in run_ids})
        if all(status in TERMINAL_RUN_STATUSES for status in snapshots[-1].values()):
            break
        time.sleep(0.5)
    details = sorted(
        (run_info(dagster_services, run_id) for run_id in run_ids), key=lambda each: each["startTime"] or float("inf")
    )
    assert [each["status"] for each in details] == ["SUCCESS", "SUCCESS"], snapshots[-1]
    first, second = details[0]["runId"], details[1]["runId"]
    assert any(snap[first] == "STARTED" and snap[second] == "QUEUED" for snap in snapshots), snapshots
    assert all(snap[second] == "QUEUED" for snap in snapshots if snap[first] not in TERMINAL_RUN_STATUSES), snapshots
    assert details[1]["startTime"] >= details[0]["endTime"]
    assert users_api_server.stats()["by_seed"].get(QUEUE_DAY) == 2, "each run fetched the day once"

    reference_warehouse = materialize_in_process(users_api_server.base_url, tmp_path, [QUEUE_DAY])
    assert_same_partition(
        QUEUE_DAY, dagster_services.data_dir, dagster_services.warehouse_url, tmp_path, reference_warehouse
    )


# Last: by now the failure sensor (every 30 s) has long had the ticks this test waits for.
def test_failed_run_sends_exactly_one_alert_and_leaves_the_previous_data_in_place(
    users_api_server, dagster_services, webhook, failed_run
):
    run, run_id = failed_run.run, failed_run.run["runId"]
    assert run["status"] == "FAILURE"
    assert [step["stepKey"] for step in run["stepStats"] if step["status"] == "FAILURE"] == ["daily_users"]
    assert not [step["stepKey"] for step in run["stepStats"] if step["status"] == "SUCCESS"]

    # The first failure-sensor tick after the failure sends the alert; wait for one more after it.
    wait_until(
        lambda: len(ticks_after(dagster_services, ALERT_SENSOR, run["endTime"])) >= 2,
        90,
        lambda: "two ticks of the failure sensor after the run failed" + daemon_log(dagster_services),
    )
    alerts = [payload for payload in webhook.payloads if payload.get("run_id") == run_id]
    assert len(alerts) == 1, alerts
    [alert] = alerts
    assert alert["job"] == "daily_users_job"
    assert alert["partition"] == ALERT_DAY
    assert alert["failed_steps"] == ["daily_users"]
    assert ERROR_MESSAGE in alert["error"]
    assert alert["run_url"].endswith(f"/runs/{run_id}")
    assert ALERT_DAY in alert["text"] and ERROR_MESSAGE in alert["text"]
    assert len(dagster_services.runs(tags=[{"key": "dagster/partition", "value": ALERT_DAY}])) == 1, (
        "a failed step's run is not retried"
    )

    assert partition_files(dagster_services.data_dir, ALERT_DAY) == failed_run.files_before
    assert open_warehouse(dagster_services.warehouse_url).read_partition(ALERT_DAY).equals(failed_run.rows_before)
