"""Redis, Celery workers and Flower for the Celery executor: what `make redis`, `make workers` and
`make flower` run, and what the tests start (the same classes, the same commands).

    python -m user_pipeline_tools.celery_services redis   --port 6379
    python -m user_pipeline_tools.celery_services workers --count 2 --concurrency 2 --queues users_api,dagster,spark
    python -m user_pipeline_tools.celery_services flower  --port 5555

Each runs in the foreground until Ctrl-C (or SIGTERM) and then stops what it started.

Locked down by default: Redis listens on 127.0.0.1 only and asks for USER_PIPELINE_REDIS_PASSWORD
(given to redis-server on its standard input, so it is in no file and no command line); Flower
listens on 127.0.0.1 and asks for USER_PIPELINE_FLOWER_BASIC_AUTH (user:password, passed to Flower
as FLOWER_BASIC_AUTH in its environment, not on its command line).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from user_pipeline.executors import EXECUTOR_ENV, REDIS_PASSWORD_ENV, ExecutorSettings, InvalidExecutorSettingsError
from user_pipeline.shared.queues import QUEUES

BIN_DIR = Path(sys.executable).parent
CELERY_APP = "user_pipeline.celery_app"
FLOWER_AUTH_ENV = "USER_PIPELINE_FLOWER_BASIC_AUTH"
STOP_SECONDS = 30


class ServiceError(RuntimeError):
    """A service that could not start; the message says why, with the end of its log."""


def find_redis_server() -> Path | None:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _stop_group(process: subprocess.Popen, timeout: float = STOP_SECONDS) -> None:
    """SIGTERM to the process group (a Celery worker's warm shutdown), SIGKILL after `timeout`."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # what is left of the group (pool processes)
    process.wait()


class RedisServer:
    """Debian's redis-server on `bind`:`port`, password-protected, its files under `root`."""

    def __init__(
        self,
        password: str,
        *,
        port: int | None = None,
        bind: str = "127.0.0.1",
        root: Path | None = None,
        persist: bool = False,
    ):
        if not password:
            raise ServiceError(f"{REDIS_PASSWORD_ENV} is empty: Redis is never started without a password")
        self.password = password
        self.port = port or free_port()
        self.bind = bind
        self.root = root or Path(tempfile.mkdtemp(prefix="user-pipeline-redis-"))
        self.persist = persist
        self._process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    def url(self, db: int) -> str:
        """The URL without the password (the settings take it from USER_PIPELINE_REDIS_PASSWORD)."""
        return f"redis://{'127.0.0.1' if self.bind in ('0.0.0.0', '::') else self.bind}:{self.port}/{db}"

    def start(self) -> RedisServer:
        server = find_redis_server()
        if server is None:
            raise ServiceError("redis-server is not installed (apt-get install redis-server)")
        self.root.mkdir(parents=True, exist_ok=True)
        config = "\n".join(
            [
                f"port {self.port}",
                f"bind {self.bind}",
                "protected-mode yes",
                f'dir "{self.root}"',
                f"requirepass {self.password}",
                # A broker's queue survives a restart only with the append-only file; tests need none.
                f"appendonly {'yes' if self.persist else 'no'}",
                'save ""',
                "",
            ]
        )
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(server), "-"], stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._process.stdin.write(config.encode())
        self._process.stdin.close()
        return self._wait_until_up()

    def _wait_until_up(self) -> RedisServer:
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServiceError(f"redis-server exited with {self._process.returncode}:\n{_tail(self.log_path)}")
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1) as client:
                    if client.ping():
                        return self
            except redis.RedisError:
                time.sleep(0.1)
        self.stop()
        raise ServiceError(f"redis-server did not answer on port {self.port}:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        if self._process is not None:
            _stop_group(self._process, timeout=10)
            self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class CeleryWorker:
    """One Celery worker started with `dagster-celery worker start` in its own working directory.

    `env` must hold the code location's settings (USER_PIPELINE_*, DAGSTER_HOME, DAGSTER_PG_*):
    the worker loads the definitions itself. The worker's process group is its own, so `kill`
    reaches the worker and its pool processes, as losing the node would."""

    def __init__(
        self, name: str, *, queues: Sequence[str] = QUEUES, concurrency: int = 2, workdir: Path, env: Mapping[str, str]
    ):
        unknown = [queue for queue in queues if queue not in QUEUES]
        if unknown or not queues:
            raise ServiceError(f"unknown queue(s) {unknown or queues}: the queues are {', '.join(QUEUES)}")
        if concurrency < 1:
            raise ServiceError(f"worker concurrency {concurrency}: expected at least 1")
        self.name = name
        self.queues = list(queues)
        self.concurrency = concurrency
        self.workdir = workdir
        # dagster-celery runs `celery` from PATH: this environment's.
        path = os.pathsep.join(p for p in (str(BIN_DIR), env.get("PATH", "")) if p)
        self.env = {**env, "PATH": path, "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen | None = None

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "worker.log"

    def command(self) -> list[str]:
        # One -q with a comma-separated list: dagster-celery passes each -q on as its own -Q, and
        # Celery 5's -Q keeps only the last one.
        return [
            str(BIN_DIR / "dagster-celery"),
            "worker",
            "start",
            "-A",
            CELERY_APP,
            "-n",
            self.name,
            "-q",
            ",".join(self.queues),
            "--",
            f"--concurrency={self.concurrency}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
            # Task events, so that Flower lists the tasks, not only the workers.
            "--task-events",
        ]

    def start(self) -> CeleryWorker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def wait_until_ready(self, timeout: float = 90) -> CeleryWorker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"worker {self.name} exited with {self.process.returncode}:\n{_tail(self.log_path)}")
            if f"{self.hostname} ready." in _tail(self.log_path, 20000):
                return self
            time.sleep(0.2)
        raise ServiceError(f"worker {self.name} was not ready after {timeout:.0f} s:\n{_tail(self.log_path)}")

    def kill(self) -> None:
        """SIGKILL to the worker and its pool processes at once: a lost node."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process)

    def logs(self) -> str:
        return _tail(self.log_path)


class Flower:
    """Flower, Celery's web UI, on `bind`:`port` behind basic authentication."""

    def __init__(
        self,
        basic_auth: str,
        *,
        port: int | None = None,
        bind: str = "127.0.0.1",
        workdir: Path,
        env: Mapping[str, str],
    ):
        if ":" not in basic_auth or basic_auth.startswith(":") or basic_auth.endswith(":"):
            raise ServiceError(
                f"{FLOWER_AUTH_ENV} must be user:password; Flower is never started without authentication"
            )
        self.port = port or free_port()
        self.bind = bind
        self.workdir = workdir
        self.env = {**env, "FLOWER_BASIC_AUTH": basic_auth, "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.bind}:{self.port}"

    def start(self) -> Flower:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "flower.log").open("ab")
        self.process = subprocess.Popen(
            [str(BIN_DIR / "celery"), "-A", CELERY_APP, "flower", f"--address={self.bind}", f"--port={self.port}"],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, timeout=10)


def _wait_for_signal(processes: Sequence[subprocess.Popen], names: Sequence[str]) -> int:
    """Blocks until SIGINT/SIGTERM or until one of `processes` exits; returns the exit code to use."""
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stopping.append(number))
    while not stopping:
        for process, name in zip(processes, names, strict=True):
            if process.poll() is not None:
                print(f"{name} exited with {process.returncode}; stopping the others", file=sys.stderr)
                return 1
        time.sleep(0.5)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m user_pipeline_tools.celery_services", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    redis_cmd = commands.add_parser("redis", help="Redis with a password, the broker and result backend")
    redis_cmd.add_argument("--port", type=int, default=6379)
    redis_cmd.add_argument("--bind", default="127.0.0.1")
    redis_cmd.add_argument("--dir", type=Path, default=Path(".celery/redis"))
    workers_cmd = commands.add_parser("workers", help="N Celery workers, each in its own folder under --dir")
    workers_cmd.add_argument("--count", type=int, default=2)
    workers_cmd.add_argument(
        "--concurrency", type=int, default=2, help="processes per worker (Airflow's worker_concurrency)"
    )
    workers_cmd.add_argument("--queues", default=",".join(QUEUES))
    workers_cmd.add_argument("--name", default="worker")
    workers_cmd.add_argument("--dir", type=Path, default=Path(".celery/workers"))
    flower_cmd = commands.add_parser("flower", help="Flower, Celery's UI, with basic authentication")
    flower_cmd.add_argument("--port", type=int, default=5555)
    flower_cmd.add_argument("--bind", default="127.0.0.1")
    flower_cmd.add_argument("--dir", type=Path, default=Path(".celery/flower"))
    args = parser.parse_args(argv)

    try:
        if args.command == "redis":
            server = RedisServer(
                os.environ.get(REDIS_PASSWORD_ENV, ""),
                port=args.port,
                bind=args.bind,
                root=args.dir.resolve(),
                persist=True,
            )
            server.start()
            print(f"Redis on {server.url(0)} (password: ${REDIS_PASSWORD_ENV}); log {server.log_path}", flush=True)
            try:
                return _wait_for_signal([server._process], ["redis-server"])
            finally:
                server.stop()
        if args.command == "workers":
            if args.count < 1:
                raise ServiceError(f"--count {args.count}: expected at least 1 worker")
            # The settings the workers will read, checked once here rather than in each worker's log.
            ExecutorSettings.from_environ({**os.environ, EXECUTOR_ENV: "celery"})
            workers = [
                CeleryWorker(
                    f"{args.name}-{index}",
                    queues=[q for q in args.queues.split(",") if q],
                    concurrency=args.concurrency,
                    workdir=(args.dir / f"{args.name}-{index}").resolve(),
                    env=os.environ,
                )
                for index in range(1, args.count + 1)
            ]
            try:
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.wait_until_ready()
                    print(
                        f"{worker.hostname}: queues {','.join(worker.queues)}, concurrency {worker.concurrency}; log {worker.log_path}",
                        flush=True,
                    )
                return _wait_for_signal([worker.process for worker in workers], [worker.name for worker in workers])
            finally:
                for worker in workers:
                    worker.stop()
        flower = Flower(
            os.environ.get(FLOWER_AUTH_ENV, ""),
            port=args.port,
            bind=args.bind,
            workdir=args.dir.resolve(),
            env=os.environ,
        )
        flower.start()
        print(
            f"Flower on {flower.url} (basic auth: ${FLOWER_AUTH_ENV}); log {flower.workdir / 'flower.log'}", flush=True
        )
        try:
            return _wait_for_signal([flower.process], ["flower"])
        finally:
            flower.stop()
    except (ServiceError, InvalidExecutorSettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
