"""The benchmark's Airflow peer: Apache Airflow (its own venv) running the seed's DAG, fixed.

    services = AirflowServices(venv, root, api_url=..., users=5000, log=print).start()
    launched, backfill_id = services.create_backfill(days, on_cli_started=meter.add_root)
    end, runs = services.wait_for_backfill(backfill_id, days, timeout=600)  # end: the last run's end
    services.wait_for_backfill_completed(backfill_id, timeout=120)     # before the next backfill
    services.stop()

``make benchmark-airflow-setup`` installs Airflow into ``.venv-airflow`` from
benchmarks/airflow/requirements.txt; this module only drives it with subprocesses and reads its
metadata database, so the project's venv needs no Airflow. The DAG is
benchmarks/airflow/dags/user_processing.py (its docstring says what it does).

The instance, one per `root`: AIRFLOW_HOME under `root`, metadata database SQLite (LocalExecutor
accepts it in Airflow 3.3: tasks reach the database through the API server's execution API),
LocalExecutor with ``parallelism`` 4 and backfills with ``--max-active-runs 4`` (user_pipeline's
instance runs at most 4 runs at once, each running its steps in process), no examples, the DAGs folder above, ``[scheduler] use_job_schedule`` off (only
backfills create runs: unpausing the DAG must not start a run of the latest day), the API
server and the scheduler's log server on free loopback ports, one JWT secret for every
component. The DAG's settings are environment variables the task processes inherit: the
connections ``users_api`` (the bundled API server) and ``user_warehouse`` (a SQLite file, as
user_pipeline's default warehouse) and the Variables ``user_processing_users_per_day`` and
``user_processing_data_dir``. Started before anything is timed: ``airflow db migrate``, then
``airflow api-server``, ``airflow scheduler`` and ``airflow dag-processor``, each in its own
session, up once /api/v2/monitor/health says the scheduler and the DAG processor are healthy
and the DAG is parsed; then ``airflow dags unpause``. No triggerer: nothing in the DAG defers.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests

from user_pipeline_tools.randomuser_server.launcher import free_port

AIRFLOW_DIR = Path(__file__).resolve().parent / "airflow"
DAGS_FOLDER = AIRFLOW_DIR / "dags"
CONFIG_FOLDER = AIRFLOW_DIR / "config"  # importable by the Airflow processes (PYTHONPATH)
REQUIREMENTS = AIRFLOW_DIR / "requirements.txt"
DAG_ID = "user_processing"
SERVICES = ("api-server", "scheduler", "dag-processor")
# user_pipeline's instance runs at most 4 runs at once (dagster_home/dagster.yaml); the backfill gets the same.
MAX_ACTIVE_RUNS = 4


class AirflowFailed(RuntimeError):
    pass


def installed_version(venv: Path) -> str | None:
    """Airflow's version in `venv` (from its dist-info, without starting Python), or None."""
    found = sorted(venv.glob("lib/python*/site-packages/apache_airflow-*.dist-info"))
    if not (venv / "bin" / "airflow").exists() or not found:
        return None
    return found[-1].name.removeprefix("apache_airflow-").removesuffix(".dist-info")


def pinned_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("apache-airflow=="):
            return line.split("==", 1)[1].strip()
    return "unknown"


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class AirflowServices:
    """One Airflow instance with its services running (see the module docstring)."""

    def __init__(
        self,
        venv: Path,
        root: Path,
        *,
        api_url: str,
        users: int,
        log: Callable[[str], None],
        startup_timeout: float = 180.0,
    ):
        self.venv = venv
        self.root = root
        self.home = root / "airflow_home"
        self.data_dir = root / "data"
        self.users = users
        self.log = log
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        api = requests.utils.urlparse(api_url)
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "DAGSTER", "USER_PIPELINE_")) and key not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        self.env = {
            **inherited,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            # Its SQLite metadata database waits for a write lock (benchmarks/airflow/config/user_processing_db.py).
            "PYTHONPATH": str(CONFIG_FOLDER),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "user_processing_db.CONNECT_ARGS",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # At most 4 tasks at once, as user_pipeline runs at most 4 runs of in-process steps. The default,
            # 32, forks 32 LocalExecutor workers up front: ~4.6 GB of RSS summed (shared copy-on-write pages
            # counted once per process) in a 2 x 200 smoke, for nothing that 2 cores can use.
            "AIRFLOW__CORE__PARALLELISM": str(MAX_ACTIVE_RUNS),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_USERS_API": json.dumps(
                {"conn_type": "http", "host": api.hostname, "port": api.port, "schema": api.scheme}
            ),
            "AIRFLOW_CONN_USER_WAREHOUSE": json.dumps(
                {"conn_type": "sqlite", "host": str(self.data_dir / "warehouse.sqlite")}
            ),
            "AIRFLOW_VAR_USER_PROCESSING_USERS_PER_DAY": str(users),
            "AIRFLOW_VAR_USER_PROCESSING_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def metadata_db(self) -> Path:
        return self.home / "airflow.db"

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.venv / "bin" / "airflow"), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_path(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def logs(self, name: str, chars: int = 4000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> AirflowServices:
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        migrated = self.airflow("db", "migrate")
        if migrated.returncode:
            raise AirflowFailed(
                f"airflow db migrate exited {migrated.returncode}:\n{migrated.stdout[-2000:]}{migrated.stderr[-3000:]}"
            )
        try:
            for name in SERVICES:
                with self.log_path(name).open("wb") as out:
                    self.processes[name] = subprocess.Popen(
                        [str(self.venv / "bin" / "airflow"), name],
                        env=self.env,
                        cwd=self.root,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            self._wait_until_up()
            unpaused = self.airflow("dags", "unpause", DAG_ID, "-y")
            if unpaused.returncode:
                raise AirflowFailed(f"airflow dags unpause exited {unpaused.returncode}:\n{unpaused.stderr[-3000:]}")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        health: dict = {}
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AirflowFailed(f"airflow {name} exited {process.returncode}:\n{self.logs(name)}")
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
            except (requests.RequestException, ValueError):
                health = {}
            healthy = all(
                (health.get(part) or {}).get("status") == "healthy" for part in ("scheduler", "dag_processor")
            )
            if healthy and self._dag_parsed():
                return
            time.sleep(0.5)
        raise AirflowFailed(
            f"Airflow not up after {self.startup_timeout:.0f}s (health {health}, DAG parsed: {self._dag_parsed()}):\n"
            f"--- dag-processor ---\n{self.logs('dag-processor')}\n--- scheduler ---\n{self.logs('scheduler')}"
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    # -- metadata database (read only) ----------------------------------------------------------
    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.metadata_db.exists():
            return []
        connection = sqlite3.connect(f"file:{self.metadata_db}?mode=ro", uri=True, timeout=30)
        try:
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []  # e.g. the table does not exist yet
        finally:
            connection.close()

    def _dag_parsed(self) -> bool:
        return bool(self._query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", (DAG_ID,)))

    def _last_backfill_id(self) -> int:
        rows = self._query("SELECT MAX(id) FROM backfill WHERE dag_id = ?", (DAG_ID,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    # -- backfills ------------------------------------------------------------------------------
    def create_backfill(
        self, days: list[str], *, on_cli_started: Callable[[int], None] = lambda pid: None, timeout: float = 300
    ) -> tuple[float, int]:
        """Runs ``airflow backfill create`` over `days` (both ends included); returns the time it
        was launched (epoch seconds) and the new backfill's id."""
        before = self._last_backfill_id()
        log = self.root / f"backfill-{days[0]}.log"
        launched = time.time()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(self.venv / "bin" / "airflow"),
                    "backfill",
                    "create",
                    "--dag-id",
                    DAG_ID,
                    "--from-date",
                    days[0],
                    "--to-date",
                    days[-1],
                    "--max-active-runs",
                    str(MAX_ACTIVE_RUNS),
                ],
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        on_cli_started(process.pid)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AirflowFailed(
                f"airflow backfill create timed out:\n{log.read_text(errors='replace')[-3000:]}"
            ) from None
        backfill_id = self._last_backfill_id()
        if returncode or backfill_id <= before:
            raise AirflowFailed(
                f"airflow backfill create exited {returncode}, no new backfill:\n"
                f"{log.read_text(errors='replace')[-3000:]}"
            )
        return launched, backfill_id

    def wait_for_backfill(self, backfill_id: int, days: list[str], *, timeout: float) -> tuple[float, int]:
        """Waits until the backfill has a successful run per day; returns the last run's end
        (epoch seconds, as Airflow recorded it) and the number of runs. A failed run raises with
        its task states and the scheduler's log."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self._query("SELECT run_id, state, end_date FROM dag_run WHERE backfill_id = ?", (backfill_id,))
            failed = [run for run in runs if run[1] == "failed"]
            if failed:
                tasks = self._query(
                    "SELECT run_id, task_id, state, try_number FROM task_instance WHERE run_id IN "
                    f"({','.join('?' * len(failed))}) ORDER BY run_id",
                    tuple(run[0] for run in failed),
                )
                raise AirflowFailed(
                    f"backfill {backfill_id}: runs failed: {failed}; tasks {tasks}\n"
                    f"--- scheduler log ---\n{self.logs('scheduler')}"
                )
            if len(runs) >= len(days) and all(run[1] == "success" and run[2] for run in runs):
                return max(_utc(run[2]) for run in runs), len(runs)
            if time.monotonic() > deadline:
                raise AirflowFailed(
                    f"backfill {backfill_id} not done after {timeout:.0f}s: {runs}\n"
                    f"--- scheduler log ---\n{self.logs('scheduler')}"
                )
            time.sleep(0.25)

    def wait_for_backfill_completed(self, backfill_id: int, *, timeout: float) -> None:
        """Waits until the scheduler has marked the backfill complete. Airflow allows one running
        backfill per DAG, and its scheduler marks them complete on a 30 s loop (hard-coded in
        3.3.2), after the runs are done: the next backfill can only be created then."""
        deadline = time.monotonic() + timeout
        while not self._query("SELECT 1 FROM backfill WHERE id = ? AND completed_at IS NOT NULL", (backfill_id,)):
            if time.monotonic() > deadline:
                raise AirflowFailed(
                    f"backfill {backfill_id} not marked complete after {timeout:.0f}s\n"
                    f"--- scheduler log ---\n{self.logs('scheduler')}"
                )
            time.sleep(0.5)
