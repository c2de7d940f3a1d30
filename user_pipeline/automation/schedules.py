import os

import dagster as dg

from user_pipeline.jobs import daily_users_job
from user_pipeline.partitions import daily_partitions


@dg.schedule(
    job=daily_users_job,
    cron_schedule=os.getenv("USER_PIPELINE_SCHEDULE_CRON", "0 1 * * *"),
    execution_timezone=os.getenv("USER_PIPELINE_SCHEDULE_TIMEZONE", "UTC"),
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def daily_users_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Materializes the UTC day that closed most recently before the tick (default 01:00 UTC).

    Stopped until switched on (UI or `dagster schedule start`), like an Airflow DAG paused at
    creation. Partitions stay UTC days whatever timezone the schedule runs in.
    """
    with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
        day = daily_partitions.get_last_partition_key()
    return dg.RunRequest(run_key=day, partition_key=day)
