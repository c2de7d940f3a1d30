"""Repair in one action: with 3 of 7 days failed, the plan names exactly those 3 days, re-running
them makes all 7 succeed, and nothing that succeeded is materialized again; a failed downstream
day is planned, a merely missing one is left to its automation condition."""

import dagster as dg
import pytest

from user_pipeline.automation.repair import DOWNSTREAM_ASSETS, REPAIRED_ASSETS, plan_repair
from user_pipeline.definitions import defs as load_definitions
from user_pipeline.partitions import daily_partitions
from user_pipeline_tests.runs import USERS_ASSETS, materialize_users

defs = load_definitions()

WEEK = daily_partitions.get_partition_keys()[-7:]
FAILED = [WEEK[1], WEEK[3], WEEK[4]]


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def materialize(instance, base_url, tmp_path, day, selection=USERS_ASSETS):
    return materialize_users(base_url, tmp_path, day, instance=instance, assets=selection, users_per_partition=10)


def materialization_counts(instance) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for asset in REPAIRED_ASSETS:
        for record in instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records:
            key = (asset, record.partition_key)
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_three_failed_days_of_seven_are_planned_and_repaired_alone(users_api_server, instance, tmp_path):
    users_api_server.add_fault("error_body", seeds=FAILED)
    for day in WEEK:
        assert materialize(instance, users_api_server.base_url, tmp_path, day).success == (day not in FAILED)
    users_api_server.clear_faults()

    plan = plan_repair(instance, WEEK[0], WEEK[-1])
    assert plan.days == FAILED
    assert plan.days_by_asset == {
        **dict.fromkeys(REPAIRED_ASSETS, FAILED),
        **{asset: [] for asset in DOWNSTREAM_ASSETS},
    }
    assert "would re-run 3 day(s)" in plan.describe() and "estimated time: unknown" in plan.describe()

    before = materialization_counts(instance)
    for day in plan.days:
        assert materialize(instance, users_api_server.base_url, tmp_path, day).success
    after = materialization_counts(instance)
    assert {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)} == {
        (asset, day): 1 for asset in REPAIRED_ASSETS for day in FAILED
    }
    assert plan_repair(instance, WEEK[0], WEEK[-1]).days == []
    assert plan_repair(instance, WEEK[0], WEEK[-1]).describe().startswith("nothing to repair")


def test_only_the_failed_asset_of_a_day_is_planned(users_api_server, instance, tmp_path):
    day = WEEK[2]
    assert materialize(instance, users_api_server.base_url, tmp_path, day, ("raw_users", "normalized_users")).success
    plan = plan_repair(instance, day, day)
    assert plan.days_by_asset == {
        "raw_users": [],
        "normalized_users": [],
        "users_table": [day],
        **{asset: [] for asset in DOWNSTREAM_ASSETS},
    }


def test_a_failed_downstream_day_is_planned_a_missing_one_is_not(users_api_server, instance, tmp_path):
    day, other = WEEK[5], WEEK[6]
    for each in (day, other):
        assert materialize(instance, users_api_server.base_url, tmp_path, each).success
    (tmp_path / "normalized_users" / f"{day}.csv").unlink()  # the report of `day` fails: its input is gone
    report = dg.materialize(
        [defs.get_assets_def("daily_users_report")],
        partition_key=day,
        instance=instance,
        resources={"files": defs.resources["files"].model_copy(update={"data_dir": str(tmp_path)})},
        raise_on_error=False,
    )
    assert not report.success
    plan = plan_repair(instance, day, other)
    assert plan.days_by_asset["daily_users_report"] == [day]
    assert plan.days_by_asset["users_parquet"] == plan.days_by_asset["user_registry"] == []
    assert "daily_users_report: " + day in plan.describe()
