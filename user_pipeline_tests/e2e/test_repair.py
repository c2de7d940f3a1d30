"""End to end: with 3 of 7 days failed on a real daemon, one repair action launches one backfill
whose runs cover exactly those 3 days, and then all 7 days are materialized."""

import subprocess
import sys
import time

from user_pipeline_tools.dagster_services import REPO_ROOT

WEEK = [f"2026-07-{day:02d}" for day in range(1, 8)]
FAILED = ["2026-07-02", "2026-07-04", "2026-07-05"]


def users_table_days(services) -> set[str]:
    data = services.graphql(
        """query { assetNodes(assetKeys: [{path: ["users_table"]}]) {
             assetPartitionStatuses { ... on TimePartitionStatuses { ranges { startKey endKey status } } } } }"""
    )
    ranges = data["assetNodes"][0]["assetPartitionStatuses"]["ranges"]
    return {day for r in ranges if r["status"] == "MATERIALIZED" for day in WEEK if r["startKey"] <= day <= r["endKey"]}


def test_one_repair_action_reruns_exactly_the_failed_days(api_server, dagster_services):
    api_server.start()
    api_server.clear_faults()
    api_server.add_fault("error_body", seeds=FAILED)
    launched = dagster_services.dagster(
        "job",
        "backfill",
        "-w",
        "workspace.yaml",
        "-j",
        "daily_users_job",
        "--from",
        WEEK[0],
        "--to",
        WEEK[-1],
        "--noprompt",
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    runs = dagster_services.wait_for_runs(7, timeout=400)
    assert {run["tags"]["dagster/partition"] for run in runs if run["status"] == "FAILURE"} == set(FAILED)
    api_server.clear_faults()

    repair = subprocess.run(
        [
            sys.executable,
            "-m",
            "user_pipeline.automation.repair",
            "--from",
            WEEK[0],
            "--to",
            WEEK[-1],
            "--url",
            dagster_services.url,
        ],
        cwd=REPO_ROOT,
        env=dagster_services.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert repair.returncode == 0, repair.stderr
    assert "re-running 3 day(s)" in repair.stdout
    backfill_id = repair.stdout.strip().splitlines()[-1].removeprefix("launched backfill ")

    deadline = time.monotonic() + 400
    while users_table_days(dagster_services) != set(WEEK):
        assert time.monotonic() < deadline, f"repair did not complete: {users_table_days(dagster_services)}"
        time.sleep(2)
    repair_runs = dagster_services.wait_for_runs(
        1, timeout=120, tags=[{"key": "dagster/backfill", "value": backfill_id}]
    )
    covered = set()
    for run in repair_runs:
        assert run["status"] == "SUCCESS"
        tags = run["tags"]
        if "dagster/partition" in tags:
            covered.add(tags["dagster/partition"])
        else:
            start, end = tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
            covered |= {day for day in WEEK if start <= day <= end}
    assert covered == set(FAILED)
