"""Dagster's floor for the daily users graph: the same multi-asset, keys, checks and pool, doing nothing.

    dagster asset materialize -m benchmarks.noop_assets --select raw_users,normalized_users,users_table --partition D

Same step (`daily_users`, one multi-asset), asset keys, dependencies, daily partitions, asset
checks (blocking or not), `users_api` pool and in-process executor as user_pipeline/users/assets.py,
but an empty body and no resources, pandas or HTTP: a run of it is what Dagster alone costs for
this graph (imports, instance, run and event storage, check bookkeeping, compute log capture). The
benchmark times it beside the real assets; user_pipeline_tests/benchmarks/test_noop_assets.py
keeps the two graphs equal.
"""

import dagster as dg

from user_pipeline.partitions import daily_partitions

# A copy of user_pipeline.users.days.DAY_CHECKS, which imports pandas: the test keeps them equal.
CHECKS: dict[str, dict[str, bool]] = {
    "raw_users": {"rejected_share_within_limit": True},
    "normalized_users": {
        "emails_unique_and_present": True,
        "user_ids_unique": True,
        "no_plaintext_password": True,
        "rows_match_raw_users": False,
        "row_drop_within_limit": True,
    },
    "users_table": {"rows_match_normalized_users": True, "table_matches_normalized_users": True},
}


@dg.multi_asset(
    name="daily_users",
    specs=[
        dg.AssetSpec("raw_users", skippable=True),
        dg.AssetSpec("normalized_users", deps=["raw_users"], skippable=True),
        dg.AssetSpec("users_table", deps=["normalized_users"], skippable=True),
    ],
    check_specs=[
        dg.AssetCheckSpec(name, asset=asset, blocking=blocking)
        for asset, checks in CHECKS.items()
        for name, blocking in checks.items()
    ],
    partitions_def=daily_partitions,
    pool="users_api",
    can_subset=True,
)
def daily_users(context: dg.AssetExecutionContext):
    # In dependency order, as a multi-asset must yield.
    for asset in (name for name in CHECKS if dg.AssetKey(name) in context.selected_asset_keys):
        key = dg.AssetKey(asset)
        yield dg.MaterializeResult(
            asset_key=key,
            check_results=[dg.AssetCheckResult(check_name=name, asset_key=key, passed=True) for name in CHECKS[asset]],
        )


defs = dg.Definitions(assets=[daily_users], executor=dg.in_process_executor)
