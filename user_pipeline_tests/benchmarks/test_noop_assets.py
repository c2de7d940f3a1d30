"""The benchmark's no-op graph (Dagster's floor) stays the same graph as the real daily assets."""

import dagster as dg

from benchmarks import noop_assets
from user_pipeline.users import assets as users_assets
from user_pipeline.users.days import DAY_CHECKS

DAILY_ASSETS = ("raw_users", "normalized_users", "users_table")


def graph_shape(multi_asset: dg.AssetsDefinition) -> dict:
    shape = {"step": multi_asset.op.name, "pool": multi_asset.op.pool, "can_subset": multi_asset.can_subset}
    for key in multi_asset.keys:
        shape[key.to_user_string()] = {
            "deps": sorted(dep.to_user_string() for dep in multi_asset.asset_deps[key]),
            "partitions": multi_asset.partitions_def,
            "checks": {spec.name: spec.blocking for spec in multi_asset.check_specs if spec.asset_key == key},
        }
    return shape


def test_the_noop_graph_has_the_daily_assets_keys_deps_partitions_checks_and_pool():
    real = graph_shape(users_assets.daily_users)
    noop = graph_shape(noop_assets.daily_users)

    assert noop == real
    assert set(real) >= set(DAILY_ASSETS) and real["step"] == "daily_users" and real["pool"] == "users_api"
    assert real["normalized_users"]["checks"]["row_drop_within_limit"] is True
    assert noop_assets.CHECKS == DAY_CHECKS


def test_a_noop_run_materializes_every_asset_and_passes_every_check():
    result = dg.materialize([noop_assets.daily_users], partition_key="2026-02-01")

    assert result.success
    assert {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()} == set(
        DAILY_ASSETS
    )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 8 and all(evaluation.passed for evaluation in evaluations)
