"""Start/stop a real Spark standalone cluster (one master + one worker) on loopback.

Uses the ``spark-class`` launcher of the installed PySpark (``$SPARK_HOME/bin/spark-class``;
pip-installed PySpark ships no usable ``sbin/start-*.sh`` for master/worker). Plain stdlib:
no Dagster import, so it can run anywhere PySpark runs.

In-process (tests, scripts)::

    with StandaloneCluster() as cluster:          # free loopback ports
        subprocess.run(["spark-submit", "--master", cluster.master_url, "job.py"])
        cluster.completed_applications()

Background (backs ``make spark-cluster``)::

    python -m user_pipeline_tools.spark_cluster start  [--state-dir .spark-cluster] [--master-port 7077]
    python -m user_pipeline_tools.spark_cluster status [--state-dir .spark-cluster] [--json]
    python -m user_pipeline_tools.spark_cluster stop   [--state-dir .spark-cluster]

``start`` leaves both daemons running in their own session, writes ``state.json`` (pids,
ports, URLs) and ``master.log`` / ``worker.log`` under the state dir and prints the
master URL and web UI URL.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from user_pipeline.spark.submit import spark_home

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_STATE_DIR = ".spark-cluster"
STATE_FILE = "state.json"
DEFAULT_STARTUP_TIMEOUT = 120.0


class ClusterStartError(RuntimeError):
    """The cluster could not be started (no Java, port clash, timeout...)."""


def find_java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(os.path.join(java_home, "bin", "java"), os.X_OK):
        return os.path.join(java_home, "bin", "java")
    return shutil.which("java")


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _tail(path: str | os.PathLike | None, lines: int = 60) -> str:
    if not path or not os.path.exists(path):
        return "<no log>"
    with open(path, encoding="utf-8", errors="replace") as fh:
        content = fh.readlines()
    return "".join(content[-lines:]) or "<empty log>"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _pid_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _terminate_group(pid: int, timeout: float, is_alive: Callable[[], bool]) -> None:
    """SIGTERM the process group led by pid (we started it with start_new_session), then KILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if not is_alive():
            break
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:  # pragma: no cover
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
    # Also reap stray members of the group (e.g. executors launched by the worker).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class StandaloneCluster:
    """One Spark standalone master + one worker on loopback, as a context manager.

    Ports left as None are picked free at start(). ``detach=True`` keeps the daemons
    running after this Python process exits (used by the CLI); otherwise they are
    stopped by stop()/__exit__ (and at interpreter exit as a safety net).
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        master_port: int | None = None,
        webui_port: int | None = None,
        worker_webui_port: int | None = None,
        worker_cores: int = 1,
        worker_memory: str = "1g",
        daemon_memory: str = "512m",
        work_dir: str | os.PathLike | None = None,
        spark_home_dir: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        detach: bool = False,
    ):
        self.host = host
        self.master_port = master_port or None
        self.webui_port = webui_port or None
        self.worker_webui_port = worker_webui_port or None
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self.daemon_memory = daemon_memory
        self.spark_home = spark_home_dir or spark_home()
        self.startup_timeout = startup_timeout
        self.detach = detach
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else None
        self._procs: dict[str, subprocess.Popen] = {}
        self.log_paths: dict[str, Path] = {}
        self._atexit_registered = False

    # ------------------------------------------------------------------ properties
    @property
    def master_url(self) -> str:
        self._require_ports()
        return f"spark://{self.host}:{self.master_port}"

    @property
    def web_ui_url(self) -> str:
        self._require_ports()
        return f"http://{self.host}:{self.webui_port}"

    @property
    def worker_web_ui_url(self) -> str:
        self._require_ports()
        return f"http://{self.host}:{self.worker_webui_port}"

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def _require_ports(self) -> None:
        if not (self.master_port and self.webui_port and self.worker_webui_port):
            raise RuntimeError("cluster ports are assigned by start()")

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SPARK_HOME=self.spark_home,
            SPARK_LOCAL_IP=self.host,
            SPARK_LOCAL_HOSTNAME=self.host,
            SPARK_PUBLIC_DNS=self.host,
            SPARK_DAEMON_MEMORY=self.daemon_memory,
            SPARK_WORKER_DIR=str(self.work_dir / "worker"),
            SPARK_LOG_DIR=str(self.work_dir),
        )
        # Keep this cluster independent from any session-level settings of the caller.
        env.pop("SPARK_MASTER_HOST", None)
        env.pop("SPARK_MASTER_PORT", None)
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log_path = self.work_dir / f"{name}.log"
        self.log_paths[name] = log_path
        spark_class = os.path.join(self.spark_home, "bin", "spark-class")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [spark_class, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=str(self.work_dir),
                start_new_session=True,  # own process group: clean kill, survives CLI exit
            )
        self._procs[name] = proc
        return proc

    def _failure(self, message: str) -> ClusterStartError:
        logs = "\n".join(f"----- {name} log ({path}) -----\n{_tail(path)}" for name, path in self.log_paths.items())
        return ClusterStartError(f"{message}\n{logs}")

    def _wait(self, what: str, predicate: Callable[[dict], bool], deadline: float) -> dict:
        last_error: str = ""
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise self._failure(f"Spark {name} exited with code {proc.returncode} while waiting for {what}")
            try:
                state = self.master_json(timeout=2.0)
                if predicate(state):
                    return state
                last_error = f"last /json/: status={state.get('status')} workers={state.get('workers')}"
            except (OSError, ValueError) as exc:
                last_error = f"last error: {exc}"
            if time.monotonic() > deadline:
                raise self._failure(
                    f"Timed out after {self.startup_timeout:.0f}s waiting for {what} at "
                    f"{self.web_ui_url}/json/ ({last_error})"
                )
            time.sleep(0.5)

    def start(self) -> StandaloneCluster:
        if self._procs:
            raise RuntimeError("cluster already started")
        if find_java() is None:
            raise ClusterStartError("Java not found: set JAVA_HOME or put `java` on PATH")
        spark_class = os.path.join(self.spark_home, "bin", "spark-class")
        if not os.access(spark_class, os.X_OK):
            raise ClusterStartError(f"{spark_class} not found or not executable")
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="spark-standalone-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "worker").mkdir(exist_ok=True)

        self.master_port = self.master_port or free_port(self.host)
        self.webui_port = self.webui_port or free_port(self.host)
        self.worker_webui_port = self.worker_webui_port or free_port(self.host)
        for port in (self.master_port, self.webui_port, self.worker_webui_port):
            if _port_in_use(self.host, port):
                raise ClusterStartError(f"port {self.host}:{port} is already in use")

        if not self.detach and not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        deadline = time.monotonic() + self.startup_timeout
        try:
            self._spawn(
                "master",
                [
                    MASTER_CLASS,
                    "--host",
                    self.host,
                    "--port",
                    str(self.master_port),
                    "--webui-port",
                    str(self.webui_port),
                ],
            )
            self._wait("the master", lambda s: s.get("status") == "ALIVE", deadline)
            self._spawn(
                "worker",
                [
                    WORKER_CLASS,
                    self.master_url,
                    "--host",
                    self.host,
                    "--webui-port",
                    str(self.worker_webui_port),
                    "--cores",
                    str(self.worker_cores),
                    "--memory",
                    self.worker_memory,
                    "--work-dir",
                    str(self.work_dir / "worker"),
                ],
            )
            self._wait("an ALIVE worker", lambda s: bool(self._alive(s.get("workers", []))), deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate worker then master (SIGTERM, then SIGKILL after timeout) and wait."""
        for name in ("worker", "master"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            _terminate_group(proc.pid, timeout, lambda p=proc: p.poll() is None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if self._owns_work_dir and self.work_dir is not None and not self.detach:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def is_running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs.values())

    # ------------------------------------------------------------------ master REST view
    def master_json(self, timeout: float = 5.0) -> dict[str, Any]:
        """The master's ``/json/`` document (workers, activeapps, completedapps, ...)."""
        return fetch_master_json(self.web_ui_url, timeout=timeout)

    @staticmethod
    def _alive(workers: list[dict]) -> list[dict]:
        return [w for w in workers if w.get("state") == "ALIVE"]

    def workers(self) -> list[dict[str, Any]]:
        return list(self.master_json().get("workers", []))

    def alive_workers(self) -> list[dict[str, Any]]:
        return self._alive(self.workers())

    def active_applications(self) -> list[dict[str, Any]]:
        return list(self.master_json().get("activeapps", []))

    def completed_applications(self) -> list[dict[str, Any]]:
        return list(self.master_json().get("completedapps", []))

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 30.0) -> dict[str, Any]:
        """Poll /json/ until predicate(state) is true; return that state (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while True:
            state = self.master_json()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s; last /json/: {state}")
            time.sleep(0.5)


def fetch_master_json(web_ui_url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"{web_ui_url.rstrip('/')}/json/", timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


# ---------------------------------------------------------------------- background CLI


def _state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def read_state(state_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = _state_path(Path(state_dir))
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _state_pids_alive(state: dict[str, Any]) -> dict[str, bool]:
    return {
        name: _pid_alive(pid) and "org.apache.spark.deploy" in _pid_cmdline(pid)
        for name, pid in state.get("pids", {}).items()
    }


def start_background(state_dir: str | os.PathLike, **cluster_kwargs: Any) -> dict[str, Any]:
    """Start a detached cluster whose pids/logs live in state_dir; return its state dict."""
    state_dir = Path(state_dir).resolve()
    state = read_state(state_dir)
    if state and all(_state_pids_alive(state).values()):
        state["already_running"] = True
        return state
    if state:  # stale: clean up leftovers of a half-dead cluster first
        stop_background(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    cluster = StandaloneCluster(work_dir=state_dir, detach=True, **cluster_kwargs)
    cluster.start()
    state = {
        "master_url": cluster.master_url,
        "web_ui_url": cluster.web_ui_url,
        "worker_web_ui_url": cluster.worker_web_ui_url,
        "pids": cluster.pids,
        "logs": {name: str(path) for name, path in cluster.log_paths.items()},
        "spark_home": cluster.spark_home,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = _state_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.replace(_state_path(state_dir))
    return state


def stop_background(state_dir: str | os.PathLike, timeout: float = 30.0) -> bool:
    """Stop the cluster recorded in state_dir. Returns False if nothing was recorded."""
    state_dir = Path(state_dir).resolve()
    state = read_state(state_dir)
    if state is None:
        return False
    for name in ("worker", "master"):
        pid = state.get("pids", {}).get(name)
        if not pid:
            continue
        # Never signal a recycled pid: it must still be a Spark deploy daemon.
        if _pid_alive(pid) and "org.apache.spark.deploy" in _pid_cmdline(pid):
            _terminate_group(pid, timeout, lambda p=pid: _pid_alive(p))
    _state_path(state_dir).unlink(missing_ok=True)
    return True


def status_background(state_dir: str | os.PathLike) -> dict[str, Any]:
    state = read_state(Path(state_dir).resolve())
    if state is None:
        return {"running": False, "reason": f"no {STATE_FILE} in {Path(state_dir).resolve()}"}
    alive = _state_pids_alive(state)
    result: dict[str, Any] = {**state, "processes_alive": alive, "running": all(alive.values())}
    try:
        info = fetch_master_json(state["web_ui_url"], timeout=3.0)
        result.update(
            master_status=info.get("status"),
            alive_workers=sum(1 for w in info.get("workers", []) if w.get("state") == "ALIVE"),
            active_applications=len(info.get("activeapps", [])),
            completed_applications=len(info.get("completedapps", [])),
        )
        result["running"] = result["running"] and info.get("status") == "ALIVE"
    except (OSError, ValueError) as exc:
        result.update(running=False, reason=f"master web UI not reachable: {exc}")
    return result


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m user_pipeline_tools.spark_cluster",
        description="Run a local Spark standalone cluster (1 master + 1 worker) in the background.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add_state_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir",
            default=DEFAULT_STATE_DIR,
            help=f"where pids, logs and {STATE_FILE} live (default ./{DEFAULT_STATE_DIR}/)",
        )

    start = sub.add_parser("start", help="start master + worker and wait until the worker is ALIVE")
    add_state_dir(start)
    start.add_argument("--host", default=DEFAULT_HOST)
    start.add_argument("--master-port", type=int, default=7077, help="0 = pick a free port")
    start.add_argument("--webui-port", type=int, default=8080, help="0 = pick a free port")
    start.add_argument("--worker-webui-port", type=int, default=8081, help="0 = pick a free port")
    start.add_argument("--worker-cores", type=int, default=1)
    start.add_argument("--worker-memory", default="1g")
    start.add_argument("--timeout", type=float, default=DEFAULT_STARTUP_TIMEOUT)

    stop = sub.add_parser("stop", help="stop the cluster recorded in the state dir")
    add_state_dir(stop)
    stop.add_argument("--timeout", type=float, default=30.0)

    status = sub.add_parser("status", help="exit 0 if the recorded cluster is up, 1 otherwise")
    add_state_dir(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "start":
        try:
            state = start_background(
                args.state_dir,
                host=args.host,
                master_port=args.master_port,
                webui_port=args.webui_port,
                worker_webui_port=args.worker_webui_port,
                worker_cores=args.worker_cores,
                worker_memory=args.worker_memory,
                startup_timeout=args.timeout,
            )
        except ClusterStartError as exc:
            print(f"ERROR: could not start the Spark cluster: {exc}", file=sys.stderr)
            return 1
        if state.get("already_running"):
            print("Spark cluster already running", file=sys.stderr)
        print(f"Spark master: {state['master_url']}")
        print(f"Web UI: {state['web_ui_url']}")
        print(f"Logs: {Path(args.state_dir).resolve()}")
        return 0
    if args.command == "stop":
        if stop_background(args.state_dir, timeout=args.timeout):
            print("Spark cluster stopped")
        else:
            print(f"No Spark cluster recorded in {Path(args.state_dir).resolve()}")
        return 0
    status = status_background(args.state_dir)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    elif status["running"]:
        print(
            f"running: master {status['master_url']} web UI {status['web_ui_url']} "
            f"alive workers={status.get('alive_workers')} "
            f"active apps={status.get('active_applications')} "
            f"completed apps={status.get('completed_applications')}"
        )
    else:
        print(f"not running: {status.get('reason', 'processes not alive')}")
    return 0 if status["running"] else 1


if __name__ == "__main__":
    sys.exit(main())
