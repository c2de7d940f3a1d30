"""No cross-poisoning: the circuit breaker's state is per source (API base URL), so an offline run
against one API never stops runs against another that shares the data directory."""

import dagster as dg
import pytest

from user_pipeline.users.api_errors import CircuitOpenError
from user_pipeline.users.assets import daily_users
from user_pipeline.users.circuit_breaker import CircuitBreaker
from user_pipeline.users.circuit_store import SqliteCircuitStore
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource
from user_pipeline_tools.randomuser_server.launcher import free_port

DAY = "2026-11-20"


def test_failures_of_one_source_leave_another_source_closed(tmp_path):
    state = SqliteCircuitStore(tmp_path / "warehouse-circuit.sqlite")
    public = CircuitBreaker(state, source="https://randomuser.me/api/", failure_threshold=1, cooldown_seconds=300)
    bundled = CircuitBreaker(state, source="http://127.0.0.1:8765/api/", failure_threshold=1, cooldown_seconds=300)
    public.record_failure("cannot reach randomuser.me")
    with pytest.raises(CircuitOpenError, match="randomuser.me"):
        public.before_call()
    bundled.before_call()
    assert bundled.describe() == "circuit closed"
    # The same source, however its URL ends, is one circuit.
    with pytest.raises(CircuitOpenError):
        CircuitBreaker(state, source="HTTPS://randomuser.me/api", cooldown_seconds=300).before_call()


def test_an_offline_run_against_an_unreachable_api_does_not_fail_the_next_run_against_a_healthy_one(
    users_api_server, tmp_path
):
    """Finding 2: an offline `dagster asset materialize` (default URL, no network) opened the shared
    circuit, and the next run against the bundled API failed with `circuit open (last: ... randomuser.me)`."""
    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path}/warehouse.sqlite")
    shared = {
        "circuit_store": warehouse,
        "circuit_failure_threshold": 1,
        "max_attempts": 1,
        "backoff_seconds": 0.01,
        "users_per_partition": 5,
    }
    files = PartitionFiles(data_dir=str(tmp_path))
    unreachable = RandomUserApi(base_url=f"http://127.0.0.1:{free_port()}/api/", **shared)
    healthy = RandomUserApi(base_url=users_api_server.base_url, **shared)
    assets = [daily_users]
    with dg.instance_for_test() as instance:
        offline = dg.materialize(
            assets,
            partition_key=DAY,
            instance=instance,
            raise_on_error=False,
            resources={"users_api": unreachable, "files": files, "warehouse": warehouse, "day_limits": DayLimits()},
        )
        assert not offline.success
        assert unreachable.breaker().describe().startswith("circuit open")
        online = dg.materialize(
            assets,
            partition_key=DAY,
            instance=instance,
            raise_on_error=False,
            resources={"users_api": healthy, "files": files, "warehouse": warehouse, "day_limits": DayLimits()},
        )
    assert online.success
    assert warehouse.open().count_rows(DAY) == 5
