"""The circuit breaker's state in the warehouse's database: one state for every node, exact when
processes change it at once (no lost failure, one trial call), the same semantics on SQLite and
PostgreSQL as the breaker's rules say."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from dataclasses import dataclass, field

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_pipeline.definitions import defs, resources
from user_pipeline.users.api_errors import CircuitOpenError
from user_pipeline.users.circuit_breaker import CircuitBreaker, source_key
from user_pipeline.users.circuit_store import (
    SKIPPED_DAYS_TABLE,
    STATE_TABLE,
    PostgresCircuitStore,
    SqliteCircuitStore,
    circuit_store_for,
)
from user_pipeline.users.resources import RandomUserApi, WarehouseResource
from user_pipeline.users.warehouse import WarehouseUnavailableError, open_warehouse
from user_pipeline_tools.randomuser_server.launcher import free_port

SOURCE = "http://127.0.0.1:8765/api/"
PROCESSES = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.sqlite"
    return request.getfixturevalue("postgres_url")


def store_for(url: str):
    return circuit_store_for(open_warehouse(url))


def test_two_nodes_share_one_circuit_through_the_warehouse(postgres_url, tmp_path, monkeypatch):
    """Two nodes, each with the definitions' resources and its own local disk: the circuit one
    node opens is open on the other, and the days one refused are taken once, by either."""
    nodes = []
    for name in ("node-a", "node-b"):
        environ = {
            "USER_PIPELINE_DATA_DIR": str(tmp_path / name),
            "USER_PIPELINE_WAREHOUSE_URL": postgres_url,
            "USER_PIPELINE_API_URL": SOURCE,
            "USER_PIPELINE_CIRCUIT_FAILURES": "2",
        }
        for variable, value in environ.items():
            monkeypatch.setenv(variable, value)  # the bound dg.EnvVar reads them when built
        nodes.append(resources(environ)["users_api"])
    with dg.build_resources({"a": nodes[0], "b": nodes[1]}) as built:
        a, b = built.a.breaker(), built.b.breaker()
    a.record_failure("HTTP 503")
    b.record_failure("HTTP 503")
    for breaker in (a, b):
        with pytest.raises(CircuitOpenError, match=r"after 2 failures \(last: HTTP 503\)"):
            breaker.before_call()
    a.record_skipped_day("2026-10-20")
    b.record_skipped_day("2026-10-21")
    assert b.take_skipped_days() == ["2026-10-20", "2026-10-21"]
    assert a.take_skipped_days() == []
    assert not list(tmp_path.rglob("*.json")), "no state file on either node's disk"


def test_the_state_is_one_row_per_source_with_bound_values(tmp_path):
    """A hostile source URL and error text are stored as given (the URL's password redacted)."""
    store = SqliteCircuitStore(tmp_path / "warehouse-circuit.sqlite")
    source = "http://bob:hunter2@api.example/'); DROP TABLE pipeline_circuit_state; --"
    reason = "HTTP 503 \x00 '; DELETE FROM x; -- ünïcode"
    breaker = CircuitBreaker(store, source=source, failure_threshold=1)
    breaker.record_failure(reason)
    breaker.record_skipped_day("2026-10-20'; --")
    with sqlite3.connect(store.path) as connection:
        rows = connection.execute(
            f"SELECT source_key, source, state, consecutive_failures, last_error FROM {STATE_TABLE}"
        )
        assert rows.fetchall() == [
            (
                source_key(source),
                "http://bob:***@api.example/'); DROP TABLE pipeline_circuit_state; --",
                "open",
                1,
                reason.replace("\x00", "\\x00"),
            )
        ]
        days = connection.execute(f"SELECT source_key, day FROM {SKIPPED_DAYS_TABLE}").fetchall()
        assert days == [(source_key(source), "2026-10-20'; --")]


def test_postgresql_holds_the_same_text(postgres_url):
    store = store_for(postgres_url)
    assert isinstance(store, PostgresCircuitStore)
    breaker = CircuitBreaker(store, source=SOURCE, failure_threshold=1)
    breaker.record_failure("bad \x00 byte ü")
    with pytest.raises(CircuitOpenError, match=r"last: bad \\x00 byte ü"):
        breaker.before_call()


def test_an_unreachable_store_is_a_retryable_warehouse_error_naming_it_without_its_password(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    url = f"postgresql://pipeline:hunter2@127.0.0.1:{free_port()}/users"
    breaker = CircuitBreaker(store_for(url), source=SOURCE)
    with pytest.raises(WarehouseUnavailableError) as raised:
        breaker.before_call()
    assert str(raised.value).startswith(
        f"circuit breaker state postgresql://pipeline:***@127.0.0.1:{url.split(':')[3]}"
    )
    assert "hunter2" not in str(raised.value)


def test_the_sensor_skips_naming_the_unreachable_store_and_takes_no_day(users_api_server, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    url = f"postgresql://pipeline@127.0.0.1:{free_port()}/users"
    api = RandomUserApi(base_url=users_api_server.base_url, circuit_store=WarehouseResource(url=url))
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, resources={"users_api": api}) as context,
    ):
        result = defs().resolve_sensor_def("users_api_sensor").evaluate_tick(context)
    assert result.run_requests == []
    assert result.skip_message.startswith(
        f"users API {users_api_server.base_url} not checked: circuit breaker state {url} unavailable: "
    )
    assert users_api_server.stats()["api_requests"] == 0


def test_a_sqlite_warehouse_keeps_the_state_in_a_file_beside_it(tmp_path):
    """SQLite has one write lock per file: a long load of a day must not hold up the API calls."""
    (tmp_path / "wh").mkdir()
    store = store_for(f"sqlite:///{tmp_path}/wh/warehouse.sqlite")
    assert store.path == tmp_path / "wh" / "warehouse-circuit.sqlite"
    loading = sqlite3.connect(tmp_path / "wh" / "warehouse.sqlite", isolation_level=None)
    loading.execute("BEGIN IMMEDIATE")  # a load holding the warehouse's write lock
    try:
        breaker = CircuitBreaker(store, source=SOURCE)
        breaker.before_call()
        breaker.record_success()
    finally:
        loading.rollback()
        loading.close()


# --- Several processes at once -------------------------------------------------------------


def _record_failures(url: str, times: int, start, results) -> None:
    breaker = CircuitBreaker(store_for(url), source=SOURCE, failure_threshold=10_000)
    start.wait()
    for _ in range(times):
        breaker.record_failure("HTTP 503")
    results.put(times)


def _try_a_call(url: str, start, results) -> None:
    breaker = CircuitBreaker(store_for(url), source=SOURCE, failure_threshold=1, cooldown_seconds=600)
    start.wait()
    try:
        breaker.before_call()
    except CircuitOpenError:
        results.put("refused")
    else:
        results.put("trial")


def run_at_once(target, *args) -> list:
    """`target(*args, start, results)` in PROCESSES real processes released together; their results."""
    # Forked: each process opens its own connections, as a run's process does.
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(PROCESSES), context.Queue()
    processes = [context.Process(target=target, args=(*args, start, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcomes


def test_failures_recorded_by_processes_at_once_are_all_counted(warehouse_url):
    # The tables are made by the racing processes themselves: that, too, must be safe.
    assert run_at_once(_record_failures, warehouse_url, 25) == [25] * PROCESSES
    breaker = CircuitBreaker(store_for(warehouse_url), source=SOURCE, failure_threshold=10_000)
    with breaker.store.locked(breaker.key, SOURCE) as state:
        assert state.consecutive_failures == 25 * PROCESSES


def test_half_open_lets_exactly_one_of_the_processes_calling_at_once_through(warehouse_url):
    breaker = CircuitBreaker(store_for(warehouse_url), source=SOURCE, failure_threshold=1, cooldown_seconds=600)
    for _ in range(3):
        breaker.record_failure("HTTP 503")
        with breaker.store.locked(breaker.key, SOURCE) as state:
            state.opened_at = time.time() - 601  # the cool-down has passed
        assert sorted(run_at_once(_try_a_call, warehouse_url)) == ["refused"] * (PROCESSES - 1) + ["trial"]
        with pytest.raises(CircuitOpenError, match="circuit half-open"):
            breaker.before_call()


# --- The breaker's rules, as a model -------------------------------------------------------

THRESHOLD, COOLDOWN = 3, 60.0
DAYS = [f"2026-10-{day:02d}" for day in range(1, 6)]


@dataclass
class Model:
    """The rules as the README states them, kept in memory."""

    state: str = "closed"
    failures: int = 0
    since: float = 0.0  # when it opened, or when the trial call went out
    days: set[str] = field(default_factory=set)

    def before_call(self, now: float) -> bool:
        if self.state != "closed":
            if now - self.since < COOLDOWN:
                return False
            self.state, self.since = "half_open", now
        return True

    def success(self) -> None:
        self.state, self.failures = "closed", 0

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= THRESHOLD:
            self.state, self.since = "open", now


operations = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.none()),
        st.tuples(st.just("success"), st.none()),
        st.tuples(st.just("failure"), st.none()),
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=2 * COOLDOWN)),
        st.tuples(st.just("skip"), st.sampled_from(DAYS)),
        st.tuples(st.just("take"), st.none()),
    ),
    max_size=25,
)


def check_against_the_model(url: str, steps: list) -> None:
    now = [1_000_000.0]
    model = Model()
    key_source = f"{SOURCE}{time.monotonic_ns()}"  # a fresh circuit per example

    def breaker() -> CircuitBreaker:
        # A new breaker and store for each step, as each process (sensor tick, run) makes its own.
        return CircuitBreaker(
            store_for(url),
            source=key_source,
            failure_threshold=THRESHOLD,
            cooldown_seconds=COOLDOWN,
            clock=lambda: now[0],
        )

    for operation, argument in steps:
        if operation == "call":
            allowed = model.before_call(now[0])
            if allowed:
                breaker().before_call()
            else:
                with pytest.raises(CircuitOpenError):
                    breaker().before_call()
        elif operation == "success":
            model.success()
            breaker().record_success()
        elif operation == "failure":
            model.failure(now[0])
            breaker().record_failure("HTTP 503")
        elif operation == "wait":
            now[0] += argument
        elif operation == "skip":
            model.days.add(argument)
            breaker().record_skipped_day(argument)
        else:
            assert breaker().take_skipped_days() == sorted(model.days)
            model.days.clear()
        description = breaker().describe()
        if model.state == "closed":
            assert description == "circuit closed"
        else:
            assert description.startswith(f"circuit {model.state.replace('_', '-')} since ")
            assert f"after {model.failures} failures" in description


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_the_breaker_on_sqlite_follows_its_rules(tmp_path, steps):
    check_against_the_model(f"sqlite:///{tmp_path}/warehouse.sqlite", steps)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_the_breaker_on_postgresql_follows_its_rules(postgres_url, steps):
    check_against_the_model(postgres_url, steps)
