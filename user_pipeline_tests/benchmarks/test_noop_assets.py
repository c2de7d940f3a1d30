"""The benchmark's no-op graph (Dagster's floor) stays the same graph as the real daily assets."""

import dagster as dg

from benchmarks import noop_assets
from user_pipeline.users import assets as users_assets

DAILY_ASSETS = ("raw_users", "normalized_users", "users_table")


def graph_shape(assets: list[dg.AssetsDefinition]) -> dict:
    shape = {}
    for asset in assets:
        key = asset.key
        shape[key.to_user_string()] = {
            "deps": sorted(dep.to_user_string() for dep in asset.asset_deps[key]),
            "partitions": asset.partitions_def,
            "checks": {spec.name: spec.blocking for spec in asset.check_specs},
            "pool": asset.op.pool,
        }
    return shape


def test_the_noop_graph_has_the_daily_assets_keys_deps_partitions_checks_and_pool():
    real = graph_shape([getattr(users_assets, name) for name in DAILY_ASSETS])
    noop = graph_shape([getattr(noop_assets, name) for name in DAILY_ASSETS])

    assert noop == real
    assert real["normalized_users"]["checks"]["row_drop_within_limit"] is True


def test_a_noop_run_materializes_every_asset_and_passes_every_check():
    assets = [getattr(noop_assets, name) for name in DAILY_ASSETS]

    result = dg.materialize(assets, partition_key="2026-02-01")

    assert result.success
    assert {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()} == set(DAILY_ASSETS)
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 7 and all(evaluation.passed for evaluation in evaluations)
