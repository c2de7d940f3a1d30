import inspect
import json
import os
import time
from datetime import date, datetime, timedelta, timezone

import dagster as dg

from user_pipeline.automation.alerts import AlertDeliveryError, AlertOutbox, FreshnessAlert, RunFailureAlert
from user_pipeline.automation.repair import plan_repair
from user_pipeline.automation.resources import AlertChannel, PartitionDeadlines
from user_pipeline.jobs import daily_users_job
from user_pipeline.partitions import InvalidPartitionKeyError, check_partition_key, daily_partitions
from user_pipeline.users.resources import UsersApi

COMPLETION_ASSET = dg.AssetKey("users_table")


def documented_sensor(**kwargs):
    """@dg.sensor with the function's docstring as the sensor's description (the UI shows it;
    @dg.sensor alone leaves it empty)."""

    def decorate(fn):
        return dg.sensor(description=inspect.cleandoc(fn.__doc__ or ""), **kwargs)(fn)

    return decorate


@documented_sensor(
    job=daily_users_job,
    minimum_interval_seconds=int(os.getenv("USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS", "60")),
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def users_api_sensor(context: dg.SensorEvaluationContext, users_api: UsersApi) -> dg.SensorResult | dg.SkipReason:
    """Airflow's HttpSensor, the Dagster way: once the users API answers, run the latest closed day.

    Skips, with the reason shown in the UI, while the API is down or its circuit breaker is
    open (then no call is made). Requests one run per day (the run key is the day, and the
    cursor remembers the last day requested); once the API is back, it also requests the days
    whose runs were refused while the circuit was open.
    """
    latest = daily_partitions.get_last_partition_key()
    breaker = users_api.breaker()
    unavailable = users_api.unavailable_reason()
    if unavailable:
        return dg.SkipReason(f"users API {users_api.source} is unavailable: {unavailable}")
    requests = [
        # A fresh run key: the day's run refused while the circuit was open used the plain one.
        dg.RunRequest(run_key=f"{day}/after-outage-{int(time.time())}", partition_key=day)
        for day in (breaker.take_skipped_days() if breaker else [])
        if _is_partition(context, day) and not _materialized(context.instance, day)
    ]
    if context.cursor == latest:
        skip_reason = f"the run for {latest} was already requested"
    elif _materialized(context.instance, latest):
        skip_reason = f"{latest} is already materialized"
    else:
        requests.append(dg.RunRequest(run_key=latest, partition_key=latest))
    context.update_cursor(latest)
    if not requests:
        return dg.SkipReason(skip_reason)
    return dg.SensorResult(run_requests=requests)


def _is_partition(context: dg.SensorEvaluationContext, day: str) -> bool:
    """A day recorded by a run is checked before it is requested again: a bad key is logged, not run."""
    try:
        check_partition_key(day)
    except InvalidPartitionKeyError as error:
        context.log.warning(f"not requesting {day!r} again: {error}")
        return False
    return True


def _materialized(instance: dg.DagsterInstance, day: str) -> bool:
    return bool(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=COMPLETION_ASSET, asset_partitions=[day]), limit=1
        ).records
    )


# How often the run failure alerts look for failed runs and re-send undelivered alerts.
ALERT_INTERVAL_SECONDS = int(os.getenv("USER_PIPELINE_ALERT_SENSOR_INTERVAL_SECONDS", "30"))
# On its very first tick the sensor reads failures back this far, not the whole history.
FIRST_TICK_LOOKBACK_SECONDS = 24 * 3600
EVENTS_PER_TICK = 200


@documented_sensor(minimum_interval_seconds=ALERT_INTERVAL_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alerts(context: dg.SensorEvaluationContext, alerts: AlertChannel) -> dg.SkipReason:
    """Airflow's on_failure_callback: every failed run of this code location's jobs and assets,
    however it was launched (daemon, UI, `dagster asset materialize`, `dg launch`, the Python API
    on this instance), gives exactly one alert: the log, and the webhook if set.

    Reads the instance's RUN_FAILURE events with its own cursor (a run launched outside the
    daemon's code location is seen too). An alert the webhook does not accept (error, timeout)
    stays in the cursor's outbox and is sent again on later ticks with backoff; delivered alert
    ids are remembered, so none is sent twice.
    """
    outbox = AlertOutbox.from_cursor(context.cursor)
    our_jobs = set(context.repository_def.job_names) if context.repository_def else None
    after = None if outbox.position else time.time() - FIRST_TICK_LOOKBACK_SECONDS
    result = context.instance.fetch_run_status_changes(
        dg.RunStatusChangeRecordsFilter(event_type=dg.DagsterEventType.RUN_FAILURE, after_timestamp=after),
        limit=EVENTS_PER_TICK, cursor=outbox.position, ascending=True,
    )
    found = 0
    for record in result.records:
        run = context.instance.get_run_by_id(record.run_id)
        if run is None or (our_jobs is not None and run.job_name not in our_jobs):
            continue
        alert = run_failure_alert(context.instance, run, alerts)
        if outbox.add(run.run_id, alert.as_payload()):
            context.log.error(alert.as_text())
            found += 1
    if result.records:
        outbox.position = result.cursor
    delivered, stopped = (0, None)
    if alerts.webhook_url:
        delivered, stopped = outbox.deliver(alerts.post, now=time.time())
    else:
        outbox.delivered += [item.alert_id for item in outbox.pending]
        outbox.pending.clear()
    context.update_cursor(outbox.to_cursor())
    if stopped:
        context.log.warning(stopped)
    summary = f"{found} new failed run(s); {delivered} alert(s) delivered to the webhook; {len(outbox.pending)} waiting"
    return dg.SkipReason(summary + (f" ({stopped})" if stopped else ""))


def run_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, alerts: AlertChannel) -> RunFailureAlert:
    """The alert of a failed run: job, partition, failed steps and their errors, a link to the run."""
    step_failures = [entry.dagster_event for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    errors = [event.event_specific_data.error.message.strip() for event in step_failures if event.event_specific_data.error]
    run_failure = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return RunFailureAlert(
        job=run.job_name,
        run_id=run.run_id,
        partition=run.tags.get("dagster/partition")
        or ("...".join(filter(None, (run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")))) or None),
        failed_steps=[event.step_key for event in step_failures if event.step_key],
        error="\n".join(errors) or (run_failure[-1].message if run_failure else "") or "unknown error",
        run_url=alerts.run_url(run.run_id),
    )


IN_FLIGHT_STATUSES = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED"}


@documented_sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def partition_freshness_sensor(
    context: dg.SensorEvaluationContext, alerts: AlertChannel, deadlines: PartitionDeadlines, users_api: UsersApi
) -> dg.SkipReason:
    """Per-day freshness: every day must be in the users table by its deadline (default 06:00 UTC
    the next day). A day past due gets one alert, through the run failure alerts' channel, saying
    whether it is late (queued or running), failed (which step, why) or missing (and why).
    """
    now = datetime.now(timezone.utc)
    alerted = set(json.loads(context.cursor or "[]"))
    overdue = []
    for day in daily_partitions.get_partition_keys()[-deadlines.lookback_days :]:
        due = datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), timezone.utc)
        due += timedelta(hours=deadlines.deadline_hours)
        if due > now or _materialized(context.instance, day):
            continue
        status, reason = _why_not_ready(context.instance, day, users_api)
        overdue.append(f"{day} {status}")
        if f"{day}:{status}" not in alerted:
            try:
                alerts.send(FreshnessAlert(day, status, reason, due.strftime("%Y-%m-%d %H:%M UTC")), context.log)
            except AlertDeliveryError as error:
                # Not remembered as sent: the next tick sends it again; the others still go now.
                context.log.warning(f"freshness alert for {day} not delivered, sent again next tick: {error}")
                continue
            alerted.add(f"{day}:{status}")
    # Only days still in the window are remembered.
    window = set(daily_partitions.get_partition_keys()[-deadlines.lookback_days :])
    context.update_cursor(json.dumps(sorted(key for key in alerted if key.split(":")[0] in window)))
    return dg.SkipReason(f"overdue: {', '.join(overdue)}" if overdue else "every day is on time")


def _why_not_ready(instance: dg.DagsterInstance, day: str, users_api: UsersApi) -> tuple[str, str]:
    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": day}), limit=1)
    if records:
        run = records[0].dagster_run
        if run.status.value in IN_FLIGHT_STATUSES:
            return "late", f"run {run.run_id} is {run.status.value.lower()}"
        if run.status.value == "FAILURE":
            failures = [
                entry.dagster_event
                for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            ]
            steps = ", ".join(f"{event.step_key}: {event.event_specific_data.error.message.strip()}" for event in failures)
            return "failed", f"run {run.run_id} failed ({steps or 'outside its steps'})"
    unavailable = users_api.unavailable_reason()
    if unavailable:
        return "missing", f"no successful run; the users API is unavailable: {unavailable}"
    return "missing", "no run was launched for it (is daily_users_schedule or users_api_sensor running?)"


@documented_sensor(
    job=daily_users_job, minimum_interval_seconds=1800, default_status=dg.DefaultSensorStatus.STOPPED
)
def repair_sensor(context: dg.SensorEvaluationContext, deadlines: PartitionDeadlines) -> dg.SensorResult | dg.SkipReason:
    """Repair from the UI: while started, re-runs every failed or missing day of the last
    `lookback_days` days, only the assets that failed on it (the CLI equivalent is
    `python -m user_pipeline.automation.repair`). A day is retried at most once per failed run."""
    days = daily_partitions.get_partition_keys()[-deadlines.lookback_days :]
    plan = plan_repair(context.instance, days[0], days[-1])
    requests = []
    for day in plan.days:
        assets = [asset for asset, asset_days in plan.days_by_asset.items() if day in asset_days]
        latest = context.instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": day}), limit=1)
        attempt = latest[0].dagster_run.run_id if latest else "first"
        requests.append(
            dg.RunRequest(
                run_key=f"repair/{day}/{'+'.join(assets)}/{attempt}",
                partition_key=day,
                asset_selection=[dg.AssetKey(asset) for asset in assets],
                tags={"user_pipeline/repair": "true"},
            )
        )
    if not requests:
        return dg.SkipReason(plan.describe())
    return dg.SensorResult(run_requests=requests)
