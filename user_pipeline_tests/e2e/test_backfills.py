"""Runs and backfills from the dagster CLI and graphql_triggers: every day lands as single in-process
runs make it, a range launched as one run is one run, registry days go in date order, errors exit
non-zero."""

import itertools
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from user_pipeline.users.normalize import read_normalized_csv
from user_pipeline.users.registry import empty_registry, update_registry, write_registry
from user_pipeline_tests.e2e.support import (
    DAILY_ASSETS,
    assert_same_partition,
    daemon_log,
    days,
    graphql_triggers,
    materializations,
    materialize_in_process,
    run_days,
    run_events,
    run_info,
    trigger,
    wait_for_backfill_runs,
    wait_for_run,
)
from user_pipeline_tools.dagster_services import BIN_DIR, REPO_ROOT, DagsterServices

CLI_DAYS = days("2026-10-02", 5)
GRAPHQL_DAYS = days("2026-10-09", 5)
REGISTRY_DAYS = days("2026-10-16", 3)
# Launched as ONE run over the range (graphql_triggers launch-run --from/--to, the UI's "Single run").
RANGE_DAYS = days("2026-10-23", 3)
# Its users are ingested, but the registry of the day before it (2026-10-19) is never built.
REGISTRY_GAP_DAY = "2026-10-20"


def services_env(root: Path) -> dict[str, str]:
    return {"USER_PIPELINE_REGISTRY_START_DATE": REGISTRY_DAYS[0]}


def cli_backfill_process(services: DagsterServices, job: str, partitions: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN_DIR / "dagster"),
            "job",
            "backfill",
            "-w",
            "workspace.yaml",
            "-j",
            job,
            "--from",
            partitions[0],
            "--to",
            partitions[-1],
            "--noprompt",
        ],
        cwd=REPO_ROOT,
        env=services.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_backfill_id(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    launched = re.search(r"Launched backfill job `([^`]+)`", stdout)
    assert launched, stdout
    return launched.group(1)


def assert_every_day_run_once_and_succeeded(
    services: DagsterServices, runs: list[dict], job: str, partitions: list[str]
) -> None:
    assert sorted(day for run in runs for day in run_days(run)) == partitions, "each day is run exactly once"
    assert {run["jobName"] for run in runs} == {job}
    failed = [(run_days(run), run["status"]) for run in runs if run["status"] != "SUCCESS"]
    assert not failed, f"{failed}{daemon_log(services)}"


@dataclass
class Reference:
    """What single in-process runs (`dg.materialize`, one day each) write for the backfilled days."""

    data_dir: Path
    warehouse_url: str


def assert_backfill_landed(
    services: DagsterServices, runs: list[dict], partitions: list[str], reference: Reference
) -> None:
    """Every day SUCCESS and materialized by the backfill, and its data equal to an in-process run's."""
    assert_every_day_run_once_and_succeeded(services, runs, "daily_users_job", partitions)
    # A job backfill's runs carry the job's run tags: the ingestion's maximum run time among them.
    assert {run["tags"].get("dagster/max_runtime") for run in runs} == {"3600"}
    run_of_day = {day: {run["runId"]} for run in runs for day in run_days(run)}
    for asset in DAILY_ASSETS:
        materialized = materializations(services, asset, partitions)
        assert {day: materialized.get(day) for day in partitions} == run_of_day, (
            f"{asset} is not materialized once per day by the backfill"
        )
    for day in partitions:
        assert_same_partition(
            day, services.data_dir, services.warehouse_url, reference.data_dir, reference.warehouse_url
        )


@dataclass
class Launched:
    cli_backfill: subprocess.Popen
    registry_cli_backfill: subprocess.Popen
    graphql_backfill_id: str
    registry_gap_run_id: str
    range_run_id: str
    reference: Reference


@pytest.fixture(scope="module")
def launched(api_server, dagster_services, tmp_path_factory) -> Iterator[Launched]:
    """Every run of the module, launched at its start so that they run side by side:
    `dagster job backfill` of daily_users_job and of user_registry_job (in the background: each
    submits one run per day and exits), a GraphQL backfill of daily_users_job, and a registry run
    of a day whose previous day has no registry. While the daemon runs them, the backfilled days
    are materialized in process, one day per run, into another folder and warehouse."""
    api_server.start()
    api_server.clear_faults()
    cli_backfill = cli_backfill_process(dagster_services, "daily_users_job", CLI_DAYS)
    # The registry's days (and the gap day) are ingested first, in process, into the same data.
    materialize_in_process(
        api_server.base_url,
        dagster_services.data_dir,
        [*REGISTRY_DAYS, REGISTRY_GAP_DAY],
        dagster_services.warehouse_url,
    )
    registry_cli_backfill = cli_backfill_process(dagster_services, "user_registry_job", REGISTRY_DAYS)
    graphql_backfill_id = trigger(
        dagster_services, "backfill", "--job", "daily_users_job", "--from", GRAPHQL_DAYS[0], "--to", GRAPHQL_DAYS[-1]
    )
    registry_gap_run_id = trigger(
        dagster_services, "launch-run", "--job", "user_registry_job", "--partition", REGISTRY_GAP_DAY
    )
    range_run_id = trigger(
        dagster_services, "launch-run", "--job", "daily_users_job", "--from", RANGE_DAYS[0], "--to", RANGE_DAYS[-1]
    )
    reference_dir = tmp_path_factory.mktemp("reference")
    reference = Reference(
        reference_dir,
        materialize_in_process(api_server.base_url, reference_dir, [*CLI_DAYS, *GRAPHQL_DAYS, *RANGE_DAYS]),
    )
    yield Launched(
        cli_backfill, registry_cli_backfill, graphql_backfill_id, registry_gap_run_id, range_run_id, reference
    )
    for process in (cli_backfill, registry_cli_backfill):
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_graphql_backfill_lands_every_day_as_single_in_process_runs_do(users_api_server, dagster_services, launched):
    runs = wait_for_backfill_runs(dagster_services, launched.graphql_backfill_id, GRAPHQL_DAYS)
    assert_backfill_landed(dagster_services, runs, GRAPHQL_DAYS, launched.reference)


def test_a_range_launched_as_one_run_is_one_run_and_lands_every_day(users_api_server, dagster_services, launched):
    run = wait_for_run(dagster_services, launched.range_run_id)
    assert run["status"] == "SUCCESS", daemon_log(dagster_services)
    assert run_days(run) == RANGE_DAYS
    ingestion_runs = [each for each in dagster_services.runs() if each["jobName"] == "daily_users_job"]
    assert [each["runId"] for each in ingestion_runs if set(run_days(each)) & set(RANGE_DAYS)] == [
        launched.range_run_id
    ], "the range is one run, not a backfill of one run per day"
    assert_backfill_landed(dagster_services, [run], RANGE_DAYS, launched.reference)


def test_registry_cli_backfill_runs_one_day_at_a_time_in_date_order(
    users_api_server, dagster_services, launched, tmp_path
):
    backfill_id = cli_backfill_id(launched.registry_cli_backfill)
    runs = wait_for_backfill_runs(dagster_services, backfill_id, REGISTRY_DAYS)
    assert_every_day_run_once_and_succeeded(dagster_services, runs, "user_registry_job", REGISTRY_DAYS)
    # One run per day, queued one at a time (the instance's user_pipeline/sequential limit), oldest first.
    details = sorted((run_info(dagster_services, each["runId"]) for each in runs), key=lambda each: each["startTime"])
    assert [run_days(each) for each in details] == [[day] for day in REGISTRY_DAYS]
    for previous, current in itertools.pairwise(details):
        assert current["startTime"] >= previous["endTime"], (
            f"{run_days(current)} started before {run_days(previous)} ended"
        )
    # Each day's registry is the previous day's updated with the day's users, from empty on the first day.
    registry = empty_registry()
    for day in REGISTRY_DAYS:
        registry = update_registry(
            registry, read_normalized_csv(dagster_services.data_dir / "normalized_users" / f"{day}.csv"), day
        )
        write_registry(registry, tmp_path / f"{day}.csv")
        assert (dagster_services.data_dir / "user_registry" / f"{day}.csv").read_bytes() == (
            tmp_path / f"{day}.csv"
        ).read_bytes(), day
    assert set(registry["first_seen"]) == set(REGISTRY_DAYS)


def test_registry_run_for_a_day_whose_previous_day_is_missing_fails_and_says_so(
    users_api_server, dagster_services, launched
):
    previous_day = "2026-10-19"
    assert (dagster_services.data_dir / "normalized_users" / f"{REGISTRY_GAP_DAY}.csv").exists()
    assert not (dagster_services.data_dir / "user_registry" / f"{previous_day}.csv").exists()
    run_id = launched.registry_gap_run_id
    assert wait_for_run(dagster_services, run_id)["status"] == "FAILURE"
    failures = [
        event for event in run_events(dagster_services, run_id) if event["__typename"] == "ExecutionStepFailureEvent"
    ]
    assert [event["stepKey"] for event in failures] == ["user_registry"]
    assert f"user_registry {REGISTRY_GAP_DAY} needs user_registry {previous_day}" in failures[0]["error"]["message"]
    assert not (dagster_services.data_dir / "user_registry" / f"{REGISTRY_GAP_DAY}.csv").exists()


def test_cli_backfill_lands_every_day_as_single_in_process_runs_do(users_api_server, dagster_services, launched):
    runs = wait_for_backfill_runs(dagster_services, cli_backfill_id(launched.cli_backfill), CLI_DAYS)
    assert all("dagster/partition" in each["tags"] for each in runs), "dagster job backfill runs one run per day"
    assert_backfill_landed(dagster_services, runs, CLI_DAYS, launched.reference)


def test_graphql_triggers_exits_non_zero_with_the_error_and_launches_nothing(dagster_services):
    runs_before = len(dagster_services.runs())
    failures = {
        ("launch-run", "--job", "no_such_job", "--partition", "2026-10-02"): "no job named 'no_such_job'",
        ("launch-run", "--job", "daily_users_job", "--partition", "2031-01-01"): "no partition '2031-01-01'",
        ("backfill", "--job", "daily_users_job", "--from", "2026-10-05", "--to", "2026-10-01"): "is after --to",
        ("launch-run", "--job", "daily_users_job", "--from", "2026-10-05", "--to", "2026-10-01"): "is after --to",
        ("launch-run", "--job", "daily_users_job", "--from", "2026-10-05"): "--from and --to go together",
        ("launch-run", "--job", "daily_users_job", "--from", "2026-10-01", "--to", "2031-01-01"): "no partition '2031",
        (
            "launch-run",
            "--job",
            "daily_users_job",
            "--partition",
            "2026-10-02",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-03",
        ): "not both",
        (
            "launch-run",
            "--job",
            "daily_users_job",
            "--partition",
            "2026-10-02",
            "--config-json",
            '{"execution": {"config": {"bogus": {}}}}',
        ): 'RunConfigValidationInvalid: Received unexpected config entry "bogus"',
        # The webserver's own message (a PythonError, with HTTP 500).
        (
            "reexecute",
            "--run-id",
            "00000000-0000-0000-0000-000000000000",
            "--from-failure",
        ): "Could not find parent run with id: 00000000-0000-0000-0000-000000000000",
    }
    for args, message in failures.items():
        result = graphql_triggers(dagster_services, *args)
        assert (result.returncode, result.stdout) == (1, ""), (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
    assert len(dagster_services.runs()) == runs_before
