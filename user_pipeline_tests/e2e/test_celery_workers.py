"""Steps on Celery workers over Redis: a 5-day backfill lands as in process, steps run on both
workers, the users API queue caps concurrent calls, a SIGKILLed worker's step finishes on the
other, no password shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from user_pipeline.graphql_triggers import DagsterGraphQL
from user_pipeline.report.assets import daily_users_report
from user_pipeline.report.daily_report import report_paths
from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource
from user_pipeline_tests.conftest import skip_or_fail
from user_pipeline_tests.e2e.conftest import USERS_PER_PARTITION
from user_pipeline_tests.e2e.support import (
    assert_same_partition,
    days,
    run_events,
    stop_sensor,
    wait_for_backfill_runs,
    wait_for_run,
    wait_until,
)
from user_pipeline_tests.e2e.test_postgres_instance import POSTGRES_INSTANCE_CONFIG, instance_tables_as_text
from user_pipeline_tests.postgres_cluster import USER
from user_pipeline_tools.celery_services import CeleryWorker, RedisServer, find_redis_server
from user_pipeline_tools.dagster_services import BIN_DIR, REPO_ROOT, TERMINAL_RUN_STATUSES, DagsterServices
from user_pipeline_tools.randomuser_server.launcher import RandomUserServer

BACKFILL_DAYS = days("2026-09-01", 5)
KILL_DAY = "2026-09-10"
JOB = "day_assets_job"
# Each API call of the backfill takes this long, so that two calls at once would overlap for sure.
SLOW_API_SECONDS = 1.0
# Short, so that the SIGKILLed worker's step is given to the other worker within the test, yet
# longer than any step of that test on a loaded machine: a step still running at the visibility
# timeout is delivered again and runs twice (at 10 s, an 11 s step did, in CI).
KILL_TEST_VISIBILITY_TIMEOUT = 30


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if find_redis_server() is None:
        skip_or_fail("redis-server is not installed (apt-get install redis-server; `make system-deps` does it as root)")
    with RedisServer(uuid.uuid4().hex) as server:
        yield server


@dataclass
class CeleryStack:
    """Daemon + webserver on a PostgreSQL instance, and Celery workers, each in its own folder."""

    root: Path
    env: dict[str, str]
    services: DagsterServices
    password: str
    warehouse_url: str
    instance_url: str
    workers: dict[str, CeleryWorker] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["USER_PIPELINE_DATA_DIR"])

    def start_workers(self, specs: dict[str, tuple[list[str], int]], *, replace: bool = True, **extra_env: str) -> None:
        """Starts one worker per name (after stopping the others, if `replace`): its queues and
        concurrency; its own working directory and DAGSTER_HOME; shared with the others only the
        data location, PostgreSQL and Redis."""
        if replace:
            self.stop_workers()
        for name, (queues, concurrency) in specs.items():
            folder = self.root / f"worker-{name}-{uuid.uuid4().hex[:6]}"
            home = folder / "dagster_home"
            home.mkdir(parents=True)
            shutil.copy(POSTGRES_INSTANCE_CONFIG, home / "dagster.yaml")
            env = {**os.environ, **self.env, **extra_env, "DAGSTER_HOME": str(home)}
            self.workers[name] = CeleryWorker(
                name, queues=queues, concurrency=concurrency, workdir=folder, env=env
            ).start()
        for worker in self.workers.values():
            worker.wait_until_ready()

    def stop_workers(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()

    def worker_of(self, hostname: str) -> str:
        return next(name for name, worker in self.workers.items() if worker.hostname == hostname)


@pytest.fixture(scope="module")
def stack(postgres, redis_server, api_server, tmp_path_factory) -> Iterator[CeleryStack]:
    root = tmp_path_factory.mktemp("celery")
    suffix = uuid.uuid4().hex[:10]
    instance_db = f"dagster_{suffix}"
    postgres.create_database(instance_db)
    warehouse_url = postgres.create_database(f"warehouse_{suffix}")
    env = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": USER,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_PG_DB": instance_db,
        "PGPASSWORD": postgres.password,
        "USER_PIPELINE_API_URL": api_server.base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": str(USERS_PER_PARTITION),
        "USER_PIPELINE_DATA_DIR": str(root / "shared-data"),
        "USER_PIPELINE_WAREHOUSE_URL": warehouse_url,
        "USER_PIPELINE_EXECUTOR": "celery",
        "USER_PIPELINE_CELERY_BROKER_URL": redis_server.url(0),
        "USER_PIPELINE_CELERY_BACKEND_URL": redis_server.url(1),
        "USER_PIPELINE_REDIS_PASSWORD": redis_server.password,
    }
    services = DagsterServices(root / "dagster_home", env, instance_config=POSTGRES_INSTANCE_CONFIG)
    stack = CeleryStack(root, env, services, redis_server.password, warehouse_url, postgres.url(instance_db))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", postgres.password)  # the test reads the warehouse too
        with services:
            # The steps measured here are only those of the runs each test launches: the automation
            # (tested in test_automation.py) would add registry, report and Spark runs of the
            # backfilled days, competing for the same workers.
            stop_sensor(services, "automation_condition_sensor")
            try:
                yield stack
            finally:
                stack.stop_workers()


@dataclass(frozen=True)
class Reference:
    data_dir: Path
    warehouse_url: str


def materialize_reference(root: Path, warehouse_url: str, partitions: list[str]) -> Reference:
    """The same assets materialized by the in-process executor, one day per run, into another
    folder and another warehouse database, from an API server of their own (the same users for the
    same seed), so that its calls are not counted with the workers'."""
    with RandomUserServer() as api:
        resources = {
            "users_api": RandomUserApi(base_url=api.base_url, users_per_partition=USERS_PER_PARTITION),
            "files": PartitionFiles(data_dir=str(root)),
            "warehouse": WarehouseResource(url=warehouse_url),
            "day_limits": DayLimits(),
        }
        with dg.instance_for_test() as instance:
            for day in partitions:
                result = dg.materialize(
                    [daily_users, daily_users_report],
                    partition_key=day,
                    resources=resources,
                    instance=instance,
                )
                assert result.success, day
    return Reference(root, warehouse_url)


@pytest.fixture(scope="module")
def reference(stack: CeleryStack, postgres, tmp_path_factory) -> Iterator[Future]:
    """The in-process reference of every day of the module, computed in the background while the
    workers run (the test process is idle then)."""
    warehouse_url = postgres.create_database(f"reference_{uuid.uuid4().hex[:10]}")
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(
            materialize_reference, tmp_path_factory.mktemp("reference"), warehouse_url, [*BACKFILL_DAYS, KILL_DAY]
        )


def assert_same_day(stack: CeleryStack, day: str, expected: Reference) -> None:
    """The day's raw and normalized files and report byte for byte, and its warehouse rows, as in process."""
    assert_same_partition(day, stack.data_dir, stack.warehouse_url, expected.data_dir, expected.warehouse_url)
    actual, expected = report_paths(stack.data_dir, day), report_paths(expected.data_dir, day)
    assert actual.csv.read_bytes() == expected.csv.read_bytes(), f"report CSV of {day} differs"
    assert actual.png.read_bytes() == expected.png.read_bytes(), f"report PNG of {day} differs"


def step_workers(stack: CeleryStack, run_id: str) -> list[tuple[str, str]]:
    """(step, worker name) for each step a Celery worker started, in order: dagster-celery's
    "Executing steps ... in celery worker" event names the worker."""
    found = []
    for event in run_events(stack.services, run_id):
        if event["__typename"] == "EngineEvent" and "in celery worker" in (event.get("message") or ""):
            entries = {entry["label"]: entry.get("text") for entry in event["metadataEntries"]}
            found.append((entries["step_keys"], stack.worker_of(entries["Celery worker"])))
    return found


def submitted_steps(stack: CeleryStack, backfill_id: str) -> list[str]:
    """The steps the backfill's runs have sent to Celery so far."""
    steps = []
    for run in stack.services.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}]):
        for event in run_events(stack.services, run["runId"]):
            message = event.get("message") or ""
            if event["__typename"] == "EngineEvent" and message.startswith("Submitting celery task for step"):
                steps.append(message.split('"')[1])
    return steps


def launch_backfill(stack: CeleryStack, partitions: list[str]) -> str:
    launched = subprocess.run(
        [
            str(BIN_DIR / "dagster"),
            "job",
            "backfill",
            "-w",
            "workspace.yaml",
            "-j",
            JOB,
            "--from",
            partitions[0],
            "--to",
            partitions[-1],
            "--noprompt",
        ],
        cwd=REPO_ROOT,
        env=stack.services.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    return launched.stdout.split("Launched backfill job `", 1)[1].split("`", 1)[0]


def test_backfill_on_two_workers_lands_as_in_process(stack: CeleryStack, api_server, reference: Future):
    # Worker "api" alone consumes the users_api queue, with concurrency 1; the instance's
    # users_api pool would allow 2 calls at once, so the queue is what must keep them to one.
    stack.start_workers({"steps": (["dagster", "spark"], 2)})
    api_server.clear_faults()
    api_server.add_fault("slow", seeds=BACKFILL_DAYS, delay_seconds=SLOW_API_SECONDS)
    api_server.reset_concurrency()

    backfill_id = launch_backfill(stack, BACKFILL_DAYS)
    # The users_api worker starts once the pool has let two runs queue their API step: with a
    # concurrency above 1 it would start both at once.
    wait_until(
        lambda: submitted_steps(stack, backfill_id).count("daily_users") >= 2, 120, "two daily_users steps queued"
    )
    stack.start_workers({"api": (["users_api", "dagster"], 1)}, replace=False)
    runs = wait_for_backfill_runs(stack.services, backfill_id, BACKFILL_DAYS, timeout=240)
    calls = api_server.concurrency()
    api_server.clear_faults()

    assert [run["status"] for run in runs] == ["SUCCESS"] * 5, [
        (run["tags"].get("dagster/partition"), run["status"]) for run in runs
    ]
    # Two API steps were waiting at once, yet the API never answered two calls at a time.
    assert calls["max_in_flight"] == 1, calls
    executed = {run["runId"]: step_workers(stack, run["runId"]) for run in runs}
    for run_id, steps in executed.items():
        # The day chain, the report, and Dagster's freshness check of both (a step of its own).
        assert sorted(step for step, _ in steps if not step.startswith("freshness_check")) == [
            "daily_users",
            "daily_users_report",
        ], (run_id, steps)
        assert dict(steps)["daily_users"] == "api", f"daily_users ran off its queue's worker: {steps}"
    assert {worker for steps in executed.values() for _, worker in steps} == {"api", "steps"}

    for day in BACKFILL_DAYS:
        assert_same_day(stack, day, reference.result(timeout=120))


def test_sigkilled_worker_leaves_its_step_to_the_other(stack: CeleryStack, api_server, reference: Future):
    # Both workers serve every queue here, so the survivor can take over any step.
    queues = ["users_api", "dagster", "spark"]
    stack.start_workers(
        {"a": (queues, 1), "b": (queues, 1)},
        USER_PIPELINE_CELERY_VISIBILITY_TIMEOUT_SECONDS=str(KILL_TEST_VISIBILITY_TIMEOUT),
    )
    api_server.clear_faults()
    # The first call for the day is slow: the worker running daily_users is killed in the middle of it.
    api_server.add_fault("slow", seeds=[KILL_DAY], times=1, delay_seconds=8)
    # No other run holds the survivor when the killed worker's step comes back to the queue.
    assert [run["runId"] for run in stack.services.runs() if run["status"] not in TERMINAL_RUN_STATUSES] == []
    run_id = DagsterGraphQL(stack.services.url).launch_run(JOB, partition=KILL_DAY)
    first = wait_until(lambda: step_workers(stack, run_id), 90, "daily_users to start on a worker", interval=0.3)
    assert first[0][0] == "daily_users", first
    killed = first[0][1]
    stack.workers[killed].kill()

    finished = wait_for_run(stack.services, run_id, timeout=180)
    steps = step_workers(stack, run_id)
    survivor = ({"a", "b"} - {killed}).pop()
    assert finished["status"] == "SUCCESS", (steps, stack.workers[survivor].logs())
    assert steps[0] == ("daily_users", killed)
    assert ("daily_users", survivor) in steps[1:], steps
    assert all(worker == survivor for _, worker in steps[1:]), steps

    assert_same_day(stack, KILL_DAY, reference.result(timeout=120))


def redis_contents(server: RedisServer) -> dict[str, str]:
    """Every key of the broker's and the result backend's databases, with its value as text."""
    import redis

    contents = {}
    for db in (0, 1):
        with redis.Redis(port=server.port, password=server.password, db=db) as client:
            for key in client.scan_iter():
                kind = client.type(key).decode()
                value = {
                    "string": lambda key=key: client.get(key),
                    "list": lambda key=key: client.lrange(key, 0, -1),
                    "hash": lambda key=key: client.hgetall(key),
                    "set": lambda key=key: client.smembers(key),
                    "zset": lambda key=key: client.zrange(key, 0, -1),
                }.get(kind, lambda: b"")()
                contents[f"redis db {db} {key!r}"] = repr(value)
    return contents


def test_no_password_in_logs_or_events(stack: CeleryStack, redis_server: RedisServer):
    """The Redis and PostgreSQL passwords appear in no service or worker log, no stored event and
    nothing kept in Redis (the steps' results), though Celery logs the broker URL (redacted)."""
    texts = {name: stack.services.log_path(name).read_text(errors="replace") for name in ("webserver", "daemon")}
    texts.update(
        {path.parent.name: path.read_text(errors="replace") for path in stack.root.glob("worker-*/worker.log")}
    )
    assert any("redis://:**@127.0.0.1" in text for text in texts.values()), (
        "the workers' banners show the broker URL, redacted"
    )
    texts.update(instance_tables_as_text(stack.instance_url, stack.env["DAGSTER_PG_PASSWORD"]))
    kept = redis_contents(redis_server)
    assert any("celery-task-meta" in key for key in kept), "the steps' results are in the result backend"
    texts.update(kept)
    for secret in (stack.password, stack.env["DAGSTER_PG_PASSWORD"]):
        leaked = [name for name, text in texts.items() if secret in text]
        assert not leaked, f"a password is in {leaked}"
