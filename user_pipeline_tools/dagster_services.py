"""Real dagster-webserver and dagster-daemon processes on loopback, with a temporary DAGSTER_HOME.

The instance config is the repository's own dagster_home/dagster.yaml (or its PostgreSQL
variant), so the end-to-end tests exercise the queue, limits and retries users get.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from user_pipeline_tools.randomuser_server.launcher import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status jobName tags { key value } } }
    ... on PythonError { message }
  }
}
"""


class DagsterServices:
    def __init__(
        self, home: Path, env: dict[str, str], instance_config: Path = REPO_ROOT / "dagster_home" / "dagster.yaml"
    ):
        self.home = home
        self.port = free_port()
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.instance_config = instance_config
        self._processes: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_path(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def start(self) -> DagsterServices:
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.instance_config, self.home / "dagster.yaml")
        self._create_instance_storage()
        try:
            self._spawn(
                "webserver",
                [str(BIN_DIR / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", "workspace.yaml"],
            )
            self._spawn("daemon", [str(BIN_DIR / "dagster-daemon"), "run", "-w", "workspace.yaml"])
            return self._wait_until_up()
        except BaseException:
            self.stop()  # A process that did come up must not outlive a failed start.
            raise

    def _create_instance_storage(self) -> None:
        """Creates the instance's storage (tables, schema version) once, before the processes start,
        and gives the `users_api` pool its limit, as `make pools` does (user_pipeline_tools/pools.py).

        Started together on a fresh DAGSTER_HOME, the webserver and the daemon both create the
        SQLite schedule/run storage and one of them can die on "table ... already exists".
        """
        created = subprocess.run(
            [sys.executable, "-m", "user_pipeline_tools.pools"],
            check=False,
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if created.returncode != 0:
            raise RuntimeError(f"creating the instance storage in {self.home} failed:\n{created.stderr[-3000:]}")

    def _wait_until_up(self) -> DagsterServices:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"dagster {name} exited with {process.returncode}:\n{self.logs(name)}")
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok and self._location_loaded():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"dagster-webserver did not come up on {self.url}:\n{self.logs('webserver')}")

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.log_path(name).open("wb")
        self._processes[name] = subprocess.Popen(
            command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _location_loaded(self) -> bool:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
            "locationOrLoadError { __typename } } } } }"
        )
        entries = data["workspaceOrError"]["locationEntries"]
        if any(
            entry["locationOrLoadError"] and entry["locationOrLoadError"]["__typename"] == "PythonError"
            for entry in entries
        ):
            raise RuntimeError(f"the code location failed to load:\n{self.logs('webserver')}")
        return bool(entries) and all(entry["loadStatus"] == "LOADED" for entry in entries)

    def logs(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def stop(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in self._processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
        self._processes.clear()

    def __enter__(self) -> DagsterServices:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def dagster(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Runs the `dagster` CLI against this instance, from the repository root."""
        return subprocess.run(
            [str(BIN_DIR / "dagster"), *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def runs(self, **run_filter: Any) -> list[dict[str, Any]]:
        data = self.graphql(RUNS_QUERY, {"filter": run_filter})["runsOrError"]
        if "results" not in data:
            raise RuntimeError(data["message"])
        return [{**run, "tags": {tag["key"]: tag["value"] for tag in run["tags"]}} for run in data["results"]]

    def wait_for_runs(self, count: int, timeout: float = 300, **run_filter: Any) -> list[dict[str, Any]]:
        """Waits until at least `count` runs match the filter and all of them have finished."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.runs(**run_filter)
            if len(runs) >= count and all(run["status"] in TERMINAL_RUN_STATUSES for run in runs):
                return runs
            time.sleep(1)
        raise TimeoutError(
            f"waited {timeout}s for {count} finished runs matching {run_filter}; have "
            f"{[(run['runId'][:8], run['status']) for run in runs]}\n--- daemon log ---\n{self.logs('daemon')}"
        )


class MakeUi(DagsterServices):
    """The stack exactly as a user starts it: `make ui` in the repository root (`dg dev`, i.e.
    webserver + daemon + code server, beside the bundled API server).

    Substituted, and only these: the ports (UI_PORT, API_PORT: free ones, never 3000/8765),
    DAGSTER_HOME (a temporary copy of dagster_home/dagster.yaml, so the repository's instance is
    untouched) and, through `env`, USER_PIPELINE_DATA_DIR. The instance storage is NOT created
    beforehand: `make ui`'s install step must do it.
    """

    def __init__(self, home: Path, env: dict[str, str]):
        super().__init__(home, env)
        self.api_port = free_port()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/"

    def start(self) -> MakeUi:
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.instance_config, self.home / "dagster.yaml")
        try:
            self._spawn(
                "make-ui",
                ["make", "ui", f"UI_PORT={self.port}", f"API_PORT={self.api_port}", f"DAGSTER_HOME={self.home}"],
            )
            return self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def logs(self, name: str = "make-ui") -> str:
        return super().logs("make-ui")

    def stop(self) -> None:
        """Ctrl-C, as a user stops `make ui`; what is still up after 40 s is killed.

        40 s: above make ui's own bound (user_pipeline_tools/ui_stack.py: RUNS_STOP_SECONDS + STOP_SECONDS),
        because `dg dev` runs in its own process group, which the SIGKILL below does not reach.
        """
        for process in self._processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, 2)
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    pass
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 9)  # `dg dev`'s children may outlive it
                process.wait()
        self._processes.clear()
