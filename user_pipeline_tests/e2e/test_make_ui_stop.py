"""`make ui` stops on Ctrl-C (SIGINT to its process group) and on SIGTERM, with a run in progress:
every process it started is gone within a bound, none orphaned, and the run ends CANCELED, not left STARTED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from user_pipeline.graphql_triggers import DagsterGraphQL
from user_pipeline_tools import ui_stack
from user_pipeline_tools.dagster_services import REPO_ROOT, MakeUi

STOP_BOUND_SECONDS = 30  # a correctness bound on shutdown, not a speed target


def alive(pids: set[int]) -> dict[int, str]:
    """The processes among pids still running (zombies count as gone), with their command lines."""
    running = {}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                running[pid] = " ".join(process.cmdline())[:120]
        except psutil.NoSuchProcess:
            continue
    return running


def supervisor_lines(stack: MakeUi) -> str:
    """The lines `make ui`'s supervisor (ui_stack) and make printed, without Dagster's own logging:
    what the stop did, which the log's tail (Dagster's) does not show."""
    text = stack.log_path("make-ui").read_text(errors="replace")
    return "\n".join(line for line in text.splitlines() if " - dagster" not in line and "dagster-webserver" not in line)


def run_status(home: Path, run_id: str) -> str:
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import dagster as dg; print(dg.DagsterInstance.get().get_run_by_id({run_id!r}).status.value)",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert read.returncode == 0, read.stderr
    return read.stdout.strip()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_make_ui_stops_every_process_with_a_run_in_progress(tmp_path: Path, signum: int):
    stack = MakeUi(
        tmp_path / "dagster_home",
        {"USER_PIPELINE_DATA_DIR": str(tmp_path / "data"), "USER_PIPELINE_USERS_PER_PARTITION": "5"},
    )
    stack.start()
    started: set[int] = set()
    try:
        # The run waits on a slow API answer, so it is in progress when the stack is stopped.
        requests.post(
            f"http://127.0.0.1:{stack.api_port}/_control/faults", json={"kind": "slow", "delay_seconds": 25}, timeout=10
        ).raise_for_status()
        run_id = DagsterGraphQL(stack.url).launch_run("daily_users_job", partition="2026-11-20")
        deadline = time.monotonic() + 120
        while stack.runs(runIds=[run_id])[0]["status"] != "STARTED":
            assert time.monotonic() < deadline, f"the run did not start:\n{stack.logs()}"
            time.sleep(1)
        time.sleep(3)  # into the step's API call

        make = stack._processes["make-ui"]
        started = {make.pid, *(child.pid for child in psutil.Process(make.pid).children(recursive=True))}
        commands = " ".join(alive(started).values())
        for part in (
            "dg dev",
            "dagster_webserver",
            "dagster._daemon",
            "dagster api grpc",
            "user_pipeline_tools.randomuser_server",
        ):
            assert part in commands, f"{part} not among the processes of make ui: {commands}"

        os.killpg(make.pid, signum)
        deadline = time.monotonic() + STOP_BOUND_SECONDS
        while alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive(started) == {}, (
            f"still running {STOP_BOUND_SECONDS} s after {signal.Signals(signum).name}:\n{stack.logs()}\n"
            f"--- make ui's own lines ---\n{supervisor_lines(stack)}"
        )
        assert make.wait(timeout=5) != 0
        assert run_status(stack.home, run_id) == "CANCELED", stack.logs()
    finally:
        for pid in alive(started):  # only what this test's `make ui` started
            os.kill(pid, signal.SIGKILL)
        stack.stop()


def test_a_second_stop_signal_does_not_cut_the_shutdown_short(monkeypatch):
    """GNU make sends SIGTERM again to its children when it gets one, so `kill -TERM` of `make ui`'s
    group reaches the supervisor twice: the second must not interrupt the shutdown the first began
    (it did: the run was left STARTED and the code server killed, `make ui` exiting 130)."""
    monkeypatch.setattr(ui_stack, "_stop_signals", [])
    with pytest.raises(ui_stack._Stop, match="SIGTERM"):
        ui_stack._raise_stop(signal.SIGTERM, None)
    ui_stack._raise_stop(signal.SIGTERM, None)  # make's own SIGTERM, a moment later
    ui_stack._raise_stop(signal.SIGINT, None)  # an impatient Ctrl-C
    assert ui_stack._stop_signals == [signal.SIGTERM, signal.SIGTERM, signal.SIGINT]


def _handler_lines() -> list[int]:
    code = ui_stack._raise_stop.__code__
    return sorted({line for _, _, line in code.co_lines() if line is not None and line > code.co_firstlineno})


@pytest.mark.parametrize("line", _handler_lines())
def test_a_second_stop_signal_inside_the_first_handler_still_stops_once(monkeypatch, line: int):
    """make's SIGTERM comes within microseconds of the group's, so it can be handled while the first
    handler is still running: CPython runs a Python signal handler at any bytecode boundary, nested
    in another. Whichever line of the first handler the second interrupts, exactly one _Stop must
    come out (it did not when the second struck after the first had recorded itself: neither raised,
    and `make ui` ignored the SIGTERM, the CI failure of stop 18)."""
    monkeypatch.setattr(ui_stack, "_stop_signals", [])
    outer = ui_stack._raise_stop.__code__
    injected: list[int] = []

    def tracer(frame, event, _arg):
        if frame.f_code is not outer or injected:
            return None

        def local(frame, event, _arg):
            if event == "line" and frame.f_lineno == line and not injected:
                injected.append(line)
                sys.settrace(None)
                ui_stack._raise_stop(signal.SIGTERM, None)  # the second signal, handled nested
            return local

        return local

    raised = 0
    sys.settrace(tracer)
    try:
        ui_stack._raise_stop(signal.SIGTERM, None)
    except ui_stack._Stop:
        raised += 1
    finally:
        sys.settrace(None)
    assert injected == [line], "the second signal was not handled inside the first handler"
    assert raised == 1
    assert ui_stack._stop_signals[:1] == [signal.SIGTERM]
