import dagster as dg

# The daily ingestion: fetched users -> normalized CSV -> warehouse table, for one day.
daily_users_job = dg.define_asset_job(
    "daily_users_job", selection=dg.AssetSelection.assets("raw_users", "normalized_users", "users_table")
)

# The cumulative registry: each day needs the day before, so its runs queue one at a time, oldest
# first (the instance limits the user_pipeline/sequential tag to one run per value).
user_registry_job = dg.define_asset_job(
    "user_registry_job",
    selection=dg.AssetSelection.assets("user_registry"),
    tags={"user_pipeline/sequential": "user_registry"},
)

# Spark ingestion of the normalized users; a backfill over many days is one Spark application.
spark_ingestion_job = dg.define_asset_job("spark_ingestion_job", selection=dg.AssetSelection.assets("users_parquet"))

# The daily report, apart from the ingestion: a chart can be redrawn without fetching the day again.
daily_users_report_job = dg.define_asset_job("daily_users_report_job", selection=dg.AssetSelection.assets("daily_users_report"))
