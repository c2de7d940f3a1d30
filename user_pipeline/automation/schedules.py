import os

import dagster as dg

from user_pipeline.jobs import daily_users_job, daily_users_report_job, spark_ingestion_job, user_registry_job
from user_pipeline.partitions import daily_partitions

_TIMEZONE = os.getenv("USER_PIPELINE_SCHEDULE_TIMEZONE", "UTC")


def _latest_closed_day_schedule(job, cron: str, description: str) -> dg.ScheduleDefinition:
    """A schedule running `job` for the UTC day that closed most recently before each tick.

    Stopped until switched on (UI or `dagster schedule start`), like an Airflow DAG paused at
    creation. Partitions stay UTC days whatever timezone the schedule runs in.
    """

    @dg.schedule(
        name=job.name.removesuffix("_job") + "_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=_TIMEZONE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=description,
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
            day = daily_partitions.get_last_partition_key()
        return dg.RunRequest(run_key=day, partition_key=day)

    return _schedule


daily_users_schedule = _latest_closed_day_schedule(
    daily_users_job,
    os.getenv("USER_PIPELINE_SCHEDULE_CRON", "0 1 * * *"),
    "Ingests the day that just closed (default 01:00 UTC). Stopped until switched on.",
)
user_registry_schedule = _latest_closed_day_schedule(
    user_registry_job,
    os.getenv("USER_PIPELINE_REGISTRY_SCHEDULE_CRON", "0 2 * * *"),
    "Adds the day that just closed to the user registry, after the ingestion (default 02:00 UTC). Stopped until switched on.",
)
spark_ingestion_schedule = _latest_closed_day_schedule(
    spark_ingestion_job,
    os.getenv("USER_PIPELINE_SPARK_SCHEDULE_CRON", "0 3 * * *"),
    "Ingests the day that just closed into Parquet with Spark (default 03:00 UTC). Stopped until switched on.",
)
daily_users_report_schedule = _latest_closed_day_schedule(
    daily_users_report_job,
    os.getenv("USER_PIPELINE_REPORT_SCHEDULE_CRON", "30 1 * * *"),
    "Draws the report of the day that just closed (default 01:30 UTC). Stopped until switched on.",
)
