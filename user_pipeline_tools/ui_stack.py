"""`make ui`: the Dagster UI (`dg dev`: webserver, daemon, code server) beside the bundled API
server, stopped as a whole by Ctrl-C (SIGINT) or SIGTERM.

    python -m user_pipeline_tools.ui_stack [--ui-port 3000] [--api-port 8765]

Why not a plain `dg dev` in the foreground: on Ctrl-C the whole terminal group gets SIGINT at
once, and dagster's code server (`dagster api grpc`, dagster/_grpc/server.py) only shuts down
"once all current executions finish": a run in progress keeps it, and the run's processes, alive
after `dg dev` has exited (its `dagster code-server start` proxy gives up after 30 s and leaves
them orphaned), and the run stays STARTED. A run takes a moment to stop when terminated
(its step is interrupted, and user_pipeline/run_checks.py ends the run instead of the retry
Dagster would start for a step with a RetryPolicy). So `dg dev` and the bundled API server run in their own process
groups (the terminal's Ctrl-C reaches only this supervisor), and a stop
(1) terminates the runs in progress through the webserver's GraphQL `terminateRuns`, as the UI's
Terminate does; those not ended after RUNS_STOP_SECONDS are marked CANCELED at once
(MARK_AS_CANCELED_IMMEDIATELY) and their processes are stopped with the code server;
(2) sends SIGINT to `dg dev`'s group, its Ctrl-C shutdown; (3) kills what is still in that group
after STOP_SECONDS, naming it; (4) stops the API server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import psutil
import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
RUNS_STOP_SECONDS = 8  # for the runs in progress to end after terminateRuns (SAFE_TERMINATE)
STOP_SECONDS = 15  # for `dg dev` and every process it started to exit after SIGINT
IN_PROGRESS = ["STARTING", "STARTED", "CANCELING"]

RUNS_IN_PROGRESS_QUERY = """
query InProgress($statuses: [RunStatus!]) {
  runsOrError(filter: {statuses: $statuses}) { ... on Runs { results { runId status } } }
}
"""
TERMINATE_RUNS_MUTATION = """
mutation Terminate($runIds: [String!]!, $policy: TerminateRunPolicy!) {
  terminateRuns(runIds: $runIds, terminatePolicy: $policy) {
    __typename
    ... on TerminateRunsResult { terminateRunResults { __typename ... on Error { message } } }
    ... on PythonError { message }
  }
}
"""


class _Stop(Exception):
    """Raised in the main thread by the first SIGINT or SIGTERM."""


_stop_signals: list[int] = []  # the stop signals received, in order


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    """Raises _Stop for the first stop signal only. A second one must not cut the shutdown short
    (runs left STARTED, processes orphaned), and it comes unasked: `make ui` runs this module under
    GNU make, which on SIGTERM sends SIGTERM again to its children (make's fatal_error_signal), so a
    `kill -TERM` of the group reaches this process twice within a moment: often while this handler
    is still running, since CPython runs a Python handler at any bytecode boundary, nested in
    another. So whether this call is the first is read before it records itself: read after, a
    second signal handled in between made both calls see two records, and neither raised."""
    first = not _stop_signals
    _stop_signals.append(signum)
    if first:
        raise _Stop(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m user_pipeline_tools.ui_stack", description=__doc__.splitlines()[0])
    parser.add_argument("--ui-port", type=int, default=3000)
    parser.add_argument("--api-port", type=int, default=8765)
    args = parser.parse_args(argv)
    ui_url = f"http://127.0.0.1:{args.ui_port}"

    from user_pipeline_tools.pools import apply_pool_limits
    from user_pipeline_tools.randomuser_server.launcher import RandomUserServer

    # The users_api pool's limit, from USER_PIPELINE_USERS_API_POOL_LIMIT (as `make pools`).
    print(apply_pool_limits(), flush=True)
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with RandomUserServer(port=args.api_port, own_session=True) as api:
            print(f"Bundled users API: {api.base_url}", flush=True)
            env = {**os.environ, "USER_PIPELINE_API_URL": api.base_url, "USER_PIPELINE_UI_URL": ui_url}
            dg_dev = subprocess.Popen(
                [str(BIN_DIR / "dg"), "dev", "-h", "127.0.0.1", "-p", str(args.ui_port)],
                cwd=PROJECT_ROOT,
                env=env,
                start_new_session=True,
            )
            try:
                return dg_dev.wait()
            except _Stop as stop:
                _ignore_stop_signals()
                print(f"\n{stop}: stopping the Dagster UI ...", flush=True)
                terminate_runs_in_progress(ui_url)
                return 130 if str(stop) == "SIGINT" else 143
            finally:
                _ignore_stop_signals()
                stop_process_group(dg_dev)
    except _Stop:  # before `dg dev` started: the API server is stopped by its context manager
        return 130


def _ignore_stop_signals() -> None:
    # A second Ctrl-C must not cut the shutdown short and leave orphans.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def terminate_runs_in_progress(ui_url: str) -> None:
    """Asks the webserver to terminate the runs in progress and waits up to RUNS_STOP_SECONDS for them to end."""
    try:
        runs = _graphql(ui_url, RUNS_IN_PROGRESS_QUERY, {"statuses": IN_PROGRESS})["runsOrError"]["results"]
        run_ids = [run["runId"] for run in runs]
        if not run_ids:
            return
        print(f"Terminating {len(run_ids)} run(s) in progress: {', '.join(run_ids)}", flush=True)
        _graphql(ui_url, TERMINATE_RUNS_MUTATION, {"runIds": run_ids, "policy": "SAFE_TERMINATE"})
        deadline = time.monotonic() + RUNS_STOP_SECONDS
        while time.monotonic() < deadline:
            if not _graphql(ui_url, RUNS_IN_PROGRESS_QUERY, {"statuses": IN_PROGRESS})["runsOrError"]["results"]:
                return
            time.sleep(0.5)
        left = [
            run["runId"]
            for run in _graphql(ui_url, RUNS_IN_PROGRESS_QUERY, {"statuses": IN_PROGRESS})["runsOrError"]["results"]
        ]
        print(
            f"Run(s) still in progress {RUNS_STOP_SECONDS} s after termination (a step waiting to retry?), "
            f"marked CANCELED and stopped with the code server: {', '.join(left)}",
            flush=True,
        )
        _graphql(ui_url, TERMINATE_RUNS_MUTATION, {"runIds": left, "policy": "MARK_AS_CANCELED_IMMEDIATELY"})
    except (requests.RequestException, KeyError, TypeError) as error:
        print(f"Could not terminate the runs in progress through {ui_url}/graphql ({error}).", flush=True)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGINT to the process's group (its Ctrl-C shutdown), then SIGKILL to what is left after STOP_SECONDS."""
    pgid = process.pid
    if _group_members(pgid):
        os.killpg(pgid, signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None and not _group_members(pgid):
            return
        time.sleep(0.2)
    left = _group_members(pgid)
    print(f"Still running {STOP_SECONDS} s after SIGINT, killed: {left}", flush=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()


def _group_members(pgid: int) -> list[str]:
    """The live (not zombie) processes of a process group, as 'pid command'."""
    members = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:80]}")
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _graphql(ui_url: str, query: str, variables: dict) -> dict:
    response = requests.post(f"{ui_url}/graphql", json={"query": query, "variables": variables}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


if __name__ == "__main__":
    sys.exit(main())
