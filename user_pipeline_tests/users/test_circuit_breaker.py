"""The users API circuit breaker, shared by sensor ticks and runs (its state in the warehouse's
database, SQLite or PostgreSQL): while the API is down at most `failure_threshold` calls are made,
and once it is back the refused days are backfilled."""

import time

import dagster as dg
import pytest

from user_pipeline.definitions import defs as load_definitions
from user_pipeline.partitions import daily_partitions
from user_pipeline.users.api_errors import CircuitOpenError
from user_pipeline.users.assets import daily_users
from user_pipeline.users.circuit_breaker import CircuitBreaker
from user_pipeline.users.circuit_store import circuit_store_for
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource

defs = load_definitions()

LATEST = daily_partitions.get_last_partition_key()


@pytest.fixture(autouse=True)
def latest_day() -> None:
    """LATEST as of the test's start, not of the module's import: pytest-xdist imports every module
    when a run begins, and a run begun before midnight UTC reaches this test after it."""
    global LATEST
    LATEST = daily_partitions.get_last_partition_key()


REFUSED_DAYS = ["2026-10-20", "2026-10-21"]
COOLDOWN_SECONDS = 8
users_api_sensor = defs.resolve_sensor_def("users_api_sensor")


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.sqlite"
    return request.getfixturevalue("postgres_url")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_the_threshold_half_opens_after_the_cooldown_and_closes_on_success(warehouse_url):
    clock = FakeClock()
    store = circuit_store_for(WarehouseResource(url=warehouse_url).open())
    breaker = CircuitBreaker(
        store, source="http://127.0.0.1:8765/api/", failure_threshold=2, cooldown_seconds=60, clock=clock
    )
    breaker.before_call()
    breaker.record_failure("HTTP 503")
    breaker.before_call()
    breaker.record_failure("HTTP 503")
    with pytest.raises(CircuitOpenError, match=r"circuit open since .* after 2 failures \(last: HTTP 503\)"):
        breaker.before_call()
    clock.now += 61
    breaker.before_call()  # the one trial call
    with pytest.raises(CircuitOpenError, match="circuit half-open"):
        breaker.before_call()  # no second call while the trial is out
    breaker.record_failure("HTTP 503")
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.now += 61
    breaker.before_call()
    breaker.record_success()
    breaker.before_call()
    assert breaker.describe() == "circuit closed"


def test_while_the_api_is_down_sensor_ticks_and_runs_make_at_most_threshold_calls_then_refused_days_are_backfilled(
    users_api_server, tmp_path, warehouse_url
):
    warehouse = WarehouseResource(url=warehouse_url)
    api = RandomUserApi(
        base_url=users_api_server.base_url,
        users_per_partition=20,
        backoff_seconds=0.01,
        max_attempts=5,
        circuit_store=warehouse,
        circuit_failure_threshold=3,
        # Long enough for the ticks and refused runs below on a loaded machine (each loads the definitions).
        circuit_cooldown_seconds=COOLDOWN_SECONDS,
    )
    resources = {
        "users_api": api,
        "files": PartitionFiles(data_dir=str(tmp_path)),
        "warehouse": warehouse,
        "day_limits": DayLimits(),
    }

    def run(day: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [daily_users], partition_key=day, resources=resources, instance=instance, raise_on_error=False
        )

    def tick():
        # A context manager: the users_api resource holds the warehouse resource (the breaker's store).
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=load_definitions(), resources={"users_api": api}
        ) as context:
            return users_api_sensor.evaluate_tick(context), context.cursor

    users_api_server.add_fault("server_error", status=503)
    with dg.instance_for_test() as instance:
        cursor = None
        result, cursor = tick()
        assert "is unavailable: HTTP 503" in result.skip_message  # call 1
        for day in REFUSED_DAYS:
            refused = run(day)  # calls 2 and 3 open the circuit; then no more calls
            assert not refused.success
            assert (
                f"{day} skipped: circuit open" in refused.get_step_failure_events()[0].step_failure_data.error.message
            )
        for _ in range(3):
            result, cursor = tick()
            assert "is unavailable: circuit open since" in result.skip_message
        assert users_api_server.stats()["api_requests"] == 3
        [event] = [e for e in refused.all_events if e.is_step_failure]
        assert event.step_key == "daily_users"

        users_api_server.clear_faults()
        time.sleep(COOLDOWN_SECONDS + 0.1)
        result, cursor = tick()  # the trial call succeeds and closes the circuit
        requested = sorted(request.partition_key for request in result.run_requests)
        assert requested == sorted([*REFUSED_DAYS, LATEST])
        assert all(run(day).success for day in requested)
        result, cursor = tick()
        assert result.run_requests == [] and result.skip_message == f"the run for {LATEST} was already requested"
