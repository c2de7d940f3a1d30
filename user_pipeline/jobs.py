"""The jobs users launch by hand (UI, `dagster job launch`, `dagster job backfill`, GraphQL). The
ingestion job is also what users_api_sensor and daily_users_schedule request; the registry,
report and Parquet otherwise run on their automation conditions, in runs of their own.

Built when the definitions load (`build_jobs`), because the ingestion and Spark jobs carry their
maximum run time as run tags (`dagster/max_runtime`, from the settings: user_pipeline/run_limits.py),
which every run of theirs gets, however launched: by hand, a schedule, a sensor or a job backfill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from user_pipeline.day_job import build_day_assets_job
from user_pipeline.run_limits import RunLimits, max_runtime_tags

# What dg.define_asset_job returns (an unresolved asset job); Dagster does not export its class.
AssetJob = Any

DAILY_USERS_ASSETS = ("raw_users", "normalized_users", "users_table")


@dataclass(frozen=True)
class Jobs:
    daily_users: AssetJob
    user_registry: AssetJob
    spark_ingestion: AssetJob
    daily_users_report: AssetJob
    day_assets: AssetJob

    @property
    def all(self) -> list[AssetJob]:
        return [self.daily_users, self.user_registry, self.spark_ingestion, self.daily_users_report, self.day_assets]


def _keys(names: tuple[str, ...]) -> list[dg.AssetKey]:
    return [dg.AssetKey(name) for name in names]


def build_jobs(limits: RunLimits) -> Jobs:
    """The jobs, the ingestion's and Spark's tagged with their maximum run time from `limits`."""
    return Jobs(
        daily_users=dg.define_asset_job(
            "daily_users_job",
            selection=dg.AssetSelection.assets(*DAILY_USERS_ASSETS),
            run_tags=max_runtime_tags(_keys(DAILY_USERS_ASSETS), limits),
            description="The daily ingestion of one day (the partition): fetched users (raw_users) -> "
            "normalized CSV (normalized_users) -> warehouse table (users_table). `dagster job backfill` runs one day "
            "per run.",
        ),
        # Each day needs the day before, so its runs queue one at a time, oldest first (the instance
        # limits the user_pipeline/sequential tag to one run per value).
        user_registry=dg.define_asset_job(
            "user_registry_job",
            selection=dg.AssetSelection.assets("user_registry"),
            tags={"user_pipeline/sequential": "user_registry"},
            description="The cumulative registry of every email seen (Airflow's depends_on_past): day D needs "
            "day D-1, so its runs go one at a time in date order.",
        ),
        spark_ingestion=dg.define_asset_job(
            "spark_ingestion_job",
            selection=dg.AssetSelection.assets("users_parquet"),
            run_tags=max_runtime_tags(_keys(("users_parquet",)), limits),
            description="Spark ingestion of the normalized users into Parquet (local, or SPARK_MASTER's cluster); "
            "a range of days is one Spark application.",
        ),
        # Apart from the ingestion: a chart can be redrawn without fetching the day again.
        daily_users_report=dg.define_asset_job(
            "daily_users_report_job",
            selection=dg.AssetSelection.assets("daily_users_report"),
            description="The daily users report: users by country and age band, a PNG chart and its CSV.",
        ),
        day_assets=build_day_assets_job(limits),
    )
