"""`make redis`, `make workers` and `make flower` as a user runs them: Redis and Flower answer only
on loopback and only with their password, workers serve the asked queues with the asked
concurrency, and each refuses to start unprotected."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from user_pipeline_tests.conftest import skip_or_fail
from user_pipeline_tools.celery_services import find_redis_server, free_port
from user_pipeline_tools.dagster_services import REPO_ROOT


class Make:
    """`make TARGET VAR=value...` in the repository root, in its own process group, output to a file."""

    def __init__(self, log: Path, env: dict[str, str], target: str, *variables: str):
        self.log = log
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", target, *variables],
            cwd=REPO_ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count(text) >= count:
                return self.output()
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"waited for {text!r} x{count} from make:\n{self.output()[-3000:]}")

    def exit_code(self, timeout: float = 120) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Ctrl-C, as a user stops it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    if find_redis_server() is None:
        skip_or_fail("redis-server is not installed (apt-get install redis-server; `make system-deps` does it as root)")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    yield {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "USER_PIPELINE_REDIS_PASSWORD": uuid.uuid4().hex,
        "USER_PIPELINE_CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "USER_PIPELINE_CELERY_BACKEND_URL": f"redis://127.0.0.1:{port}/1",
        "USER_PIPELINE_FLOWER_BASIC_AUTH": f"admin:{uuid.uuid4().hex}",
        "REDIS_PORT": str(port),
        "CELERY_DIR": str(tmp_path / "celery"),
    }


def test_redis_workers_and_flower_from_make(env: dict[str, str], tmp_path: Path):
    import redis

    started: list[Make] = []
    try:
        started.append(server := Make(tmp_path / "redis.out", env, "redis"))
        server.wait_for("Redis on redis://127.0.0.1:")
        port = int(env["REDIS_PORT"])
        with pytest.raises(redis.AuthenticationError), redis.Redis(port=port) as anonymous:
            anonymous.ping()
        with redis.Redis(port=port, password=env["USER_PIPELINE_REDIS_PASSWORD"]) as client:
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
            assert client.config_get("appendonly") == {"appendonly": "yes"}

        started.append(
            workers := Make(
                tmp_path / "workers.out",
                env,
                "workers",
                "WORKERS=2",
                "WORKER_CONCURRENCY=3",
                "WORKER_QUEUES=users_api,dagster",
                "WORKER_NAME=w",
            )
        )
        workers.wait_for("queues users_api,dagster, concurrency 3", count=2)
        from user_pipeline.celery_app import create_app

        inspect = create_app(env).control.inspect(timeout=5)
        host = socket.gethostname()
        names = {f"w-1@{host}", f"w-2@{host}"}
        queues = inspect.active_queues() or {}
        assert {name: sorted(queue["name"] for queue in queues.get(name, [])) for name in names} == {
            name: ["dagster", "users_api"] for name in names
        }
        stats = inspect.stats() or {}
        assert {name: stats[name]["pool"]["max-concurrency"] for name in names} == dict.fromkeys(names, 3)
        assert all(Path(env["CELERY_DIR"], "workers", name.split("@")[0], "worker.log").exists() for name in names)

        started.append(
            flower := Make(tmp_path / "flower.out", env, "flower", f"FLOWER_PORT={(flower_port := free_port())}")
        )
        flower.wait_for("Flower on http://127.0.0.1:")
        url = f"http://127.0.0.1:{flower_port}/workers"
        deadline = time.monotonic() + 60
        while True:
            try:
                anonymous = requests.get(url, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, flower.output()[-3000:]
                time.sleep(0.3)
        assert anonymous.status_code == 401
        user, password = env["USER_PIPELINE_FLOWER_BASIC_AUTH"].split(":", 1)
        assert requests.get(url, auth=(user, "wrong"), timeout=5).status_code == 401
        assert requests.get(url, auth=(user, password), timeout=5).status_code == 200
    finally:
        for make in reversed(started):
            make.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(env["REDIS_PORT"]))) != 0, "Redis still listens after Ctrl-C"
    for secret in (env["USER_PIPELINE_REDIS_PASSWORD"], password):
        assert not [make.log.name for make in started if secret in make.output()], "a password is in make's output"


@pytest.mark.parametrize(
    ("target", "unset", "message"),
    [
        (
            "redis",
            "USER_PIPELINE_REDIS_PASSWORD",
            "USER_PIPELINE_REDIS_PASSWORD is empty: Redis is never started without a password",
        ),
        ("flower", "USER_PIPELINE_FLOWER_BASIC_AUTH", "USER_PIPELINE_FLOWER_BASIC_AUTH must be user:password"),
        ("workers", "USER_PIPELINE_REDIS_PASSWORD", "USER_PIPELINE_REDIS_PASSWORD is required"),
    ],
)
def test_refuses_to_start_unprotected(env: dict[str, str], target: str, unset: str, message: str):
    """The command behind each make target (the target adds only `make install`), without its secret."""
    env = {key: value for key, value in env.items() if key != unset}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "user_pipeline_tools.celery_services",
            target,
            "--dir",
            f"{env['CELERY_DIR']}/{target}",
            *(["--count", "1"] if target == "workers" else []),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not Path(env["CELERY_DIR"]).exists() or not any(Path(env["CELERY_DIR"]).rglob("*.log")), (
        "nothing was started"
    )
