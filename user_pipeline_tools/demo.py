"""The offline demo: the bundled API server, the last few days materialized, where it all went.

    python -m user_pipeline_tools.demo [--days 3] [--users 100] [--api-port 8765]

The days are launched the way the UI and the daemon launch runs, through the workspace
(`dagster job backfill -w workspace.yaml`, one run per day), and executed by a `dagster-daemon`
on the DAGSTER_HOME instance: the demo's own, stopped at the end, or the one already running there
(`make ui`). So each run records the code location `user_pipeline` as its origin, and `make ui`
shows it under Runs, on the assets' pages and on the Overview timeline (the timeline draws only
runs that have a code-location origin: `repositoryOrigin` of dagster-webserver's
`CompletedRunTimelineQuery`; a run of `execute_in_process`, `dg launch` or `dagster job execute`
has none).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
DEMO_API_PORT = 8765
RUNS_TIMEOUT_SECONDS = 600
DAEMON_STOP_SECONDS = 30
# The automation condition sensor ticks every 30 s: a tick after the ingestion launches the rest.
AUTOMATION_WAIT_SECONDS = 75


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m user_pipeline_tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3, help="how many of the latest daily partitions")
    parser.add_argument("--users", type=int, default=100, help="users per partition")
    parser.add_argument("--api-port", type=int, default=DEMO_API_PORT, help="the bundled API server's port")
    args = parser.parse_args(argv)

    from user_pipeline_tools.randomuser_server.launcher import RandomUserServer

    with RandomUserServer(port=args.api_port) as api:
        # Inherited by the daemon, its code server and the run processes, which read them when
        # they load the definitions.
        os.environ["USER_PIPELINE_API_URL"] = api.base_url
        os.environ["USER_PIPELINE_USERS_PER_PARTITION"] = str(args.users)
        import dagster as dg

        from user_pipeline.definitions import data_dir, defs
        from user_pipeline.partitions import daily_partitions

        partition_keys = daily_partitions.get_partition_keys()[-args.days :]
        # Built as a run builds it: a warehouse URL bound to USER_PIPELINE_WAREHOUSE_URL is resolved.
        with dg.build_resources({"warehouse": defs().resources["warehouse"]}) as built:
            warehouse = built.warehouse.open()
        data = data_dir()
        # Creates (or migrates) the instance's storage before the daemon and the CLI open it together.
        with dg.DagsterInstance.get() as instance:
            with _daemon() as daemon:
                backfill_id = _launch_days(partition_keys)
                runs = _wait_for_runs(instance, backfill_id, len(partition_keys))
                followed = []
                if daemon.process is not None:
                    # The demo's own daemon is stopped at the end: first let the automation's runs of
                    # these days (report, Parquet: automation_condition_sensor) start and finish.
                    followed = _wait_for_automation(instance, [run.run_id for run in runs.values()])
            for partition_key in partition_keys:
                run = runs[partition_key]
                status = "ok" if run.status == dg.DagsterRunStatus.SUCCESS else f"{run.status.value} (run {run.run_id})"
                print(
                    f"{partition_key}: {status}, {warehouse.count_rows(partition_key)} rows in the users table",
                    flush=True,
                )
            for run in followed:
                assets = ", ".join(sorted(key.to_user_string() for key in run.asset_selection or ())) or run.job_name
                status = "ok" if run.status == dg.DagsterRunStatus.SUCCESS else f"{run.status.value} (run {run.run_id})"
                print(
                    f"then, by automation: {assets} for {run.tags.get('dagster/partition', 'the new days')}: {status}"
                )
            if any(run.status != dg.DagsterRunStatus.SUCCESS for run in [*runs.values(), *followed]):
                return 1

    print(f"\nData:      {data}/raw_users, {data}/normalized_users")
    print(f"Warehouse: {warehouse.display_url} (table users, view users_latest)")
    print(f"Instance:  {os.environ.get('DAGSTER_HOME', '(ephemeral)')}")
    print("UI:        make ui   (then open http://127.0.0.1:3000: Runs, Assets, Overview > Timeline)")
    return 0


class _daemon:
    """A `dagster-daemon run -w workspace.yaml` for the demo's runs, unless one is already live on
    the instance (two daemons on one instance would both tick its sensors and schedules)."""

    def __enter__(self) -> _daemon:
        self.process: subprocess.Popen | None = None
        live = subprocess.run(
            [str(BIN_DIR / "dagster-daemon"), "liveness-check"], cwd=PROJECT_ROOT, capture_output=True, text=True
        )
        if live.returncode == 0:
            print("A dagster-daemon is already running on this instance: it executes the demo's runs.", flush=True)
            return self
        self.log = open(Path(os.environ.get("DAGSTER_HOME", ".")) / "demo-daemon.log", "wb")
        self.process = subprocess.Popen(
            [str(BIN_DIR / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=PROJECT_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        # The daemon, its code server and any run still going share the daemon's process group.
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=DAEMON_STOP_SECONDS)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def _launch_days(partition_keys: list[str]) -> str:
    """Submits one run per day through the workspace, as `dagster job backfill` documents; returns
    the backfill id (every run is tagged `dagster/backfill` with it)."""
    launched = subprocess.run(
        [
            str(BIN_DIR / "dagster"),
            "job",
            "backfill",
            "-w",
            "workspace.yaml",
            "-j",
            "daily_users_job",
            "--from",
            partition_keys[0],
            "--to",
            partition_keys[-1],
            "--noprompt",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    match = re.search(r"Launched backfill job `([^`]+)`", launched.stdout)
    if launched.returncode != 0 or match is None:
        raise RuntimeError(f"dagster job backfill failed ({launched.returncode}):\n{launched.stdout}{launched.stderr}")
    return match.group(1)


def _wait_for_automation(instance, ingestion_run_ids: list[str]) -> list:
    """The runs started after the ingestion (the automation's: the days' report and Parquet), once
    they have all finished; none if the automation launched nothing within AUTOMATION_WAIT_SECONDS
    (it evaluates every 30 s; stopped with `dagster sensor stop automation_condition_sensor`)."""
    import dagster as dg

    ingestion_ended = (
        max(
            (record.end_time or 0 for record in instance.get_run_records(dg.RunsFilter(run_ids=ingestion_run_ids))),
            default=0,
        )
        or time.time()
    )
    deadline = time.monotonic() + AUTOMATION_WAIT_SECONDS
    print("Waiting for the automation to follow the new days (report, Parquet) ...", flush=True)
    while True:
        later = [
            record.dagster_run
            for record in instance.get_run_records(dg.RunsFilter(created_after=_utc(ingestion_ended)))
        ]
        if later and all(run.is_finished for run in later):
            return later
        if not later and time.monotonic() > deadline:
            print("  the automation launched nothing (is automation_condition_sensor stopped?)", flush=True)
            return []
        if time.monotonic() > deadline + RUNS_TIMEOUT_SECONDS:
            raise TimeoutError(f"the automation's runs did not finish within {RUNS_TIMEOUT_SECONDS} s")
        time.sleep(1)


def _utc(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)


def _wait_for_runs(instance, backfill_id: str, count: int) -> dict:
    """Waits until the backfill's runs have finished; returns them by partition key."""
    import dagster as dg

    deadline = time.monotonic() + RUNS_TIMEOUT_SECONDS
    while True:
        runs = [
            record.dagster_run
            for record in instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        ]
        if len(runs) >= count and all(run.is_finished for run in runs):
            return {run.tags["dagster/partition"]: run for run in runs}
        if time.monotonic() > deadline:
            states = ", ".join(f"{run.tags.get('dagster/partition')}: {run.status.value}" for run in runs)
            raise TimeoutError(
                f"the demo's runs did not finish within {RUNS_TIMEOUT_SECONDS} s ({states or 'none created'})"
            )
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
