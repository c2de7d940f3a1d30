"""Helpers of the end-to-end tests: GraphQL reads, the graphql_triggers CLI, in-process reference runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pandas as pd

from user_pipeline.graphql_triggers import DagsterGraphQL
from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import (
    DayLimits,
    PartitionFiles,
    RandomUserApi,
    WarehouseResource,
)
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.e2e.conftest import USERS_PER_PARTITION
from user_pipeline_tools.dagster_services import (
    REPO_ROOT,
    TERMINAL_RUN_STATUSES,
    DagsterServices,
)

T = TypeVar("T")
DAILY_ASSETS = ("raw_users", "normalized_users", "users_table")
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId status jobName parentRunId rootRunId creationTime startTime endTime stepKeysToExecute
      tags { key value }
      stepStats { stepKey status startTime endTime }
    }
    ... on Error { message }
  }
}
"""

LOGS_QUERY = """
query Logs($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message level timestamp }
        ... on StepEvent { stepKey }
        ... on ErrorEvent { error { message stack } }
        ... on DisplayableEvent {
          label description
          metadataEntries {
            label description
            ... on TextMetadataEntry { text }
            ... on PathMetadataEntry { path }
            ... on UrlMetadataEntry { url }
            ... on MarkdownMetadataEntry { mdStr }
            ... on JsonMetadataEntry { jsonString }
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""

MATERIALIZATIONS_QUERY = """
query Materializations($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions) { partition runId } }
  }
}
"""

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!, $limit: Int) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      jobOriginId
      sensorState { selectorId status ticks(limit: $limit) { tickId status timestamp skipReason runIds error { message } } }
    }
    ... on Error { message }
  }
}
"""

START_SENSOR_MUTATION = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on Error { message }
  }
}
"""

STOP_SENSOR_MUTATION = """
mutation Stop($jobOriginId: String!, $jobSelectorId: String!) {
  stopSensor(jobOriginId: $jobOriginId, jobSelectorId: $jobSelectorId) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on Error { message }
  }
}
"""


def days(first: str, count: int) -> list[str]:
    start = date.fromisoformat(first)
    return [(start + timedelta(days=offset)).isoformat() for offset in range(count)]


def wait_until(check: Callable[[], T], timeout: float, what: str | Callable[[], str], interval: float = 1.0) -> T:
    """Polls `check` until it returns something truthy; fails naming `what` (a text, or a
    function giving it, e.g. with the daemon's latest log) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what() if callable(what) else what}")
        time.sleep(interval)


def daemon_log(services: DagsterServices) -> str:
    return f"\n--- daemon log (end) ---\n{services.logs('daemon')[-3000:]}"


def job_launch(services: DagsterServices, day: str, job: str = "daily_users_job") -> subprocess.CompletedProcess:
    """The README's `dagster job launch -w workspace.yaml -j JOB --tags '{"dagster/partition": DAY}'`
    against the services (queued for their daemon); the finished CLI process."""
    return services.dagster(
        "job", "launch", "-w", "workspace.yaml", "-j", job, "--tags", json.dumps({"dagster/partition": day})
    )


def graphql_triggers(services: DagsterServices, *args: str) -> subprocess.CompletedProcess:
    """`python -m user_pipeline.graphql_triggers --url <webserver> ARGS`, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "user_pipeline.graphql_triggers", "--url", services.url, *args],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def trigger(services: DagsterServices, *args: str) -> str:
    """Runs graphql_triggers, asserts it succeeded, returns the id it printed."""
    result = graphql_triggers(services, *args)
    assert result.returncode == 0, f"graphql_triggers {' '.join(args)} failed:\n{result.stderr}"
    printed = result.stdout.strip()
    assert printed and len(printed.split()) == 1, f"expected one id on stdout, got {result.stdout!r}"
    return printed


def run_info(services: DagsterServices, run_id: str) -> dict[str, Any]:
    """A run's status, tags, timestamps and step stats, as the UI's run page reads them."""
    data = services.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
    assert data["__typename"] == "Run", data
    return {**data, "tags": {tag["key"]: tag["value"] for tag in data["tags"]}}


def run_days(run: dict[str, Any]) -> list[str]:
    """The days a run covers: its dagster/partition, or every day of its partition range (a
    backfill run under the assets' multi-day backfill policy)."""
    tags = run["tags"]
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    first, last = date.fromisoformat(tags[RANGE_START_TAG]), date.fromisoformat(tags[RANGE_END_TAG])
    return days(first.isoformat(), (last - first).days + 1)


def wait_for_backfill_runs(
    services: DagsterServices, backfill_id: str, partitions: list[str], timeout: float = 300
) -> list[dict[str, Any]]:
    """The backfill's runs, once they cover every one of `partitions` and have all finished; by first day."""

    def finished() -> list[dict[str, Any]] | None:
        runs = services.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}])
        covered = {day for run in runs for day in run_days(run)}
        done = covered >= set(partitions) and all(run["status"] in TERMINAL_RUN_STATUSES for run in runs)
        return sorted(runs, key=lambda run: run_days(run)[0]) if done else None

    return wait_until(finished, timeout, lambda: f"backfill {backfill_id} to run {partitions}" + daemon_log(services))


def wait_for_run(services: DagsterServices, run_id: str, timeout: float = 240) -> dict[str, Any]:
    return wait_until(
        lambda: (details := run_info(services, run_id))["status"] in TERMINAL_RUN_STATUSES and details,
        timeout,
        lambda: f"run {run_id} to finish" + daemon_log(services),
    )


def run_events(services: DagsterServices, run_id: str) -> list[dict[str, Any]]:
    """The run's whole event log, as the UI's run page reads it."""
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = services.graphql(LOGS_QUERY, {"runId": run_id, "cursor": cursor})["logsForRun"]
        assert page["__typename"] == "EventConnection", page
        events.extend(page["events"])
        cursor = page["cursor"]
        if not page["hasMore"]:
            return events


def executed_steps(services: DagsterServices, run_id: str) -> list[str]:
    """The steps that started in the run (ExecutionStepStartEvent), in order."""
    return [
        event["stepKey"] for event in run_events(services, run_id) if event["__typename"] == "ExecutionStepStartEvent"
    ]


def materializations(services: DagsterServices, asset: str, partitions: list[str]) -> dict[str, set[str]]:
    """partition -> ids of the runs that materialized `asset` for it."""
    data = services.graphql(MATERIALIZATIONS_QUERY, {"assetKey": {"path": [asset]}, "partitions": partitions})[
        "assetOrError"
    ]
    if data["__typename"] != "Asset":
        return {}
    found: dict[str, set[str]] = {}
    for event in data["assetMaterializations"]:
        found.setdefault(event["partition"], set()).add(event["runId"])
    return found


# -- sensors -------------------------------------------------------------------


def sensor_selector(services: DagsterServices, name: str) -> dict[str, str]:
    job = DagsterGraphQL(services.url).find_job("daily_users_job")  # The sensors live in the same repository.
    return {**job.repository_selector, "sensorName": name}


def sensor(services: DagsterServices, name: str, limit: int = 50) -> dict[str, Any]:
    data = services.graphql(SENSOR_QUERY, {"selector": sensor_selector(services, name), "limit": limit})[
        "sensorOrError"
    ]
    assert data["__typename"] == "Sensor", data
    return data


def sensor_ticks(services: DagsterServices, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The sensor's ticks, oldest first."""
    return sorted(sensor(services, name, limit)["sensorState"]["ticks"], key=lambda tick: tick["timestamp"])


def start_sensor(services: DagsterServices, name: str) -> None:
    data = services.graphql(START_SENSOR_MUTATION, {"selector": sensor_selector(services, name)})["startSensor"]
    assert data["__typename"] == "Sensor" and data["sensorState"]["status"] == "RUNNING", data


def stop_sensor(services: DagsterServices, name: str, timeout: float = 120) -> None:
    """Stops the sensor, and makes sure it stays stopped: a tick under way when the stop lands
    writes back, as it ends, the sensor state it read when it began (Dagster 1.13's daemon), so
    the sensor runs again. The stop is sent again until the sensor is STOPPED with no tick under
    way, twice a moment apart (reproduced by stopping during a tick: it was RUNNING 15 s later)."""
    deadline = time.monotonic() + timeout
    confirmed = 0
    while confirmed < 2:
        state = sensor(services, name, limit=1)
        ticking = [tick for tick in state["sensorState"]["ticks"] if tick["status"] == "STARTED"]
        if state["sensorState"]["status"] == "STOPPED" and not ticking:
            confirmed += 1
        else:
            confirmed = 0
            if state["sensorState"]["status"] != "STOPPED":
                data = services.graphql(
                    STOP_SENSOR_MUTATION,
                    {"jobOriginId": state["jobOriginId"], "jobSelectorId": state["sensorState"]["selectorId"]},
                )["stopSensor"]
                assert data["__typename"] == "StopSensorMutationResult", data
        assert time.monotonic() < deadline, f"{name} did not stay stopped within {timeout:.0f}s: {state}"
        time.sleep(1.5)


# -- data ------------------------------------------------------------------------


def materialize_in_process(
    api_url: str, data_dir: Path, partitions: Iterable[str], warehouse_url: str | None = None
) -> str:
    """Materializes the daily assets for each day with `dg.materialize`, one day at a time,
    with the e2e services' settings; returns the warehouse URL."""
    warehouse_url = warehouse_url or f"sqlite:///{data_dir}/warehouse.sqlite"
    resources = {
        "users_api": RandomUserApi(base_url=api_url, users_per_partition=USERS_PER_PARTITION),
        "files": PartitionFiles(data_dir=str(data_dir)),
        "warehouse": WarehouseResource(url=warehouse_url),
        "day_limits": DayLimits(),
    }
    with dg.instance_for_test() as instance:
        for day in partitions:
            result = dg.materialize([daily_users], partition_key=day, resources=resources, instance=instance)
            assert result.success, day
    return warehouse_url


def partition_files(data_dir: Path, day: str) -> dict[str, bytes]:
    return {
        "raw_users": (data_dir / "raw_users" / f"{day}.jsonl").read_bytes(),
        "normalized_users": (data_dir / "normalized_users" / f"{day}.csv").read_bytes(),
    }


def assert_same_partition(
    day: str, data_dir: Path, warehouse_url: str, expected_dir: Path, expected_warehouse_url: str
) -> None:
    """The day's files are byte-identical and its table rows equal to the reference's."""
    actual, expected = partition_files(data_dir, day), partition_files(expected_dir, day)
    for name in expected:
        assert actual[name] == expected[name], f"{name} of {day} differs from the in-process run's"
    rows = open_warehouse(warehouse_url).read_partition(day)
    expected_rows = open_warehouse(expected_warehouse_url).read_partition(day)
    assert len(expected_rows) > 0
    pd.testing.assert_frame_equal(rows.reset_index(drop=True), expected_rows.reset_index(drop=True))
