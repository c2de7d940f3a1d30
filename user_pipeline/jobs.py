"""The jobs users launch by hand (UI, `dagster job launch`, `dagster job backfill`, GraphQL). The
ingestion job is also what users_api_sensor and daily_users_schedule request; the registry,
report and Parquet otherwise run on their automation conditions, in runs of their own."""

import dagster as dg

daily_users_job = dg.define_asset_job(
    "daily_users_job",
    selection=dg.AssetSelection.assets("raw_users", "normalized_users", "users_table"),
    description="The daily ingestion of one day (the partition): fetched users (raw_users) -> "
    "normalized CSV (normalized_users) -> warehouse table (users_table). `dagster job backfill` runs one day per run.",
)

# Each day needs the day before, so its runs queue one at a time, oldest first (the instance
# limits the user_pipeline/sequential tag to one run per value).
user_registry_job = dg.define_asset_job(
    "user_registry_job",
    selection=dg.AssetSelection.assets("user_registry"),
    tags={"user_pipeline/sequential": "user_registry"},
    description="The cumulative registry of every email seen (Airflow's depends_on_past): day D needs "
    "day D-1, so its runs go one at a time in date order.",
)

spark_ingestion_job = dg.define_asset_job(
    "spark_ingestion_job",
    selection=dg.AssetSelection.assets("users_parquet"),
    description="Spark ingestion of the normalized users into Parquet (local, or SPARK_MASTER's cluster); "
    "a range of days is one Spark application.",
)

# Apart from the ingestion: a chart can be redrawn without fetching the day again.
daily_users_report_job = dg.define_asset_job(
    "daily_users_report_job",
    selection=dg.AssetSelection.assets("daily_users_report"),
    description="The daily users report: users by country and age band, a PNG chart and its CSV.",
)
