"""The one schedule: the Airflow-style alternative to `users_api_sensor` for starting the ingestion
at a fixed time. Everything downstream runs on automation conditions, not on schedules."""

import dagster as dg

from user_pipeline.automation.sensors import INGESTION_ASSETS
from user_pipeline.partitions import daily_partitions


def build_daily_users_schedule(cron: str, timezone: str, daily_users_job) -> dg.ScheduleDefinition:
    """`daily_users_schedule`: at each tick of `cron` (in `timezone`), runs `daily_users_job` (its
    runs get the job's run tags, the maximum run time among them) for the
    UTC day that closed most recently before the tick. The run key is the day, so a day is
    requested once per tick.

    Stopped until switched on (UI or `dagster schedule start`), like an Airflow DAG paused at
    creation. Partitions stay UTC days whatever timezone the schedule runs in.
    """

    @dg.schedule(
        name="daily_users_schedule",
        job=daily_users_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Ingests the day that just closed ({cron}, {timezone}); the registry, report and Parquet "
        "follow through their automation conditions. Stopped until switched on.",
    )
    def daily_users_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
            day = daily_partitions.get_last_partition_key()
        # The assets named, as users_api_sensor does (see INGESTION_ASSETS there).
        return dg.RunRequest(run_key=day, partition_key=day, asset_selection=INGESTION_ASSETS)

    return daily_users_schedule
