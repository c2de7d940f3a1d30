"""`make demo`'s runs are on the Overview timeline of the UI started on its instance, not only under Runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from user_pipeline.partitions import daily_partitions
from user_pipeline_tools.dagster_services import REPO_ROOT, DagsterServices
from user_pipeline_tools.randomuser_server.launcher import free_port

DAYS = 3

# The Overview timeline's queries, as dagster-webserver 1.13's UI sends them
# (ui-core/src/runs/useRunsForTimeline.tsx: COMPLETED_RUN_TIMELINE_QUERY with RunTimelineFragment,
# and FUTURE_TICKS_QUERY for the workspace's jobs). The UI drops every run whose
# `repositoryOrigin` is null, and draws the others in the row of their location and job.
COMPLETED_RUN_TIMELINE_QUERY = """
query CompletedRunTimelineQuery($completedFilter: RunsFilter!, $limit: Int!, $cursor: String) {
  completed: runsOrError(filter: $completedFilter, limit: $limit, cursor: $cursor) {
    ... on Runs {
      results {
        id pipelineName externalJobSource
        tags { key value }
        repositoryOrigin { id repositoryName repositoryLocationName }
        status startTime endTime updateTime
      }
    }
  }
}
"""
WORKSPACE_JOBS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  ... on RepositoryLocation { name repositories { name pipelines { name } } } } } } } }
"""
DONE_STATUSES = ["SUCCESS", "FAILURE", "CANCELED"]


def timeline_rows(services: DagsterServices, since: float) -> dict[tuple[str, str, str], set[str]]:
    """What the Overview timeline draws: (location, repository, job) -> the partitions of its runs."""
    variables = {
        "completedFilter": {"statuses": DONE_STATUSES, "updatedAfter": since, "updatedBefore": time.time() + 1},
        "limit": 500,
    }
    runs = services.graphql(COMPLETED_RUN_TIMELINE_QUERY, variables)["completed"]["results"]
    workspace_jobs = {
        (entry["name"], repository["name"], job["name"])
        for entry in services.graphql(WORKSPACE_JOBS_QUERY)["workspaceOrError"]["locationEntries"]
        for repository in entry["locationOrLoadError"]["repositories"]
        for job in repository["pipelines"]
    }
    rows: dict[tuple[str, str, str], set[str]] = {}
    for run in runs:
        origin = run["repositoryOrigin"]
        if origin is None or run["startTime"] is None:
            continue
        key = (origin["repositoryLocationName"], origin["repositoryName"], run["pipelineName"])
        assert key in workspace_jobs, f"run {run['id']} is drawn in a row the workspace does not have: {key}"
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        rows.setdefault(key, set()).add(tags.get("dagster/partition", ""))
    return rows


def test_demo_runs_are_on_the_overview_timeline(tmp_path: Path):
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "USER_PIPELINE_DATA_DIR": str(data),
    }
    home.mkdir()
    (home / "dagster.yaml").write_bytes((REPO_ROOT / "dagster_home" / "dagster.yaml").read_bytes())
    started = time.time()
    # The demo's days are the last DAYS closed days when it starts: those before it starts, or the
    # next ones if midnight UTC passes in between (a CI run at midnight saw the latter).
    last_days_before = daily_partitions.get_partition_keys()[-DAYS:]
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "user_pipeline_tools.demo",
            "--days",
            str(DAYS),
            "--users",
            "5",
            "--api-port",
            str(free_port()),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    days = re.findall(r"^(\d{4}-\d{2}-\d{2}): ok, 5 rows in the users table$", demo.stdout, flags=re.M)
    assert days in (last_days_before, daily_partitions.get_partition_keys()[-DAYS:]), demo.stdout

    with DagsterServices(home, {"USER_PIPELINE_DATA_DIR": str(data)}) as services:
        rows = timeline_rows(services, since=started - 1)
    # The ingestion's runs, one per day, then the automation's (report and Parquet of those days:
    # one run over the range, launched by automation_condition_sensor, drawn as an asset job).
    assert rows.pop(("user_pipeline", "__repository__", "daily_users_job")) == set(days), rows
    assert set(rows) == {("user_pipeline", "__repository__", "__ASSET_JOB")}, rows
    followed = [line for line in demo.stdout.splitlines() if line.startswith("then, by automation: ")]
    assert followed and all(line.endswith(": ok") for line in followed), demo.stdout
    assert {"daily_users_report", "users_parquet"} <= {
        asset for line in followed for asset in line.removeprefix("then, by automation: ").split(" for ")[0].split(", ")
    }, demo.stdout
