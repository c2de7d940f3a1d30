"""End to end on a real daemon: with the users API down when users_api_sensor is switched on and
back later, the day's six assets materialize after it returns, each exactly once, in dependency
order, with no failed run; a day refused by a blocking check is not carried downstream; a late
day gives exactly one freshness alert naming the day and why, on a real webhook."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from user_pipeline.partitions import daily_partitions
from user_pipeline_tests.e2e.support import daemon_log, job_launch, sensor_ticks, start_sensor, wait_until
from user_pipeline_tools.dagster_services import TERMINAL_RUN_STATUSES

# What users_api_sensor requests: the latest closed day, and the day before it (both set again
# when the module starts, by `latest_day`).
DAY = daily_partitions.get_last_partition_key()
PREVIOUS_DAY = (date.fromisoformat(DAY) - timedelta(days=1)).isoformat()
REFUSED_DAY = "2026-10-10"
AUTOMATION_RUNNING = True  # the e2e services keep automation_condition_sensor running (conftest.py)
INGESTION = ("raw_users", "normalized_users", "users_table")
DOWNSTREAM = ("user_registry", "daily_users_report", "users_parquet")
ALL_ASSETS = (*INGESTION, *DOWNSTREAM)

MATERIALIZATIONS = """
query Materializations($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions) { partition runId timestamp } }
  }
}
"""


@pytest.fixture(scope="module", autouse=True)
def latest_day() -> None:
    """DAY as of the module's start, not of its import: pytest-xdist imports every module when a
    run begins, and a run begun before midnight UTC reaches this module after it."""
    global DAY, PREVIOUS_DAY
    DAY = daily_partitions.get_last_partition_key()
    PREVIOUS_DAY = (date.fromisoformat(DAY) - timedelta(days=1)).isoformat()


def services_env(root: Path) -> dict[str, str]:
    return {
        # The registry starts on the day before DAY, materialized below as yesterday's run would have.
        "USER_PIPELINE_REGISTRY_START_DATE": PREVIOUS_DAY,
        "USER_PIPELINE_ALERT_SENSOR_INTERVAL_SECONDS": "3",
        # Evaluated every 5 s rather than 30 s: the same conditions, less waiting in the test.
        "USER_PIPELINE_AUTOMATION_SENSOR_INTERVAL_SECONDS": "5",
        # Day D is due at midnight UTC: DAY is already late when the test starts.
        "USER_PIPELINE_FRESHNESS_DEADLINE_HOUR": "0",
    }


def materialized(services, asset: str, day: str) -> list[dict]:
    data = services.graphql(MATERIALIZATIONS, {"assetKey": {"path": [asset]}, "partitions": [day]})["assetOrError"]
    return data["assetMaterializations"] if data["__typename"] == "Asset" else []


def freshness_alerts(webhook) -> list[dict]:
    return [payload for payload in webhook.payloads if payload.get("kind") == "freshness"]


def all_runs_finished(services) -> bool:
    return all(run["status"] in TERMINAL_RUN_STATUSES for run in services.runs())


@pytest.fixture(scope="module")
def api_down_then_back(api_server):
    api_server.start()
    api_server.clear_faults()
    yield api_server
    api_server.start()
    api_server.clear_faults()


def test_a_day_runs_after_the_api_returns_each_asset_once_in_order_and_a_late_day_alerts_once(
    api_down_then_back, dagster_services, webhook
):
    api, services = api_down_then_back, dagster_services
    # Yesterday, as the pipeline would have left it: every asset of PREVIOUS_DAY, in the CLI's process.
    setup = services.dagster(
        "asset",
        "materialize",
        "-m",
        "user_pipeline.definitions",
        "--select",
        ",".join(ALL_ASSETS),
        "--partition",
        PREVIOUS_DAY,
    )
    assert setup.returncode == 0, setup.stderr[-3000:]
    setup_runs = {run["runId"] for run in services.runs()}

    # The freshness checks, run with that materialization, find DAY missing: one alert naming it and why.
    [alert] = wait_until(
        lambda: freshness_alerts(webhook),
        120,
        lambda: f"a freshness alert; got {webhook.payloads}" + daemon_log(services),
    )
    assert (alert["partition"], alert["status"], alert["alert_id"]) == (DAY, "missing", f"freshness/{DAY}")
    assert alert["assets"] == sorted(["users_table", *DOWNSTREAM])
    assert (
        alert["reason"]
        == "nothing materialized it: no run was launched for it (is users_api_sensor or daily_users_schedule running?)"
    )
    assert alert["deadline"] == f"{date.fromisoformat(DAY) + timedelta(days=1)} 00:00 UTC"
    # Dagster's sensor for them, as a user switches it on: it does not evaluate a failed check again
    # until its asset is materialized (which runs the check).
    start_sensor(services, "freshness_checks_sensor")

    api.stop()
    start_sensor(services, "users_api_sensor")

    def skipped_twice():
        ticks = [tick for tick in sensor_ticks(services, "users_api_sensor") if tick["status"] == "SKIPPED"]
        return len(ticks) >= 2 and ticks

    ticks = wait_until(skipped_twice, 120, "two skipped ticks of users_api_sensor" + daemon_log(services))
    assert all("is unavailable" in tick["skipReason"] for tick in ticks), ticks
    assert not [run for run in services.runs() if run["jobName"] == "daily_users_job"]

    api.start()

    def day_done():
        return all(materialized(services, asset, DAY) for asset in ALL_ASSETS) and all_runs_finished(services)

    wait_until(
        day_done,
        420,
        lambda: (
            f"{DAY} in every asset: {[(a, len(materialized(services, a, DAY))) for a in ALL_ASSETS]}"
            + daemon_log(services)
        ),
        interval=2,
    )
    events = {asset: materialized(services, asset, DAY) for asset in ALL_ASSETS}
    assert {asset: len(found) for asset, found in events.items()} == dict.fromkeys(ALL_ASSETS, 1)
    at = {asset: float(found[0]["timestamp"]) for asset, found in events.items()}
    assert at["raw_users"] < at["normalized_users"] < at["users_table"]
    assert all(at["normalized_users"] < at[asset] for asset in DOWNSTREAM)
    assert at["user_registry"] > float(materialized(services, "user_registry", PREVIOUS_DAY)[0]["timestamp"])
    new_runs = [run for run in services.runs() if run["runId"] not in setup_runs]
    assert [run for run in new_runs if run["status"] != "SUCCESS"] == []
    ingestion = [run for run in new_runs if run["jobName"] == "daily_users_job"]
    assert [run["tags"].get("dagster/partition") for run in ingestion] == [DAY]
    automation = [run for run in new_runs if run["tags"].get("dagster/sensor_name") == "automation_condition_sensor"]
    assert {run["runId"] for run in automation} == {
        found[0]["runId"] for asset, found in events.items() if asset in DOWNSTREAM
    }

    # A few more ticks of each sensor: nothing runs again, and the late day was alerted once.
    ticks_before = len(sensor_ticks(services, "automation_condition_sensor", limit=200))
    wait_until(
        lambda: len(sensor_ticks(services, "automation_condition_sensor", limit=200)) >= ticks_before + 2,
        120,
        "two more automation ticks",
    )
    assert {asset: len(materialized(services, asset, DAY)) for asset in ALL_ASSETS} == dict.fromkeys(ALL_ASSETS, 1)
    assert freshness_alerts(webhook) == [alert]


def test_a_day_refused_by_a_blocking_check_is_not_carried_downstream(api_down_then_back, dagster_services, webhook):
    api, services = api_down_then_back, dagster_services
    api.start()
    sent = requests.get(api.base_url, params={"seed": REFUSED_DAY, "results": 20}, timeout=30).json()["results"]
    # Two users share a login.uuid: the blocking check user_ids_unique fails for the day.
    api.add_fault("alter_users", seeds=[REFUSED_DAY], users=[7], set={"login.uuid": sent[2]["login"]["uuid"]})
    launched = job_launch(services, REFUSED_DAY)
    assert launched.returncode == 0, launched.stderr[-3000:]
    [run] = services.wait_for_runs(1, timeout=300, tags=[{"key": "dagster/partition", "value": REFUSED_DAY}])
    assert run["status"] == "FAILURE"
    api.clear_faults()

    ticks_before = len(sensor_ticks(services, "automation_condition_sensor", limit=200))
    wait_until(
        lambda: len(sensor_ticks(services, "automation_condition_sensor", limit=200)) >= ticks_before + 2,
        120,
        "two more automation ticks",
    )
    assert all_runs_finished(services)
    assert [asset for asset in ("users_table", *DOWNSTREAM) if materialized(services, asset, REFUSED_DAY)] == []
    runs_of_day = services.runs(tags=[{"key": "dagster/partition", "value": REFUSED_DAY}])
    assert [r["runId"] for r in runs_of_day] == [run["runId"]]
