"""The automation conditions of the definitions, evaluated as the automation condition sensor does:
a day landed upstream is followed downstream exactly once; a day refused by a blocking check is
not; the registry waits for its own previous day (and starts on the first day); nothing is
requested merely because it is missing."""

import dagster as dg
import pytest
import requests

from user_pipeline.definitions import defs as load_definitions
from user_pipeline.partitions import daily_partitions
from user_pipeline.shared.conditions import day_landed
from user_pipeline_tests.runs import materialize_users

defs = load_definitions()

DOWNSTREAM = {"user_registry", "daily_users_report", "users_parquet"}
FIRST_DAY = daily_partitions.get_first_partition_key()
DAY, NEXT_DAY = "2026-11-20", "2026-11-21"


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


class Evaluator:
    """Successive ticks of the automation condition sensor, its cursor carried from one to the next."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor = instance, None

    def requested(self) -> set[tuple[str, str]]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        graph = defs.resolve_asset_graph()
        return {
            (key.to_user_string(), partition)
            for key in graph.get_all_asset_keys()
            for partition in result.get_requested_partitions(key)
        }


def landed(instance, day: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization("user_registry", partition=day))


def test_the_downstream_assets_carry_day_landed_and_the_sensor_runs_by_default():
    graph = defs.resolve_asset_graph()
    conditions = {key.to_user_string(): graph.get(key).automation_condition for key in graph.get_all_asset_keys()}
    assert {name for name, condition in conditions.items() if condition is not None} == {
        "normalized_users",
        "users_table",
        *DOWNSTREAM,
    }
    assert all(conditions[name].get_label() == day_landed().get_label() for name in DOWNSTREAM)
    sensor = defs.resolve_sensor_def("automation_condition_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_a_landed_day_is_followed_downstream_once(users_api_server, instance, tmp_path):
    # A day ingested before the sensor's first tick: switching it on starts no backfill of history.
    assert materialize_users(
        users_api_server.base_url, tmp_path, "2026-11-18", instance=instance, users_per_partition=10
    ).success
    ticks = Evaluator(instance)
    assert ticks.requested() == set()
    landed(instance, "2026-11-19")  # the registry's previous day
    assert ticks.requested() == set()
    assert materialize_users(
        users_api_server.base_url, tmp_path, DAY, instance=instance, users_per_partition=10
    ).success
    # normalized_users and users_table ran with raw_users: not requested again.
    assert ticks.requested() == {(asset, DAY) for asset in DOWNSTREAM}
    assert ticks.requested() == set()
    assert ticks.requested() == set()


def test_the_registry_waits_for_its_previous_day(users_api_server, instance, tmp_path):
    ticks = Evaluator(instance)
    ticks.requested()
    assert materialize_users(
        users_api_server.base_url, tmp_path, DAY, instance=instance, users_per_partition=10
    ).success
    assert ticks.requested() == {("daily_users_report", DAY), ("users_parquet", DAY)}
    landed(instance, "2026-11-19")
    assert ticks.requested() == {("user_registry", DAY)}
    assert ticks.requested() == set()


def test_the_registry_starts_on_the_first_day(users_api_server, instance, tmp_path):
    ticks = Evaluator(instance)
    ticks.requested()
    assert materialize_users(
        users_api_server.base_url, tmp_path, FIRST_DAY, instance=instance, users_per_partition=10
    ).success
    assert ticks.requested() == {(asset, FIRST_DAY) for asset in DOWNSTREAM}


def test_a_day_refused_by_a_blocking_check_is_not_carried_downstream(users_api_server, instance, tmp_path):
    ticks = Evaluator(instance)
    ticks.requested()
    landed(instance, DAY)
    sent = requests.get(users_api_server.base_url, params={"seed": NEXT_DAY, "results": 10}, timeout=30).json()[
        "results"
    ]
    users_api_server.add_fault("alter_users", seeds=[NEXT_DAY], users=[7], set={"login.uuid": sent[2]["login"]["uuid"]})
    refused = materialize_users(
        users_api_server.base_url, tmp_path, NEXT_DAY, instance=instance, users_per_partition=10
    )
    assert not refused.success
    assert not [event for event in refused.get_asset_check_evaluations() if event.check_name == "user_ids_unique"][
        0
    ].passed
    assert ticks.requested() == set()
    assert ticks.requested() == set()
    # Once the API stops repeating the id, the re-run lands and is followed.
    users_api_server.clear_faults()
    assert materialize_users(
        users_api_server.base_url, tmp_path, NEXT_DAY, instance=instance, users_per_partition=10
    ).success
    assert ticks.requested() == {(asset, NEXT_DAY) for asset in DOWNSTREAM}
