"""Dagster's floor for the daily users graph: the same three assets, checks and pool, doing nothing.

    dagster asset materialize -m benchmarks.noop_assets --select raw_users,normalized_users,users_table --partition D

Same asset keys, dependencies, daily partitions, asset checks (blocking or not), `users_api`
pool and in-process executor as user_pipeline/users/assets.py, but empty bodies and no
resources, pandas or HTTP: a run of it is what Dagster alone costs for this graph (imports,
instance, run and event storage, check bookkeeping, compute log capture). The benchmark times
it beside the real assets; user_pipeline_tests/benchmarks/test_noop_assets.py keeps the two
graphs equal.
"""

import dagster as dg

from user_pipeline.partitions import daily_partitions


def passed(*check_names: str) -> list[dg.AssetCheckResult]:
    return [dg.AssetCheckResult(check_name=name, passed=True) for name in check_names]


@dg.asset(partitions_def=daily_partitions, pool="users_api")
def raw_users() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(
    partitions_def=daily_partitions,
    deps=[raw_users],
    check_specs=[
        dg.AssetCheckSpec("emails_unique_and_present", asset="normalized_users", blocking=True),
        dg.AssetCheckSpec("user_ids_unique", asset="normalized_users", blocking=True),
        dg.AssetCheckSpec("no_plaintext_password", asset="normalized_users", blocking=True),
        dg.AssetCheckSpec("rows_match_raw_users", asset="normalized_users"),
        dg.AssetCheckSpec("row_drop_within_limit", asset="normalized_users", blocking=True),
    ],
)
def normalized_users() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        check_results=passed(
            "emails_unique_and_present",
            "user_ids_unique",
            "no_plaintext_password",
            "rows_match_raw_users",
            "row_drop_within_limit",
        )
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[normalized_users],
    check_specs=[
        dg.AssetCheckSpec("rows_match_normalized_users", asset="users_table", blocking=True),
        dg.AssetCheckSpec("table_matches_normalized_users", asset="users_table", blocking=True),
    ],
)
def users_table() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=passed("rows_match_normalized_users", "table_matches_normalized_users"))


defs = dg.Definitions(assets=[raw_users, normalized_users, users_table], executor=dg.in_process_executor)
