"""A job over every asset of one day that needs no other day: the users chain and its report."""

from __future__ import annotations

from typing import Any

import dagster as dg

from user_pipeline.run_limits import RunLimits, max_runtime_tags

# What dg.define_asset_job returns (an unresolved asset job); Dagster does not export its class.
AssetJob = Any

DAY_ASSETS = ("raw_users", "normalized_users", "users_table", "daily_users_report")


def build_day_assets_job(limits: RunLimits) -> AssetJob:
    """`day_assets_job`, with the ingestion's maximum run time from `limits` as its runs' tags.

    Not the registry (day D needs day D-1, so its days go one at a time: user_registry_job) nor
    Spark (a range of days is one application: spark_ingestion_job). Under the Celery executor its
    steps go to two queues: the API-bound step to `users_api`, the others to `dagster`."""
    return dg.define_asset_job(
        "day_assets_job",
        selection=dg.AssetSelection.assets(*DAY_ASSETS),
        run_tags=max_runtime_tags([dg.AssetKey(name) for name in DAY_ASSETS], limits),
        description="Every asset of one day that needs no other day: fetched users -> normalized CSV -> "
        "warehouse table, and the daily report. One run per day (`dagster job backfill` for a range).",
    )
