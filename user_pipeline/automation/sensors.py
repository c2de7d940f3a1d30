import os

import dagster as dg

from user_pipeline.automation.alerts import RunFailureAlert
from user_pipeline.automation.resources import AlertChannel
from user_pipeline.jobs import daily_users_job
from user_pipeline.partitions import daily_partitions
from user_pipeline.users.resources import UsersApi

COMPLETION_ASSET = dg.AssetKey("users_table")


@dg.sensor(
    job=daily_users_job,
    minimum_interval_seconds=int(os.getenv("USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS", "60")),
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def users_api_sensor(context: dg.SensorEvaluationContext, users_api: UsersApi) -> dg.RunRequest | dg.SkipReason:
    """Airflow's HttpSensor, the Dagster way: once the users API answers, run the latest closed day.

    Skips, with the reason shown in the UI, while the API is down. Requests one run per day
    (the run key is the day, and the cursor remembers the last day requested).
    """
    day = daily_partitions.get_last_partition_key()
    if context.cursor == day:
        return dg.SkipReason(f"the run for {day} was already requested")
    unavailable = users_api.unavailable_reason()
    if unavailable:
        return dg.SkipReason(f"users API {users_api.source} is unavailable: {unavailable}")
    context.update_cursor(day)
    done = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=COMPLETION_ASSET, asset_partitions=[day]), limit=1
    )
    if done.records:
        return dg.SkipReason(f"{day} is already materialized")
    return dg.RunRequest(run_key=day, partition_key=day)


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertChannel) -> None:
    """Airflow's one_failed trigger rule: every failed run sends an alert (log, and webhook if set)."""
    step_failures = context.get_step_failure_events()
    errors = [event.event_specific_data.error.message.strip() for event in step_failures if event.event_specific_data.error]
    alerts.send(
        RunFailureAlert(
            job=context.dagster_run.job_name,
            run_id=context.dagster_run.run_id,
            partition=context.dagster_run.tags.get("dagster/partition"),
            failed_steps=[event.step_key for event in step_failures if event.step_key],
            error="\n".join(errors) or context.failure_event.message or "unknown error",
            run_url=alerts.run_url(context.dagster_run.run_id),
        ),
        context.log,
    )
