"""A job over every asset of one day that needs no other day: the users chain and its report."""

import dagster as dg

# Not the registry (day D needs day D-1, so its days go one at a time: user_registry_job) nor
# Spark (a range of days is one application: spark_ingestion_job). Under the Celery executor its
# steps go to two queues: the API-bound step to `users_api`, the others to `dagster`.
day_assets_job = dg.define_asset_job(
    "day_assets_job",
    selection=dg.AssetSelection.assets("raw_users", "normalized_users", "users_table", "daily_users_report"),
    description="Every asset of one day that needs no other day: fetched users -> normalized CSV -> "
    "warehouse table, and the daily report. One run per day (`dagster job backfill` for a range).",
)
