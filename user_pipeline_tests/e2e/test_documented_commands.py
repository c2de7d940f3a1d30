"""Executable docs: every command in README.md and docs/*.md that launches, backfills, re-executes,
repairs or queries is run as written against the stack `make ui` starts, and its runs must end
successful with their days in the warehouse. A command added to the docs without a check here fails.

Substituted, and only these (see MakeUi): the ports (UI 3000 and API 8765 -> free ports),
DAGSTER_HOME (`$PWD/dagster_home` -> a temporary copy of its dagster.yaml), USER_PIPELINE_DATA_DIR
(a temporary folder), USER_PIPELINE_USERS_PER_PARTITION (5, to keep the test short),
USER_PIPELINE_ALERT_WEBHOOK_URL (a receiver on loopback, to check the alert links) and the
placeholder RUN_ID (a run the test makes fail first, by a fault of the bundled server). The
automation condition sensor is stopped first, as the README advises while backfilling by hand
(test_automation.py runs it end to end): otherwise every day launched here would also get its
report and Spark runs, which only lengthen this test. Commands run
from the repository root with bash, the `export` lines of their own page before them, and the
project's .venv/bin first on PATH (the docs' bare `dagster`/`python` mean the project's).
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from user_pipeline.graphql_triggers import DagsterGraphQL
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.e2e.support import run_days, stop_sensor, wait_until
from user_pipeline_tests.webhook_receiver import WebhookReceiver
from user_pipeline_tools.dagster_services import BIN_DIR, REPO_ROOT, TERMINAL_RUN_STATUSES, MakeUi

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
USERS_PER_PARTITION = 5
# Groups of commands that share no day run at the same time (see `lanes`).
LANES_AT_ONCE = 3
FAILING_DAY = "2026-11-21"  # the day of RUN_ID: made to fail once, then re-executed by the docs

# A command of the docs is a shell line, or an inline code span, that starts like this.
COMMAND_START = re.compile(
    r"^(\.venv/bin/)?(dagster|dagster-[a-z]+|dg|python -m user_pipeline[\w.]*|curl|export)(\s|$)"
)

# Documented lines that are not run here, each with the reason. Everything else that starts like
# a command must be run and checked by CHECKS below.
NOT_RUN = {
    r"export \w+=.*": "sets the environment of the commands after it (applied to them)",
    (
        r"(dagster|dagster-daemon|dagster-webserver|dagster-postgres|dagster-pyspark|dagster asset materialize"
        r"|dagster job launch|dagster job backfill|dagster dev|dagster sensor start \.\.\.|dg launch|dg launch --partition-range)"
    ): "a name in prose, not a command",
    r"(\.venv/bin/)?(dg|dagster) dev( .*)?|dagster-webserver .*|dagster-daemon run .*": "starts the services: `make ui` runs `dg dev`, and this test starts it",
    r"python -m user_pipeline_tools\.randomuser_server .*": "the bundled API server: `make ui` runs it",
    r"(\.venv/bin/)?python -m user_pipeline\.settings": "prints the README's configuration table (user_pipeline_tests/test_settings.py compares them)",
    r"python -m user_pipeline_tools\.spark_cluster .*": "starts a Spark cluster (user_pipeline_tests/spark/test_cluster.py)",
    r"dagster (schedule|sensor) (start|stop) .*": "switches automation on or off (user_pipeline_tests/e2e and automation tests)",
    r"dagster instance concurrency set .*": "changes the instance's settings, neither launches nor queries",
    r"(\.venv/bin/)?dagster instance migrate": (
        "creates or migrates the instance's storage: `make install` runs it before every test run"
    ),
    r"dagster-celery worker start( .*)?": (
        "starts a Celery worker: `make workers` runs it (user_pipeline_tests/e2e/test_celery_services.py, "
        "test_celery_workers.py)"
    ),
    r"dagster run delete RUN_ID": "deletes a run, neither launches nor queries",
    r".* (D|D1|Dn)( .*)?": "a template (D = a day) describing what the benchmark times (user_pipeline_tests/benchmarks)",
}


@dataclass(frozen=True)
class DocCommand:
    page: Path
    text: str
    exports: tuple[str, ...]  # the page's `export` lines, in order


def documented_commands() -> list[DocCommand]:
    """Every command-like shell line and inline code span of the docs, in page order."""
    found = []
    for page in DOCS:
        text = page.read_text()
        lines = []
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S):
            pending = ""
            for line in block.splitlines():
                if not pending and (not line.strip() or line.lstrip().startswith("#")):
                    continue
                pending = f"{pending}\n{line}" if pending else line
                if pending.endswith("\\"):
                    continue
                try:
                    shlex.split(pending, comments=True)
                except ValueError:  # a quote still open: the command goes on
                    continue
                lines.append(pending.strip())
                pending = ""
        # The page's shell blocks set the environment of all its commands (an `export` in prose is an example).
        exports = tuple(dict.fromkeys(line.split("#")[0].strip() for line in lines if line.startswith("export ")))
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        lines += [span.strip() for span in re.findall(r"`([^`\n]+)`", prose)]
        commands = [line for line in lines if COMMAND_START.match(line)]
        found += [DocCommand(page, line, exports) for line in commands]
    # The same command on several pages (with or without .venv/bin/) is run once, where it first appears.
    unique: dict[str, DocCommand] = {}
    for command in found:
        unique.setdefault(command.text.removeprefix(".venv/bin/"), command)
    return list(unique.values())


def not_run_reason(command: str) -> str | None:
    return next((reason for pattern, reason in NOT_RUN.items() if re.fullmatch(pattern, command, flags=re.S)), None)


def days_between(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=offset)).isoformat() for offset in range((end - start).days + 1)]


# -- what each kind of command must leave ------------------------------------------------------------


@dataclass
class Expected:
    days: list[str]  # days that must be in the warehouse afterwards (and covered by the new runs)
    runs: bool = True  # the command creates runs
    output: str = ""  # a regex its stdout must match
    spark: bool = False  # the days must be in the Parquet output instead


def _range(command: str) -> list[str]:
    first = re.search(r"--from (\S+)", command).group(1)
    return days_between(first, re.search(r"--to (\S+)", command).group(1))


def _tagged_days(command: str) -> list[str]:
    """The days of a `dagster job launch --tags '{...}'`: its partition, or its partition range."""
    tags = json.loads(re.search(r"--tags '(.*)'", command).group(1))
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    return days_between(tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"])


CHECKS: list[tuple[str, object]] = [
    (
        r".*dagster job launch .*-j spark_ingestion_job .*",
        lambda c: Expected([json.loads(re.search(r"--tags '(.*)'", c).group(1))["dagster/partition"]], spark=True),
    ),
    (r".*dagster job launch .*-j daily_users_job .*", lambda c: Expected(_tagged_days(c))),
    (r".*dagster job backfill .*", lambda c: Expected(_range(c))),
    (
        r".*(dg launch|dagster asset materialize) .*--partition (\S+).*",
        lambda c: Expected([re.search(r"--partition (\S+)", c).group(1)]),
    ),
    (
        r".*dg launch .*--partition-range (\S+)\.\.\.(\S+).*",
        lambda c: Expected(days_between(*re.search(r"--partition-range (\S+)\.\.\.(\S+)", c).groups())),
    ),
    (
        r".*graphql_triggers .* launch-run .*--partition .*",
        lambda c: Expected([re.search(r"--partition (\S+)", c).group(1)], output=r"[0-9a-f-]{36}\n"),
    ),
    (r".*graphql_triggers .* launch-run .*--from .*", lambda c: Expected(_range(c), output=r"[0-9a-f-]{36}\n")),
    (r".*graphql_triggers .* backfill .*", lambda c: Expected(_range(c), output=r"\w+\n")),
    (r".*graphql_triggers .* reexecute .*", lambda c: Expected([FAILING_DAY], output=r"[0-9a-f-]{36}\n")),
    (
        r".*automation\.repair .* --dry-run",
        lambda c: Expected([], runs=False, output=r"(would re-run|nothing to repair)"),
    ),
    (
        r".*automation\.repair .*",
        lambda c: Expected(_range(c), runs=False, output=r"(re-running \d+ day|nothing to repair)"),
    ),
    (
        r"curl .*/graphql .*launchPartitionBackfill.*",
        lambda c: Expected(re.findall(r'\\"(\d{4}-\d{2}-\d{2})\\"', c), output=r'"backfillId"'),
    ),
    (r".*dg check defs", lambda c: Expected([], runs=False, output=r"")),
    (r".*(dg list defs|dagster job list .*)", lambda c: Expected([], runs=False, output=r"daily_users_job")),
    (r".*dagster definitions validate .*", lambda c: Expected([], runs=False, output=r"")),
    (r".*dagster schedule list .*", lambda c: Expected([], runs=False, output=r"daily_users_schedule")),
    (r".*dagster sensor list .*", lambda c: Expected([], runs=False, output=r"automation_condition_sensor")),
    (
        r".*dagster instance info",
        lambda c: Expected([], runs=False, output=r"DefaultRunLauncher(.|\n)*max_concurrent_runs: 4"),
    ),
    (r".*dagster instance concurrency get users_api", lambda c: Expected([], runs=False, output=r"users_api")),
    (r".*dagster run list( --limit \d+)?", lambda c: Expected([], runs=False, output=r"Run: [0-9a-f-]{36}")),
]


def expected_of(command: str) -> Expected | None:
    return next((check(command) for pattern, check in CHECKS if re.fullmatch(pattern, command, flags=re.S)), None)


def test_every_documented_command_is_run_here_or_says_why_not():
    """The guard: a command added to the docs is either checked by the acceptance test below or
    listed in NOT_RUN with its reason; otherwise this fails, naming it."""
    commands = documented_commands()
    unclassified = [
        f"{c.page.name}: {c.text}" for c in commands if not not_run_reason(c.text) and expected_of(c.text) is None
    ]
    assert not unclassified, "documented commands with no check in test_documented_commands.py:\n" + "\n".join(
        unclassified
    )
    run = [c for c in commands if not not_run_reason(c.text)]
    # The docs' trigger section is there, so the guard cannot pass on an empty list.
    assert any("dagster job launch -w workspace.yaml" in c.text for c in run)
    assert any("dg launch" in c.text for c in run) and any("launchPartitionBackfill" in c.text for c in run)


# -- the acceptance test --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def make_ui(tmp_path_factory, webhook):
    root = tmp_path_factory.mktemp("make-ui")
    env = {
        "USER_PIPELINE_DATA_DIR": str(root / "data"),
        "USER_PIPELINE_USERS_PER_PARTITION": str(USERS_PER_PARTITION),
        # To see the alert of the run made to fail, and that its link is on make ui's own port.
        "USER_PIPELINE_ALERT_WEBHOOK_URL": webhook.url,
        "USER_PIPELINE_ALERT_SENSOR_INTERVAL_SECONDS": "5",
    }
    stack = MakeUi(root / "dagster_home", env)
    for name in ("USER_PIPELINE_API_URL", "USER_PIPELINE_UI_URL", "USER_PIPELINE_WAREHOUSE_URL"):
        stack.env.pop(name, None)  # the test's own environment must not leak into the user's stack
    with stack:
        stack.root = root
        stack.data_dir = root / "data"
        # As the README says to while backfilling by hand: the automation (tested end to end in
        # test_automation.py) would add the report and Spark runs of every day launched here.
        stopped = stack.dagster("sensor", "stop", "automation_condition_sensor", "-w", "workspace.yaml")
        assert stopped.returncode == 0 and "Stopped sensor automation_condition_sensor" in stopped.stdout, (
            stopped.stdout + stopped.stderr
        )
        # A tick under way at that moment would switch it on again as it ends: make sure it stays off.
        stop_sensor(stack, "automation_condition_sensor")
        yield stack


def substituted(text: str, stack: MakeUi, failed_run_id: str) -> str:
    return (
        text.replace("$PWD/dagster_home", str(stack.home))
        .replace("127.0.0.1:3000", f"127.0.0.1:{stack.port}")
        .replace("127.0.0.1:8765", f"127.0.0.1:{stack.api_port}")
        .replace("RUN_ID", failed_run_id)
    )


def run_documented(command: DocCommand, stack: MakeUi, failed_run_id: str) -> subprocess.CompletedProcess:
    script = "\n".join([*command.exports, command.text])
    env = {
        key: value
        for key, value in stack.env.items()
        if key not in ("USER_PIPELINE_API_URL", "USER_PIPELINE_UI_URL", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{BIN_DIR}:{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", "set -e\n" + substituted(script, stack, failed_run_id)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def make_failed_run(stack: MakeUi) -> str:
    """A run of FAILING_DAY that fails (the bundled server answers the day's seed with an error
    body), for the docs' `reexecute --run-id RUN_ID --from-failure`."""
    control = f"http://127.0.0.1:{stack.api_port}/_control/faults"
    requests.post(control, json={"kind": "error_body", "seeds": [FAILING_DAY]}, timeout=10).raise_for_status()
    try:
        run_id = DagsterGraphQL(stack.url).launch_run("daily_users_job", FAILING_DAY)
        [run] = stack.wait_for_runs(1, timeout=300, tags=[{"key": "dagster/partition", "value": FAILING_DAY}])
    finally:
        requests.delete(control, timeout=10).raise_for_status()
    assert run["runId"] == run_id and run["status"] == "FAILURE", run
    return run_id


def days_of(run: dict) -> list[str]:
    tags = run["tags"]
    return run_days(run) if "dagster/partition" in tags or "dagster/asset_partition_range_start" in tags else []


def warehouse_days(stack: MakeUi, days: list[str]) -> dict[str, int]:
    if not days:
        return {}
    warehouse = open_warehouse(f"sqlite:///{stack.data_dir}/warehouse.sqlite")
    return {day: warehouse.count_rows(day) for day in days}


def lanes(commands: list[DocCommand]) -> list[tuple[set[str], list[DocCommand]]]:
    """The commands in groups that share no day (the days each must leave in the warehouse), each
    group in the docs' order; the commands that touch no day form one group. Groups run at the same
    time, a group's commands one after the other: a day's commands meet each other's runs exactly
    as they do one after the other, and a new run belongs to the command running in its day's group."""
    groups: list[tuple[set[str], list[int]]] = []
    for index, command in enumerate(commands):
        days = set(expected_of(command.text).days)
        touched = [group for group in groups if (group[0] & days if days else not group[0])]
        merged = (set(days), [index])
        for group in touched:
            groups.remove(group)
            merged[0].update(group[0])
            merged[1].extend(group[1])
        groups.append(merged)
    return [(days, [commands[index] for index in sorted(indexes)]) for days, indexes in groups]


def run_lane(stack: MakeUi, lane_days: set[str], commands: list[DocCommand], failed_run_id: str, seen: set[str]):
    """Runs a group's commands in order; each must exit 0, print what it should, and its runs (the
    new runs of the group's days) must all succeed with their days in the warehouse (or Parquet)."""
    seen = set(seen)
    for command in commands:
        started = time.monotonic()
        expected = expected_of(command.text)
        what = f"{command.page.name}: {command.text}"
        result = run_documented(command, stack, failed_run_id)
        assert result.returncode == 0, (
            f"{what}\nexit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
        assert re.search(expected.output, result.stdout), (
            f"{what}\nstdout does not match {expected.output!r}:\n{result.stdout[-2000:]}"
        )

        def new_runs_finished(expected=expected, seen=seen):
            runs = [run for run in stack.runs() if run["runId"] not in seen and set(days_of(run)) & lane_days]
            covered = {day for run in runs for day in days_of(run)}
            if expected.runs and not set(expected.days) <= covered:
                return None  # a backfill's runs are created by the daemon, a little later
            if not expected.spark and not all(warehouse_days(stack, expected.days).values()):
                return None
            # In a tuple: no new run at all is an answer too.
            return (runs,) if all(run["status"] in TERMINAL_RUN_STATUSES for run in runs) else None

        [runs] = wait_until(
            new_runs_finished, 400, lambda what=what: f"the runs of {what}\n{stack.logs()[-3000:]}", interval=2
        )
        assert all(run["status"] == "SUCCESS" for run in runs), f"{what}: {[(r['runId'], r['status']) for r in runs]}"
        if expected.runs:
            assert runs, f"{what} created no run"
        if expected.spark:
            for day in expected.days:
                assert list((stack.data_dir / "parquet" / "users").glob(f"partition_date={day}*")), (
                    f"{what}: {day} not in Parquet"
                )
        else:
            counts = warehouse_days(stack, expected.days)
            assert all(count == USERS_PER_PARTITION for count in counts.values()), f"{what}: rows per day {counts}"
        seen |= {run["runId"] for run in runs}
        print(f"{time.monotonic() - started:5.1f}s {len(runs)} run(s)  {what[:150]}")


def test_commands_in_lanes_share_no_day_and_keep_the_docs_order():
    commands = [c for c in documented_commands() if not not_run_reason(c.text)]
    groups = lanes(commands)
    assert sorted(c.text for _, group in groups for c in group) == sorted(c.text for c in commands)
    for days, group in groups:
        assert [commands.index(c) for c in group] == sorted(commands.index(c) for c in group)
        assert set().union(*(expected_of(c.text).days for c in group)) == days
    for (days, _), (other, _) in itertools.combinations(groups, 2):
        assert not days & other
    assert [days for days, _ in groups].count(set()) == 1


def test_every_documented_trigger_works_as_written_against_make_ui(make_ui, webhook):
    stack = make_ui
    failed_run_id = make_failed_run(stack)
    seen = {run["runId"] for run in stack.runs()}
    commands = [c for c in documented_commands() if not not_run_reason(c.text)]
    assert commands
    with ThreadPoolExecutor(max_workers=LANES_AT_ONCE) as pool:
        # The longest groups first, so that the short ones fill in beside them.
        groups = sorted(lanes(commands), key=lambda lane: len(lane[1]), reverse=True)
        running = [pool.submit(run_lane, stack, days, group, failed_run_id, seen) for days, group in groups]
        for lane in running:
            lane.result()

    # The failed run's alert, once, linking to the UI on make ui's own port (UI_PORT).
    alerts = [payload for payload in webhook.payloads if payload.get("run_id") == failed_run_id]
    assert [alert["run_url"] for alert in alerts] == [f"http://127.0.0.1:{stack.port}/runs/{failed_run_id}"], (
        webhook.payloads
    )
