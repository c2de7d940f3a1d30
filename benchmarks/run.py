"""Orchestration overhead and scaling: the same daily users work done without an orchestrator,
with Dagster in process, and through a running dagster-daemon, measured in one run.

    python -m benchmarks.run                 # the full benchmark (tens of minutes on 2 cores)
    python -m benchmarks.run --smoke         # tiny sizes, one repetition, exits 1 if any mode fails
    python -m benchmarks.run --repeat 5 --sections main,scaling --markdown results.md
    python -m benchmarks.run --airflow-smoke # 2 days x 200 users: bare and the Airflow peer only
    python -m benchmarks.run --sections bare --baseline COMMIT   # the bare script only, old against new

Starts the bundled API server (user_pipeline_tools.randomuser_server) and, for every case, runs every
mode once per repetition, round-robin (repetition r starts with mode r mod len(modes)), each in
fresh data directories or on fresh partition days so that nothing is skipped:

- bare: ``python -m benchmarks.bare D...``: the assets' work with the project's plain
  functions, no Dagster (see benchmarks/bare.py);
- dagster CLI: ``dagster asset materialize -m user_pipeline.definitions --select
  raw_users,normalized_users,users_table --partition D``, one process per day;
- dagster Python API: ``python -m benchmarks.dagster_api D...``: ``dg.materialize`` per day in one process;
- Dagster's floor (1 x 5,000 case only): the CLI and Python API commands above on
  ``benchmarks.noop_assets``, the same graph (assets, checks, pool, partitions) with empty
  bodies: what Dagster alone costs;
- daemon, job backfill: ``dagster job backfill -w workspace.yaml -j daily_users_job --from D1
  --to Dn --noprompt`` on a running dagster-daemon + dagster-webserver (one run per day);
- daemon, asset backfill: GraphQL ``launchPartitionBackfill`` with ``assetSelection``
  [raw_users, normalized_users, users_table] over the days (BackfillPolicy.multi_run(31): one run);
- daemon, range as one run: GraphQL ``launchRun`` of daily_users_job with the
  ``dagster/asset_partition_range_start``/``_end`` tags (what the UI's "Launch as... Single run"
  and ``graphql_triggers launch-run --from --to`` queue): no backfill daemon, one run;
- Airflow (10 x 5,000 case, its own case with bare): the seed's DAG, fixed
  (benchmarks/airflow/dags), on Apache Airflow in .venv-airflow (``make
  benchmark-airflow-setup``), LocalExecutor, its scheduler, DAG processor and API server up
  before timing: ``airflow backfill create --dag-id user_processing --from-date D1 --to-date Dn``
  until every run succeeded (see benchmarks/airflow_peer.py). Skipped, with a line in the table,
  when .venv-airflow is missing. The Dagster services are stopped during that case.

The in-process modes use one temporary DAGSTER_HOME, the daemon modes another (one per users
setting: the daemon's run workers read USER_PIPELINE_USERS_PER_PARTITION from the daemon's
environment); both use the repository's dagster_home/dagster.yaml and have their storage created
before anything is timed. Services start, warm-up and instance creation are never timed.

Columns: wall seconds (daemon modes: from launch to the end time of the last run, as recorded by
Dagster); CPU seconds (user+sys) of the whole process tree the mode started, or for the daemon
modes of the daemon and webserver trees (code servers and run workers included) plus the CLI,
over the timed window; peak memory, the largest sum of the RSS of all processes of that tree,
sampled every 50 ms (for the daemon modes this includes the resident daemon and webserver).
Medians with min-max; ratios are median over median of bare in the same case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import airflow_peer
from benchmarks.proctree import (
    TreeMeter,
    become_subreaper,
    children_of_this_process,
    reap_strays,
)
from user_pipeline.graphql_triggers import DagsterGraphQL, TriggerError

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
INSTANCE_CONFIG = REPO_ROOT / "dagster_home" / "dagster.yaml"
BACKFILL_FAILED_STATUSES = frozenset({"FAILED", "FAILING", "CANCELED", "COMPLETED_FAILED"})
DAILY_ASSETS = ("raw_users", "normalized_users", "users_table")
FIRST_DAY = date(2026, 1, 1)  # user_pipeline.partitions.daily_partitions' start
PAGE_SIZE = 5000

BARE = "bare script"
CLI = "dagster CLI, process per day"
API = "dagster Python API, one process"
FLOOR = "Dagster's floor: same graph, no work (CLI)"
API_FLOOR = "Dagster's floor: same graph, no work (Python API)"
API_RANGE = "dagster Python API, the range as one run"
JOB_BACKFILL = "daemon: job backfill, run per day"
ASSET_BACKFILL = "daemon: asset backfill, multi-run"
RANGE_RUN = "daemon: range as one run (GraphQL launchRun)"
# `--baseline COMMIT`: benchmarks/bare.py and the pipeline's code as they were at COMMIT (a git
# worktree), in the same run: "old commit against new".
BARE_BASELINE = "bare script, baseline commit"
SPARK_BARE = "plain PySpark job, one app"
SPARK_PER_DAY = "users_parquet, CLI per day"
SPARK_RANGE = "users_parquet, CLI --partition-range"
AIRFLOW_VENV = REPO_ROOT / ".venv-airflow"
AIRFLOW = (
    f"Airflow {airflow_peer.pinned_version()}, the seed's DAG (fixed), "
    "LocalExecutor, services already up: `airflow backfill create` -> N runs done"
)
DAEMON_MODES = (JOB_BACKFILL, ASSET_BACKFILL, RANGE_RUN)
MAIN_MODES = (BARE, CLI, API, JOB_BACKFILL, ASSET_BACKFILL, RANGE_RUN)
MAIN_MODES_AND_FLOOR = (BARE, FLOOR, CLI, API_FLOOR, API, JOB_BACKFILL, ASSET_BACKFILL, RANGE_RUN)
SCALING_MODES = (BARE, CLI)
SPARK_MODES = (SPARK_BARE, SPARK_PER_DAY, SPARK_RANGE)
DAYS_MODES = (BARE, API_RANGE)
BASELINE = {"main": BARE, "scaling": BARE, "spark": SPARK_BARE, "days": BARE}


class ModeFailed(RuntimeError):
    pass


@dataclass
class Result:
    wall: float
    cpu: float
    rss: int
    runs: int | None = None
    peak_processes: dict[str, float] = field(default_factory=dict)  # process name -> MB at the peak


def peak_by_name(meter: TreeMeter) -> dict[str, float]:
    by_name: dict[str, float] = {}
    for _, name, rss in meter.peak_processes:
        # psutil names a process by its command line when its 15-character comm is cut, and Airflow
        # titles its processes "airflow worker -- <task uuid>": group them by what precedes " -- ".
        name = name.split(" -- ", 1)[0].strip()
        by_name[name] = round(by_name.get(name, 0.0) + rss / 2**20, 1)
    return dict(sorted(by_name.items(), key=lambda item: -item[1]))


@dataclass
class Case:
    section: str  # main | scaling | spark | days
    partitions: int
    users: int
    modes: tuple[str, ...]
    results: dict[str, list[Result]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # mode -> why it did not run

    @property
    def label(self) -> str:
        return f"{self.partitions} x {self.users:,}"


@dataclass
class Plan:
    repeat: int
    main: list[tuple[int, int, tuple[str, ...]]]  # (partitions, users per partition, modes)
    scaling: list[int]
    spark_days: int
    spark_users: int
    # A range run's worker over more and more days (users per day fixed): its memory must not grow.
    day_counts: list[int]
    day_users: int
    warmup: bool
    idle_seconds: float
    timeout: float
    baseline: str | None = None  # a commit: its bare script joins the 10 x 5,000 case and the scaling

    def with_baseline(self, modes: tuple[str, ...]) -> tuple[str, ...]:
        return (*modes, BARE_BASELINE) if self.baseline and BARE in modes else modes


def full_plan(repeat: int) -> Plan:
    return Plan(
        repeat=repeat,
        main=[
            (1, 5000, MAIN_MODES_AND_FLOOR),
            (10, 5000, MAIN_MODES),
            (10, 5000, (BARE, AIRFLOW)),
            (10, 1, MAIN_MODES),
        ],
        scaling=[1000, 10_000, 50_000, 100_000],
        spark_days=5,
        spark_users=1000,
        day_counts=[4, 8, 31],
        day_users=2000,
        warmup=True,
        idle_seconds=10,
        timeout=1800,
    )


def smoke_plan(repeat: int) -> Plan:
    # One case with every mode (an asset backfill alone can wait 30 s for the backfill daemon's
    # next pass), so the services start once.
    return Plan(
        repeat=repeat,
        main=[(2, 1, MAIN_MODES_AND_FLOOR)],
        scaling=[100, 200],
        spark_days=1,
        spark_users=10,
        day_counts=[2, 4],
        day_users=100,
        warmup=False,
        idle_seconds=0,
        timeout=300,
    )


def airflow_smoke_plan(repeat: int) -> Plan:
    """The Airflow peer's smoke: 2 days x 200 users, bare and Airflow only."""
    return Plan(
        repeat=repeat,
        main=[(2, 200, (BARE, AIRFLOW))],
        scaling=[],
        spark_days=1,
        spark_users=10,
        day_counts=[2, 4],
        day_users=100,
        warmup=False,
        idle_seconds=0,
        timeout=300,
    )


# ----------------------------------------------------------------------------------- helpers


def median_range(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "–"
    text = format(statistics.median(values), fmt)
    if len(values) > 1:
        text += f" ({format(min(values), fmt)}–{format(max(values), fmt)})"
    return text


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class Days:
    """Consecutive fresh partition days, from 2026-01-01 up to the last complete UTC day."""

    def __init__(self) -> None:
        self.next = FIRST_DAY
        self.last = date.fromtimestamp(time.time() - 86400)

    def take(self, count: int) -> list[str]:
        days = [self.next + timedelta(days=offset) for offset in range(count)]
        if days[-1] > self.last:
            raise ModeFailed(f"out of partition days (last is {self.last}); use fewer repetitions")
        self.next = days[-1] + timedelta(days=1)
        return [day.isoformat() for day in days]


def machine_info(airflow_venv: Path = AIRFLOW_VENV) -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model,
        "ram": mem_total,
        "os": platform.platform(),
        "python": platform.python_version(),
        "dagster": version("dagster"),
        "airflow": airflow_peer.installed_version(airflow_venv) or f"not installed ({airflow_venv} missing)",
        "pandas": version("pandas"),
        "pyspark": version("pyspark"),
        "java": _java_version(),
        "source": source_version(),
    }


def source_version() -> str:
    """The commit of the code measured, and how many files differ from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"commit {head}" + (f" + {len(dirty)} uncommitted files" if dirty else "")


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# ----------------------------------------------------------------------------------- the benchmark


class Benchmark:
    def __init__(self, plan: Plan, workdir: Path, log: Callable[[str], None], airflow_venv: Path = AIRFLOW_VENV):
        self.airflow_venv = airflow_venv
        self.airflow: airflow_peer.AirflowServices | None = None
        self.airflow_days: Days | None = None
        self.plan = plan
        self.workdir = workdir
        self.log = log
        self.api: Any = None
        self.services: Any = None
        self.services_users: int | None = None
        self.services_days: Days | None = None
        self.services_instance: Any = None
        self.inproc_home = workdir / "dagster_home_in_process"
        self.inproc_days = Days()
        self.counter = 0
        self.notes: list[str] = []
        # Children the caller had before: never adopted, reaped or waited for here.
        self.foreign = children_of_this_process()

    # -- environment ----------------------------------------------------------------------------
    def protected(self) -> set[int]:
        pids = set(self.foreign)
        if self.api is not None and self.api._proc is not None:
            pids.add(self.api._proc.pid)
        if self.services is not None:
            pids |= {process.pid for process in self.services._processes.values()}
        if self.airflow is not None:
            pids |= {process.pid for process in self.airflow.processes.values()}
        return pids

    def env(self, users: int, data_dir: Path, home: Path) -> dict[str, str]:
        return {
            **os.environ,
            "USER_PIPELINE_API_URL": self.api.base_url,
            "USER_PIPELINE_USERS_PER_PARTITION": str(users),
            "USER_PIPELINE_PAGE_SIZE": str(PAGE_SIZE),
            "USER_PIPELINE_DATA_DIR": str(data_dir),
            "USER_PIPELINE_WAREHOUSE_URL": f"sqlite:///{data_dir}/warehouse.sqlite",
            "DAGSTER_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
        }

    def warm_api(self, days: list[str], users: int) -> None:
        """Asks the API server, untimed, for every page a mode will ask for (the clients' paging:
        pages of min(users, PAGE_SIZE)): the server keeps them serialized (its page cache), so
        the timed run measures the pipeline, not the server generating users."""
        import requests

        size = min(users, PAGE_SIZE)
        with requests.Session() as session:
            for day in days:
                for page in range(1, -(-users // size) + 1):
                    params = {"results": size, "seed": day, "page": page, "format": "json"}
                    session.get(self.api.base_url, params=params, timeout=self.plan.timeout).raise_for_status()

    def fresh_dir(self, name: str) -> Path:
        self.counter += 1
        path = self.workdir / "runs" / f"{self.counter:04d}-{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}"
        path.mkdir(parents=True)
        return path

    def start(self) -> None:
        from user_pipeline_tools.randomuser_server.launcher import RandomUserServer

        self.api = RandomUserServer(startup_timeout=60).start()
        self.log(f"API server on {self.api.base_url}")
        self.inproc_home.mkdir(parents=True)
        shutil.copy(INSTANCE_CONFIG, self.inproc_home / "dagster.yaml")
        self.create_instance_storage(self.inproc_home)

    def create_instance_storage(self, home: Path) -> None:
        created = subprocess.run(
            [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().dispose()"],
            cwd=REPO_ROOT,
            env={**os.environ, "DAGSTER_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if created.returncode:
            raise ModeFailed(f"creating the instance in {home} failed:\n{created.stderr[-3000:]}")

    def stop(self) -> None:
        self.stop_services()
        self.stop_airflow()
        if self.api is not None:
            self.api.stop()

    # -- daemon services ------------------------------------------------------------------------
    def ensure_services(self, users: int) -> None:
        if self.services is not None and self.services_users == users:
            return
        self.stop_services()
        from dagster import DagsterInstance

        from user_pipeline_tools.dagster_services import DagsterServices

        root = self.workdir / f"daemon-{users}"
        data_dir = root / "data"
        self.log(f"starting dagster-daemon + dagster-webserver (users per partition {users:,}) ...")
        started = time.monotonic()
        env = self.env(users, data_dir, root / "dagster_home")
        env = {key: value for key, value in env.items() if key.startswith("USER_PIPELINE_")}
        self.services = DagsterServices(root / "dagster_home", env, instance_config=INSTANCE_CONFIG).start()
        # The benchmark times the ingestion: the automation that follows it (report, registry, Spark)
        # would add its runs to the measured processes, so it is stopped on this throwaway instance.
        stopped = self.services.dagster("sensor", "stop", "automation_condition_sensor", "-w", "workspace.yaml")
        if stopped.returncode != 0:
            raise RuntimeError(f"could not stop automation_condition_sensor:\n{stopped.stdout}{stopped.stderr}")
        self.services.data_dir = data_dir
        self.services_users = users
        self.services_days = Days()
        self.services_instance = DagsterInstance.from_config(str(root / "dagster_home"))
        self.log(f"  up in {time.monotonic() - started:.1f}s on {self.services.url}")
        if self.plan.warmup:
            self.log("  warm-up: a one-day job backfill (not timed) ...")
            self.job_backfill(self.services_days.take(1))
        if self.plan.idle_seconds:
            with TreeMeter(roots=self.protected() - {self.api._proc.pid}, protected=self.protected()) as meter:
                time.sleep(self.plan.idle_seconds)
            note = (
                f"Daemon + webserver with no run active, in the {self.plan.idle_seconds:g} s right after the warm-up run "
                f"({users:,} users/partition instance): "
                f"{meter.cpu_seconds / self.plan.idle_seconds * 100:.1f}% of one core, "
                f"{meter.peak_rss_bytes / 2**20:.0f} MB RSS (their code servers included)."
            )
            self.notes.append(note)
            self.log("  " + note)

    def stop_services(self) -> None:
        if self.services_instance is not None:
            self.services_instance.dispose()
            self.services_instance = None
        if self.services is not None:
            self.services.stop()
            self.services = None
            self.services_users = None
            # Their code servers, orphaned when the daemon and webserver exit, are this
            # subreaper's children now: let them go before anything else is measured.
            left = reap_strays(self.protected())
            if left:
                self.log(f"warning: processes of the stopped services still running: {left}")

    def wait_for_backfill(
        self, backfill_id: str, days: list[str], *, expected_runs: int | None, launched: float
    ) -> Result:
        """Waits until the backfill's runs all succeeded and every asset has every day."""
        from dagster import AssetKey, DagsterRunStatus, RunsFilter

        instance = self.services_instance
        deadline = time.monotonic() + self.plan.timeout
        failed_statuses = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED, DagsterRunStatus.CANCELING}
        while True:
            records = instance.get_run_records(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
            statuses = [record.dagster_run.status for record in records]
            if any(status in failed_statuses for status in statuses):
                raise ModeFailed(
                    f"backfill {backfill_id}: runs {[(r.dagster_run.run_id[:8], r.dagster_run.status.value) for r in records]}"
                    f"\n--- daemon log ---\n{self.services.logs('daemon')}"
                )
            backfill = instance.get_backfill(backfill_id)
            # By the status's name: its enum (BulkActionStatus) is not exported by `dagster`.
            if backfill is not None and backfill.status.value in BACKFILL_FAILED_STATUSES:
                raise ModeFailed(f"backfill {backfill_id} is {backfill.status.value}: {backfill.error}")
            if records and all(status == DagsterRunStatus.SUCCESS for status in statuses):
                if expected_runs is not None:
                    done = len(records) >= expected_runs
                else:
                    done = all(
                        set(days) <= set(instance.get_materialized_partitions(AssetKey(asset)))
                        for asset in DAILY_ASSETS
                    )
                if done:
                    end = max(record.end_time for record in records)
                    return Result(wall=end - launched, cpu=0.0, rss=0, runs=len(records))
            if time.monotonic() > deadline:
                raise ModeFailed(
                    f"backfill {backfill_id} not done after {self.plan.timeout:.0f}s: {[s.value for s in statuses]}"
                    f"\n--- daemon log ---\n{self.services.logs('daemon')}"
                )
            time.sleep(0.25)

    def job_backfill(self, days: list[str]) -> Result:
        log = self.fresh_dir("job-backfill") / "cli.log"
        launched = time.time()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(BIN_DIR / "dagster"),
                    "job",
                    "backfill",
                    "-w",
                    "workspace.yaml",
                    "-j",
                    "daily_users_job",
                    "--from",
                    days[0],
                    "--to",
                    days[-1],
                    "--noprompt",
                ],
                cwd=REPO_ROOT,
                env=self.services.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._current_meter_add(process.pid)
        try:
            returncode = process.wait(timeout=self.plan.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise ModeFailed(f"dagster job backfill timed out:\n{tail(log)}") from None
        match = re.search(r"Launched backfill job `([^`]+)`", tail(log, 20000))
        if returncode or not match:
            raise ModeFailed(f"dagster job backfill exited {returncode}:\n{tail(log)}")
        return self.wait_for_backfill(match.group(1), days, expected_runs=len(days), launched=launched)

    def asset_backfill(self, days: list[str]) -> Result:
        launched = time.time()
        try:
            backfill_id = DagsterGraphQL(self.services.url).launch_backfill_params(
                {"assetSelection": [{"path": [asset]} for asset in DAILY_ASSETS], "partitionNames": days}
            )
        except TriggerError as error:
            raise ModeFailed(f"launchPartitionBackfill: {error}") from None
        return self.wait_for_backfill(backfill_id, days, expected_runs=None, launched=launched)

    def range_run(self, days: list[str]) -> Result:
        """One run of daily_users_job over the days (the range tags), as the UI's "Launch as...
        Single run" and `graphql_triggers launch-run --from --to` queue it: no backfill daemon."""
        launched = time.time()
        try:
            run_id = DagsterGraphQL(self.services.url).launch_run(
                "daily_users_job", partition_range=(days[0], days[-1])
            )
        except TriggerError as error:
            raise ModeFailed(f"launchRun: {error}") from None
        return self.wait_for_run(run_id, launched=launched)

    def wait_for_run(self, run_id: str, *, launched: float) -> Result:
        """Waits until the run has succeeded; its recorded end time ends the wall time."""
        from dagster import DagsterRunStatus

        deadline = time.monotonic() + self.plan.timeout
        while True:
            record = self.services_instance.get_run_record_by_id(run_id)
            status = record.dagster_run.status if record is not None else None
            if status == DagsterRunStatus.SUCCESS:
                return Result(wall=record.end_time - launched, cpu=0.0, rss=0, runs=1)
            if status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED, DagsterRunStatus.CANCELING):
                raise ModeFailed(f"run {run_id} is {status.value}\n--- daemon log ---\n{self.services.logs('daemon')}")
            if time.monotonic() > deadline:
                raise ModeFailed(f"run {run_id} not done after {self.plan.timeout:.0f}s: {status}")
            time.sleep(0.25)

    _meter: TreeMeter | None = None

    def _current_meter_add(self, pid: int) -> None:
        if self._meter is not None:
            self._meter.add_root(pid)

    def measure_daemon(self, mode: str, days: list[str]) -> Result:
        roots = {process.pid for process in self.services._processes.values()}
        with TreeMeter(roots=roots, protected=self.protected()) as meter:
            self._meter = meter
            try:
                launch = {
                    JOB_BACKFILL: self.job_backfill,
                    ASSET_BACKFILL: self.asset_backfill,
                    RANGE_RUN: self.range_run,
                }
                result = launch[mode](days)
                # Until the run workers have exited (their CPU is then in their code server's);
                # long-lived helpers such as a code server's resource tracker only go quiet.
                meter.settle(timeout=60, quiet=1.0)
            finally:
                self._meter = None
        result.cpu, result.rss, result.peak_processes = meter.cpu_seconds, meter.peak_rss_bytes, peak_by_name(meter)
        self.check_warehouse(self.services.data_dir, days)
        return result

    # -- the Airflow peer -------------------------------------------------------------------------
    def airflow_unavailable(self) -> str | None:
        installed = airflow_peer.installed_version(self.airflow_venv)
        if installed is None:
            return f"skipped: {self.airflow_venv} not found (make benchmark-airflow-setup)"
        if installed != airflow_peer.pinned_version():
            return (
                f"skipped: {self.airflow_venv} has Airflow {installed}, benchmarks/airflow/requirements.txt pins "
                f"{airflow_peer.pinned_version()} (make benchmark-airflow-setup)"
            )
        return None

    def ensure_airflow(self, users: int) -> None:
        if self.airflow is not None and self.airflow.users == users:
            return
        self.stop_airflow()
        root = self.workdir / f"airflow-{users}"
        root.mkdir(parents=True)
        self.log(f"starting Airflow (api-server, scheduler, dag-processor; users per day {users:,}) ...")
        started = time.monotonic()
        self.airflow = airflow_peer.AirflowServices(
            self.airflow_venv, root, api_url=self.api.base_url, users=users, log=self.log
        ).start()
        self.airflow_days = Days()
        self.log(f"  up in {time.monotonic() - started:.1f}s on {self.airflow.url}")
        if self.plan.warmup:
            self.log("  warm-up: a one-day backfill (not timed) ...")
            days = self.airflow_days.take(1)
            _, backfill_id = self.airflow.create_backfill(days)
            self.airflow.wait_for_backfill(backfill_id, days, timeout=self.plan.timeout)
            self.airflow.wait_for_backfill_completed(backfill_id, timeout=self.plan.timeout)
        if self.plan.idle_seconds:
            roots = {process.pid for process in self.airflow.processes.values()}
            with TreeMeter(roots=roots, protected=self.protected()) as meter:
                time.sleep(self.plan.idle_seconds)
            note = (
                f"Airflow's api-server + scheduler + dag-processor with no run active, in the {self.plan.idle_seconds:g} s "
                f"after {'the warm-up run' if self.plan.warmup else 'start'} ({users:,} users/day): "
                f"{meter.cpu_seconds / self.plan.idle_seconds * 100:.1f}% of one core, {meter.peak_rss_bytes / 2**20:.0f} MB RSS."
            )
            self.notes.append(note)
            self.log("  " + note)

    def stop_airflow(self) -> None:
        if self.airflow is not None:
            self.airflow.stop()
            self.airflow = None
            left = reap_strays(self.protected())
            if left:
                self.log(f"warning: processes of the stopped Airflow services still running: {left}")

    def measure_airflow(self, days: list[str]) -> Result:
        roots = {process.pid for process in self.airflow.processes.values()}
        with TreeMeter(roots=roots, protected=self.protected()) as meter:
            launched, backfill_id = self.airflow.create_backfill(
                days, on_cli_started=meter.add_root, timeout=self.plan.timeout
            )
            end, runs = self.airflow.wait_for_backfill(backfill_id, days, timeout=self.plan.timeout)
            # The task processes have exited once their runs are done; the services only go quiet.
            meter.settle(timeout=60, quiet=1.0)
        self.check_warehouse(self.airflow.data_dir, days)
        # Untimed: one running backfill per DAG, marked complete by the scheduler's 30 s loop.
        self.airflow.wait_for_backfill_completed(backfill_id, timeout=self.plan.timeout)
        return Result(
            wall=end - launched,
            cpu=meter.cpu_seconds,
            rss=meter.peak_rss_bytes,
            runs=runs,
            peak_processes=peak_by_name(meter),
        )

    # -- subprocess modes -----------------------------------------------------------------------
    def measure_commands(
        self, commands: list[list[str]], env: dict[str, str], log: Path, runs: int | None, cwd: Path = REPO_ROOT
    ) -> Result:
        strays = reap_strays(self.protected(), timeout=10)
        if strays:
            self.log(f"warning: processes left by an earlier mode still running: {strays}")
        with TreeMeter(protected=self.protected()) as meter:
            started = time.perf_counter()
            for command in commands:
                with log.open("ab") as out:
                    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
                meter.add_root(process.pid)
                try:
                    returncode = process.wait(timeout=self.plan.timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    raise ModeFailed(
                        f"timed out after {self.plan.timeout:.0f}s: {' '.join(command)}\n{tail(log)}"
                    ) from None
                if returncode:
                    raise ModeFailed(f"exited {returncode}: {' '.join(command)}\n{tail(log)}")
            wall = time.perf_counter() - started
            left = meter.settle(timeout=60)
            if left:
                self.log(f"warning: still running 60 s after the mode ended: {left}")
        return Result(
            wall=wall, cpu=meter.cpu_seconds, rss=meter.peak_rss_bytes, runs=runs, peak_processes=peak_by_name(meter)
        )

    def baseline_tree(self) -> Path:
        """A worktree of the baseline commit under the work directory (made once, never timed)."""
        tree = self.workdir / "baseline"
        if not tree.exists():
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), self.plan.baseline],
                cwd=REPO_ROOT,
                check=True,
                capture_output=True,
            )
        return tree

    def run_users_mode(self, mode: str, days: list[str], users: int) -> Result:
        if mode in DAEMON_MODES:
            return self.measure_daemon(mode, days)
        run_dir = self.fresh_dir(mode)
        cwd = REPO_ROOT
        data_dir = run_dir / "data"
        env = self.env(users, data_dir, self.inproc_home)
        if mode == BARE:
            commands, runs = [[sys.executable, "-m", "benchmarks.bare", *days]], None
        elif mode == BARE_BASELINE:
            # Run from the baseline's tree: `python -m` puts it first on the path, before the
            # project's editable install; the same interpreter and packages.
            cwd = self.baseline_tree()
            commands, runs = [[sys.executable, "-m", "benchmarks.bare", *days]], None
        elif mode in (CLI, FLOOR):
            module = "user_pipeline.definitions" if mode == CLI else "benchmarks.noop_assets"
            commands = [
                [
                    str(BIN_DIR / "dagster"),
                    "asset",
                    "materialize",
                    "-m",
                    module,
                    "--select",
                    ",".join(DAILY_ASSETS),
                    "--partition",
                    day,
                ]
                for day in days
            ]
            runs = len(days)
        elif mode in (API, API_FLOOR):
            floor = ["--floor"] if mode == API_FLOOR else []
            commands, runs = [[sys.executable, "-m", "benchmarks.dagster_api", *floor, *days]], len(days)
        elif mode == API_RANGE:
            commands, runs = [[sys.executable, "-m", "benchmarks.dagster_api", "--range", days[0], days[-1]]], 1
        else:
            raise ValueError(mode)
        result = self.measure_commands(commands, env, run_dir / "output.log", runs, cwd)
        if mode not in (FLOOR, API_FLOOR):
            self.check_warehouse(data_dir, days)
        return result

    def check_warehouse(self, data_dir: Path, days: list[str]) -> None:
        import sqlite3

        connection = sqlite3.connect(data_dir / "warehouse.sqlite")
        try:
            counts = dict(
                connection.execute(
                    f"SELECT partition_date, COUNT(*) FROM users WHERE partition_date IN ({','.join('?' * len(days))}) "
                    "GROUP BY partition_date",
                    days,
                ).fetchall()
            )
        finally:
            connection.close()
        missing = [day for day in days if not counts.get(day)]
        if missing:
            raise ModeFailed(f"no rows in {data_dir}/warehouse.sqlite for {missing}")

    # -- spark ----------------------------------------------------------------------------------
    def prepare_spark_source(self, days: list[str], users: int) -> Path:
        source = self.workdir / "spark-source"
        env = self.env(users, source, self.inproc_home)
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bare", *days],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=self.plan.timeout,
            check=False,
        )
        if done.returncode:
            raise ModeFailed(f"preparing the normalized CSVs failed:\n{done.stderr[-3000:]}")
        return source / "normalized_users"

    def run_spark_mode(self, mode: str, days: list[str], users: int, source: Path) -> Result:
        run_dir = self.fresh_dir(mode)
        data_dir = run_dir / "data"
        shutil.copytree(source, data_dir / "normalized_users")
        env = self.env(users, data_dir, self.inproc_home)
        materialize = [
            str(BIN_DIR / "dagster"),
            "asset",
            "materialize",
            "-m",
            "user_pipeline.definitions",
            "--select",
            "users_parquet",
        ]
        if mode == SPARK_BARE:
            commands = [
                [
                    sys.executable,
                    "-m",
                    "spark_jobs.ingest_users",
                    "--input-dir",
                    str(data_dir / "normalized_users"),
                    "--start-date",
                    days[0],
                    "--end-date",
                    days[-1],
                    "--output-dir",
                    str(data_dir / "parquet"),
                    "--master",
                    "local[*]",
                ]
            ]
            runs = None
        elif mode == SPARK_PER_DAY:
            commands, runs = [[*materialize, "--partition", day] for day in days], len(days)
        elif mode == SPARK_RANGE:
            commands, runs = [[*materialize, "--partition-range", f"{days[0]}...{days[-1]}"]], 1
        else:
            raise ValueError(mode)
        result = self.measure_commands(commands, env, run_dir / "output.log", runs)
        missing = [day for day in days if not (data_dir / "parquet" / "users" / f"partition_date={day}").is_dir()]
        if missing:
            raise ModeFailed(f"{mode}: no Parquet partition for {missing} in {data_dir / 'parquet'}")
        return result

    # -- the plan -------------------------------------------------------------------------------
    def run_case(self, case: Case, run_one: Callable[[str, int], Result]) -> None:
        # Modes that cannot run here (skipped), or whose services failed to start (already an error).
        runnable = tuple(
            mode for mode in case.modes if mode not in case.skipped and not (mode == AIRFLOW and self.airflow is None)
        )
        if not runnable:
            return
        for rep in range(self.plan.repeat):
            modes = runnable[rep % len(runnable) :] + runnable[: rep % len(runnable)]
            for mode in modes:
                label = f"[{case.section}] {case.label} rep {rep + 1}/{self.plan.repeat} {mode}"
                try:
                    result = run_one(mode, rep)
                except Exception as error:  # noqa: BLE001 - reported; the other modes go on
                    message = f"{type(error).__name__}: {error}"
                    if not isinstance(error, ModeFailed):
                        message += "\n" + traceback.format_exc()
                    case.errors.setdefault(mode, []).append(message)
                    self.log(f"{label}: FAILED {message[-4000:]}")
                    continue
                case.results.setdefault(mode, []).append(result)
                runs = f", {result.runs} runs" if result.runs is not None else ""
                peak = ", ".join(f"{name} {mb:.0f}" for name, mb in result.peak_processes.items())
                self.log(
                    f"{label}: {result.wall:.2f}s wall, {result.cpu:.2f}s CPU, {result.rss / 2**20:.0f} MB{runs} (peak MB: {peak})"
                )

    def run_in_process_case(self, case: Case) -> Case:
        """Runs `case`'s modes without the daemon, each repetition's modes on the same fresh days."""
        days_by_rep: dict[int, list[str]] = {}

        def run_one(mode: str, rep: int) -> Result:
            if rep not in days_by_rep:
                days_by_rep[rep] = self.inproc_days.take(case.partitions)
            self.warm_api(days_by_rep[rep], case.users)
            return self.run_users_mode(mode, days_by_rep[rep], case.users)

        self.run_case(case, run_one)
        return case

    def run(self, sections: set[str]) -> list[Case]:
        cases: list[Case] = []
        if "main" in sections:
            # Daemon cases grouped by users setting: the services restart (untimed) between groups.
            order = sorted(self.plan.main, key=lambda spec: -spec[1])
            for partitions, users, modes in order:
                case = Case("main", partitions, users, modes)
                cases.append(case)
                if AIRFLOW in modes:
                    # Alone with bare: neither orchestrator's idle services run beside the other's.
                    self.stop_services()
                    why = self.airflow_unavailable()
                    if why is not None:
                        case.skipped[AIRFLOW] = why
                    else:
                        try:
                            self.ensure_airflow(users)
                        except Exception as error:  # noqa: BLE001 - reported; the other modes go on
                            self.stop_airflow()
                            case.errors.setdefault(AIRFLOW, []).append(f"Airflow services: {error}")
                            self.log(f"Airflow services failed to start: {error}")
                else:
                    self.stop_airflow()
                if any(mode in DAEMON_MODES for mode in modes):
                    try:
                        self.ensure_services(users)
                    except Exception as error:  # noqa: BLE001 - reported; the other modes go on
                        for mode in modes:
                            case.errors.setdefault(mode, []).append(f"services: {error}")
                        self.log(f"services failed to start: {error}")
                        continue
                shared_days: dict[int, list[str]] = {}

                def run_one(mode: str, rep: int, case: Case = case, shared_days: dict = shared_days) -> Result:
                    if mode == AIRFLOW:
                        days = self.airflow_days.take(case.partitions)
                        self.warm_api(days, case.users)
                        return self.measure_airflow(days)
                    if mode in DAEMON_MODES:
                        days = self.services_days.take(case.partitions)
                    else:
                        if rep not in shared_days:
                            shared_days[rep] = self.inproc_days.take(case.partitions)
                        days = shared_days[rep]
                    self.warm_api(days, case.users)
                    return self.run_users_mode(mode, days, case.users)

                self.run_case(case, run_one)
            self.stop_services()
            self.stop_airflow()
        if "scaling" in sections:
            for users in self.plan.scaling:
                cases.append(
                    self.run_in_process_case(Case("scaling", 1, users, self.plan.with_baseline(SCALING_MODES)))
                )
        if "bare" in sections:
            # Only the bare script (and the baseline commit's, with --baseline): issue #16's cases,
            # 10 x 5,000 and one day of 10,000 and of 100,000 users (the memory target's pair).
            for section, partitions, users in (("main", 10, 5000), ("scaling", 1, 10_000), ("scaling", 1, 100_000)):
                cases.append(
                    self.run_in_process_case(Case(section, partitions, users, self.plan.with_baseline((BARE,))))
                )
        if "days" in sections:
            for count in self.plan.day_counts:
                cases.append(self.run_in_process_case(Case("days", count, self.plan.day_users, DAYS_MODES)))
        if "spark" in sections:
            case = Case("spark", self.plan.spark_days, self.plan.spark_users, SPARK_MODES)
            cases.append(case)
            days = self.inproc_days.take(self.plan.spark_days)
            try:
                source = self.prepare_spark_source(days, self.plan.spark_users)
            except Exception as error:  # noqa: BLE001 - reported; the other modes go on
                for mode in SPARK_MODES:
                    case.errors.setdefault(mode, []).append(str(error))
            else:
                self.run_case(case, lambda mode, rep: self.run_spark_mode(mode, days, self.plan.spark_users, source))
        return cases


# ----------------------------------------------------------------------------------- report


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "–"


def case_table(cases: list[Case]) -> list[str]:
    lines = [
        "| case (days x users/day) | mode | runs | wall s | CPU s | peak RSS MB | wall / bare | CPU / bare | memory / bare |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in cases:
        baseline = case.results.get(BASELINE[case.section], [])
        base = (
            (
                statistics.median(r.wall for r in baseline),
                statistics.median(r.cpu for r in baseline),
                statistics.median(r.rss for r in baseline),
            )
            if baseline
            else None
        )
        for mode in case.modes:
            results = case.results.get(mode, [])
            failures = len(case.errors.get(mode, []))
            failed = f" ({failures} failed)" if failures else ""
            if mode in case.skipped:
                lines.append(f"| {case.label} | {mode} | – | {case.skipped[mode]} | – | – | – | – | – |")
                continue
            if not results:
                lines.append(f"| {case.label} | {mode} | – | FAILED{failed} | – | – | – | – | – |")
                continue
            walls, cpus, rsss = [r.wall for r in results], [r.cpu for r in results], [r.rss / 2**20 for r in results]
            runs = results[0].runs
            runs_text = (
                "–"
                if runs is None
                else str(runs)
                if all(r.runs == runs for r in results)
                else "/".join(str(r.runs) for r in results)
            )
            ratios = ["–", "–", "–"]
            if base and mode != BASELINE[case.section]:
                ratios = [
                    ratio(statistics.median(walls), base[0]),
                    ratio(statistics.median(cpus), base[1]),
                    ratio(statistics.median(r.rss for r in results), base[2]),
                ]
            lines.append(
                f"| {case.label} | {mode}{failed} | {runs_text} | {median_range(walls, '.2f')} | {median_range(cpus, '.2f')} "
                f"| {median_range(rsss, '.0f')} | {' | '.join(ratios)} |"
            )
    return lines


def medians(case: Case, mode: str) -> tuple[float, float, float] | None:
    results = case.results.get(mode)
    if not results:
        return None
    return (
        statistics.median(r.wall for r in results),
        statistics.median(r.cpu for r in results),
        statistics.median(r.rss for r in results),
    )


def scaling_lines(cases: list[Case]) -> list[str]:
    series = [case for case in cases if case.section == "scaling"]
    if len(series) < 2:
        return []
    start = next((case for case in series if case.users == 10_000), series[0])
    end = series[-1]
    factor = end.users / start.users
    lines = [
        f"Growth from {start.users:,} to {end.users:,} users per partition (x{factor:g} the users):",
        "",
        "| mode | wall | CPU | peak memory |",
        "| --- | ---: | ---: | ---: |",
    ]
    for mode in SCALING_MODES:
        first, last = medians(start, mode), medians(end, mode)
        if first and last:
            lines.append(
                f"| {mode} | x{last[0] / first[0]:.2f} | x{last[1] / first[1]:.2f} | x{last[2] / first[2]:.2f} |"
            )
    return lines


def days_lines(cases: list[Case]) -> list[str]:
    """Peak memory by the number of days in the run (the same users a day): a range run's worker
    that kept something per day would grow with them."""
    series = [case for case in cases if case.section == "days"]
    if len(series) < 2:
        return []
    lines = [
        f"Peak memory (MB) by days in the run, {series[0].users:,} users a day:",
        "",
        "| mode | " + " | ".join(f"{case.partitions} days" for case in series) + " |",
        "| --- | " + " | ".join("---:" for _ in series) + " |",
    ]
    for mode in DAYS_MODES:
        peaks = [medians(case, mode) for case in series]
        if all(peaks):
            lines.append(f"| {mode} | " + " | ".join(f"{peak[2] / 2**20:.0f}" for peak in peaks) + " |")
    return lines


# A range run's process warms up over its first days (allocator arenas, caches): the target compares
# the longest run with the one before it (8 -> 31 days). Within this, it counts as not growing
# (single peaks of the same run vary by a few percent here).
DAYS_MEMORY_TOLERANCE = 1.10


def target_lines(cases: list[Case]) -> list[str]:
    lines = []
    # The Airflow peer's case (bare and Airflow only) has the same size as the main 10 x 5,000: apart.
    by_label = {(case.section, case.partitions, case.users): case for case in cases if AIRFLOW not in case.modes}

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    one = by_label.get(("main", 1, 5000))
    if one and medians(one, BARE):
        base = medians(one, BARE)[0]
        for mode, floor_mode in ((CLI, FLOOR), (API, API_FLOOR)):
            m, floor = medians(one, mode), medians(one, floor_mode)
            if m:
                lines.append(
                    f"- dagster in process ({mode}) for 1 x 5,000 within 2x of bare: "
                    f"{verdict(m[0] / base <= 2)} ({m[0] / base:.2f}x wall)"
                )
            if floor:
                # The same graph doing nothing, plus the work done without Dagster: such a run of
                # this work cannot take less (python's start, ~0.04 s, is counted twice).
                lines.append(
                    f"  - {floor_mode}: {floor[0] / base:.2f}x of bare with no work at all; "
                    f"floor + bare, the least this way can take: {(floor[0] + base) / base:.2f}x"
                )
    ten = by_label.get(("main", 10, 5000))
    if ten and medians(ten, BARE):
        base = medians(ten, BARE)[0]
        daemon = [(medians(ten, mode)[0] / base, mode) for mode in DAEMON_MODES if medians(ten, mode)]
        if daemon:
            best, mode = min(daemon)
            others = ", ".join(f"{m}: {r:.2f}x" for r, m in daemon)
            lines.append(
                f"- 10 x 5,000 daemon backfill (best mode) within 3x of bare: {verdict(best <= 3)} "
                f"({best:.2f}x wall, {mode}; {others})"
            )
    for label in (("main", 10, 5000), ("scaling", 1, 100_000)):
        case = by_label.get(label)
        new, old = (medians(case, BARE), medians(case, BARE_BASELINE)) if case else (None, None)
        if new and old:
            lines.append(
                f"- bare work for {label[1]} x {label[2]:,}: at most half of the baseline commit's: "
                f"{verdict(new[0] <= old[0] / 2)} (wall {new[0]:.2f} s against {old[0]:.2f} s: {new[0] / old[0]:.2f}x; "
                f"CPU {new[1]:.2f} s against {old[1]:.2f} s: {new[1] / old[1]:.2f}x)"
            )
    peers = [case for case in cases if case.section == "main" and (case.partitions, case.users) == (10, 5000)]
    airflow = next((medians(case, AIRFLOW) for case in peers if medians(case, AIRFLOW)), None)
    if ten and airflow:
        launched = [(medians(ten, mode)[0], mode) for mode in DAEMON_MODES if medians(ten, mode)]
        if launched:
            best, mode = min(launched)
            lines.append(
                f"- 10 x 5,000 on running services, launch to all in the table, at most 1/5 of Airflow's time: "
                f"{verdict(best <= airflow[0] / 5)} ({mode} {best:.1f} s against Airflow {airflow[0]:.1f} s: "
                f"{airflow[0] / best:.1f}x faster)"
            )
    days = [case for case in cases if case.section == "days"]
    if len(days) >= 2 and medians(days[-2], API_RANGE) and medians(days[-1], API_RANGE):
        before, last = medians(days[-2], API_RANGE)[2], medians(days[-1], API_RANGE)[2]
        lines.append(
            f"- a {days[-1].partitions}-day range run's worker does not grow with the days ({API_RANGE}, peak "
            f"within x{DAYS_MEMORY_TOLERANCE:.2f} of {days[-2].partitions} days'): "
            f"{verdict(last / before <= DAYS_MEMORY_TOLERANCE)} (x{last / before:.2f}, {before / 2**20:.0f} -> "
            f"{last / 2**20:.0f} MB)"
        )
    start = by_label.get(("scaling", 1, 10_000))
    end = by_label.get(("scaling", 1, 100_000))
    if start and end:
        for mode in SCALING_MODES:
            first, last = medians(start, mode), medians(end, mode)
            if first and last:
                time_ok = last[0] / first[0] <= 10 and last[1] / first[1] <= 10
                mem_ok = last[2] / first[2] <= 1.5
                lines.append(
                    f"- {mode}, 10k -> 100k users: time at most linear (<= x10): {verdict(time_ok)} "
                    f"(wall x{last[0] / first[0]:.2f}, CPU x{last[1] / first[1]:.2f}); peak memory within 1.5x: "
                    f"{verdict(mem_ok)} (x{last[2] / first[2]:.2f}, {first[2] / 2**20:.0f} -> {last[2] / 2**20:.0f} MB)"
                )
    return lines


def report(
    cases: list[Case],
    info: dict[str, str],
    command: str,
    started_load: str,
    ended_load: str,
    notes: list[str],
    elapsed: float,
    smoke: bool,
) -> str:
    out = [f"Command: `{command}`", ""]
    out.append("Machine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    out.append(
        f"Load average (1, 5, 15 min) at start: {started_load}; at end: {ended_load}. Total time {elapsed / 60:.1f} min."
    )
    out.append("")
    for section, title in (
        ("main", "Orchestration overhead"),
        ("scaling", "Scaling: one partition, more users"),
        ("days", "Days in one range run (the worker's memory)"),
        ("spark", "Spark ingestion (users_parquet, local[*])"),
    ):
        chosen = [case for case in cases if case.section == section]
        if not chosen:
            continue
        out += [f"### {title}", ""] + case_table(chosen) + [""]
        extra = scaling_lines(cases) if section == "scaling" else days_lines(cases) if section == "days" else []
        if extra:
            out += extra + [""]
    if notes:
        out += ["Notes:", ""] + [f"- {note}" for note in notes] + [""]
    targets = target_lines(cases)
    if targets and not smoke:
        out += ["Targets:", ""] + targets + [""]
    failures = [(case.label, mode, error) for case in cases for mode, errors in case.errors.items() for error in errors]
    if failures:
        out += ["Failures:", ""] + [
            f"- {label} {mode}: {error.splitlines()[0] if error else ''}" for label, mode, error in failures
        ]
    return "\n".join(out)


# ----------------------------------------------------------------------------------- entry points


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, 1 repetition, no warm-up; exit 1 on any failure"
    )
    parser.add_argument(
        "--airflow-smoke",
        action="store_true",
        help="the Airflow peer's smoke: 2 days x 200 users, bare and Airflow, 1 repetition; "
        "exit 1 unless both ran (a missing .venv-airflow fails it)",
    )
    parser.add_argument(
        "--airflow-venv",
        type=Path,
        default=AIRFLOW_VENV,
        help=f"the venv of `make benchmark-airflow-setup` (default {AIRFLOW_VENV})",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per mode (default 3; 1 with --smoke)")
    parser.add_argument(
        "--sections",
        default=None,
        help="comma list of main,scaling,days,spark (default all; --smoke: main,scaling), or bare: only the bare "
        "script (with --baseline, against that commit's) for 10 x 5,000, 1 x 10,000 and 1 x 100,000",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="COMMIT",
        help="also time benchmarks/bare.py as of COMMIT (a git worktree) in the 10 x 5,000 and scaling cases",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where data and instances go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--json", type=Path, default=None, help="write every measurement to this file")
    args = parser.parse_args(argv)
    if args.smoke and args.airflow_smoke:
        parser.error("--smoke and --airflow-smoke are two different runs: choose one")
    if args.repeat is None:
        args.repeat = 1 if args.smoke or args.airflow_smoke else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.sections is None:
        args.sections = "main,scaling" if args.smoke else "main" if args.airflow_smoke else "main,scaling,days,spark"
    args.sections = {section.strip() for section in args.sections.split(",") if section.strip()}
    unknown = args.sections - {"main", "scaling", "days", "spark", "bare"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m benchmarks.run" + "".join(f" {arg}" for arg in (sys.argv[1:] if argv is None else argv))
    plan = (
        smoke_plan(args.repeat)
        if args.smoke
        else airflow_smoke_plan(args.repeat)
        if args.airflow_smoke
        else full_plan(args.repeat)
    )

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    if not become_subreaper(True):
        log("warning: could not become a child subreaper; CPU of orphaned processes (Spark's JVM) may be missed")
    if args.baseline:
        plan.baseline = args.baseline
        plan.main = [
            (
                partitions,
                users,
                plan.with_baseline(modes) if (partitions, users) == (10, 5000) and AIRFLOW not in modes else modes,
            )
            for partitions, users, modes in plan.main
        ]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="user-pipeline-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine_info(args.airflow_venv.resolve())
    started_load, started = load_average(), time.monotonic()
    log(f"work directory {workdir}; plan {asdict(plan)}; sections {sorted(args.sections)}")
    bench = Benchmark(plan, workdir, log, airflow_venv=args.airflow_venv.resolve())
    cases: list[Case] = []
    setup_error = None
    try:
        bench.start()
        cases = bench.run(args.sections)
    except Exception as error:  # noqa: BLE001 - reported; the other modes go on
        setup_error = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
        log(f"benchmark failed: {setup_error}")
    finally:
        bench.stop()
        become_subreaper(False)
        if plan.baseline and (workdir / "baseline").exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(workdir / "baseline")], cwd=REPO_ROOT)
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    text = report(
        cases,
        info,
        command,
        started_load,
        load_average(),
        bench.notes,
        time.monotonic() - started,
        args.smoke or args.airflow_smoke,
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "machine": info,
                    "plan": asdict(plan),
                    "notes": bench.notes,
                    "cases": [
                        {
                            "section": c.section,
                            "partitions": c.partitions,
                            "users": c.users,
                            "results": {m: [asdict(r) for r in rs] for m, rs in c.results.items()},
                            "errors": c.errors,
                            "skipped": c.skipped,
                        }
                        for c in cases
                    ],
                },
                indent=2,
            )
        )
    failed = setup_error is not None or any(case.errors for case in cases) or not cases
    if args.airflow_smoke and any(case.skipped for case in cases):
        failed = True  # the Airflow smoke exists to run Airflow
    missing = [
        (case.label, mode)
        for case in cases
        for mode in case.modes
        if not case.results.get(mode) and mode not in case.skipped
    ]
    return 1 if failed or missing else 0


def run_smoke(spark: bool = False) -> int:
    """The smoke benchmark (tiny sizes, one repetition): 0 when every mode succeeded.

    Runs `python -m benchmarks.run --smoke` in a child process, so that the caller (e.g. a
    pytest session) does not become a child subreaper nor import Dagster; its output goes to
    the caller's stdout and stderr. `spark=True` adds the Spark section (1 day x 10 users:
    three Spark applications, about a minute more)."""
    command = [sys.executable, "-m", "benchmarks.run", "--smoke"]
    if spark:
        command += ["--sections", "main,scaling,spark"]
    return subprocess.call(command, cwd=REPO_ROOT)


if __name__ == "__main__":
    sys.exit(main())
