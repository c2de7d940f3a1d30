"""The sensors of the definitions, built from their settings by `definitions.py` (nothing here
reads the environment): the users API sensor (the ingestion's trigger), the automation condition
sensor (everything downstream), and the two alert sensors (failed runs, late days)."""

import inspect
import json
import time

import dagster as dg

from user_pipeline.automation.alerts import AlertOutbox, FreshnessAlert, RunFailureAlert
from user_pipeline.automation.freshness import (
    DEADLINE_METADATA,
    FRESHNESS_ASSETS,
    FRESHNESS_CHECK_NAME,
    overdue_day,
    why_not_ready,
)
from user_pipeline.automation.resources import AlertChannel
from user_pipeline.partitions import InvalidPartitionKeyError, check_partition_key, daily_partitions
from user_pipeline.run_limits import run_timeout
from user_pipeline.users.resources import UsersApi
from user_pipeline.users.warehouse import WarehouseUnavailableError

COMPLETION_ASSET = dg.AssetKey("users_table")
# Named in each ingestion run request, so the run records them as its asset selection: the
# automation conditions of normalized_users and users_table then see that raw_users' update came
# from a run that also targets them (`executed_with_root_target`) and never request them again.
INGESTION_ASSETS = [dg.AssetKey("raw_users"), dg.AssetKey("normalized_users"), dg.AssetKey("users_table")]
AUTOMATION_SENSOR_NAME = "automation_condition_sensor"
# On its very first tick an alert sensor reads failures back this far, not the whole history.
FIRST_TICK_LOOKBACK_SECONDS = 24 * 3600
EVENTS_PER_TICK = 200


def documented_sensor(**kwargs):
    """@dg.sensor with the function's docstring as the sensor's description (the UI shows it;
    @dg.sensor alone leaves it empty)."""

    def decorate(fn):
        return dg.sensor(description=inspect.cleandoc(fn.__doc__ or ""), **kwargs)(fn)

    return decorate


def build_users_api_sensor(minimum_interval_seconds: int, daily_users_job) -> dg.SensorDefinition:
    """`users_api_sensor`, requesting runs of `daily_users_job` (whose run tags, the maximum run
    time, its runs get), ticking at most every `minimum_interval_seconds`; stopped by default."""

    @documented_sensor(
        job=daily_users_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def users_api_sensor(context: dg.SensorEvaluationContext, users_api: UsersApi) -> dg.SensorResult | dg.SkipReason:
        """Airflow's HttpSensor, the Dagster way: once the users API answers, run the latest closed day.

        Skips, with the reason shown in the UI, while the API is down or its circuit breaker is
        open (then no call is made). Requests one run per day (the run key is the day, and the
        cursor remembers the last day requested); once the API is back, it also requests the days
        whose runs were refused while the circuit was open. What comes after the ingestion
        (registry, report, Parquet) is started by the automation condition sensor once the day
        has landed.
        """
        latest = daily_partitions.get_last_partition_key()
        breaker = users_api.breaker()
        try:
            unavailable = users_api.unavailable_reason()
            if unavailable:
                return dg.SkipReason(f"users API {users_api.source} is unavailable: {unavailable}")
            refused_days = breaker.take_skipped_days() if breaker else []
        except WarehouseUnavailableError as error:
            # The breaker's state is in the warehouse: without it, no call and no day is taken.
            return dg.SkipReason(f"users API {users_api.source} not checked: {error}")
        requests = [
            # A fresh run key: the day's run refused while the circuit was open used the plain one.
            dg.RunRequest(
                run_key=f"{day}/after-outage-{int(time.time())}", partition_key=day, asset_selection=INGESTION_ASSETS
            )
            for day in refused_days
            if _is_partition(context, day) and not _materialized(context.instance, day)
        ]
        if context.cursor == latest:
            skip_reason = f"the run for {latest} was already requested"
        elif _materialized(context.instance, latest):
            skip_reason = f"{latest} is already materialized"
        else:
            requests.append(dg.RunRequest(run_key=latest, partition_key=latest, asset_selection=INGESTION_ASSETS))
        context.update_cursor(latest)
        if not requests:
            return dg.SkipReason(skip_reason)
        return dg.SensorResult(run_requests=requests)

    return users_api_sensor


def _is_partition(context: dg.SensorEvaluationContext, day: str) -> bool:
    """A day recorded by a run is checked before it is requested again: a bad key is logged, not run."""
    try:
        check_partition_key(day)
    except InvalidPartitionKeyError as error:
        context.log.warning(f"not requesting {day!r} again: {error}")
        return False
    return True


def _materialized(instance: dg.DagsterInstance, day: str, asset_key: dg.AssetKey = COMPLETION_ASSET) -> bool:
    return bool(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[day]), limit=1
        ).records
    )


def build_automation_sensor(minimum_interval_seconds: int = 30) -> dg.AutomationConditionSensorDefinition:
    """The automation condition sensor: evaluates every asset's `automation_condition` (see
    `user_pipeline/shared/conditions.py`) on each tick, every `minimum_interval_seconds`
    (USER_PIPELINE_AUTOMATION_SENSOR_INTERVAL_SECONDS; 30 s, Dagster's default), in the daemon.
    RUNNING by default, as Dagster's own default automation sensor is: a day's registry, report and
    Parquet follow its ingestion without anyone switching anything on. Stop it with
    `dagster sensor stop automation_condition_sensor -w workspace.yaml` or the UI's toggle.

    Several days landing in one tick become one backfill (`emit_backfills`), which materializes
    the registry's days in date order (its day D needs D-1)."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description=inspect.cleandoc(build_automation_sensor.__doc__ or "").split("\n\n")[0],
    )


def _deliver(
    context: dg.SensorEvaluationContext, outbox: AlertOutbox, alerts: AlertChannel, found: int, what: str
) -> dg.SkipReason:
    """Sends what is due from the outbox (the log only, without a webhook), stores the cursor."""
    delivered, stopped = (0, None)
    if alerts.webhook_url:
        delivered, stopped = outbox.deliver(alerts.post, now=time.time())
    else:
        outbox.delivered += [item.alert_id for item in outbox.pending]
        outbox.pending.clear()
    context.update_cursor(outbox.to_cursor())
    if stopped:
        context.log.warning(stopped)
    summary = f"{found} new {what}; {delivered} alert(s) delivered to the webhook; {len(outbox.pending)} waiting"
    return dg.SkipReason(summary + (f" ({stopped})" if stopped else ""))


def build_run_failure_alerts(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """`run_failure_alerts`, ticking at most every `minimum_interval_seconds`; running by default."""

    @documented_sensor(minimum_interval_seconds=minimum_interval_seconds, default_status=dg.DefaultSensorStatus.RUNNING)
    def run_failure_alerts(context: dg.SensorEvaluationContext, alerts: AlertChannel) -> dg.SkipReason:
        """Airflow's on_failure_callback: every failed run of this code location's jobs and assets,
        however it was launched (daemon, UI, `dagster asset materialize`, `dg launch`, the Python API
        on this instance), gives exactly one alert: the log, and the webhook if set. A run stopped at
        its maximum run time is alerted naming it (`daily_users_job run exceeded its maximum run time
        of 3600 s (USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=3600)`) and the steps it stopped.

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
            limit=EVENTS_PER_TICK,
            cursor=outbox.position,
            ascending=True,
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
        return _deliver(context, outbox, alerts, found, "failed run(s)")

    return run_failure_alerts


def build_freshness_alerts(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """`freshness_alerts`, ticking at most every `minimum_interval_seconds`; running by default
    (it launches nothing: it only forwards what the freshness checks found)."""

    @documented_sensor(minimum_interval_seconds=minimum_interval_seconds, default_status=dg.DefaultSensorStatus.RUNNING)
    def freshness_alerts(
        context: dg.SensorEvaluationContext, alerts: AlertChannel, users_api: UsersApi
    ) -> dg.SkipReason:
        """Airflow's sla_miss_callback: one alert per day that missed its deadline, naming the day,
        the late assets and why: `late` (its run is queued or still running), `failed` (its run
        failed: run id, step, error) or `missing` (nothing materialized it; the API's state).

        Reads the failed evaluations of Dagster's time-partition freshness checks (run by
        `freshness_checks_sensor`, or with any run of the asset) with its own cursor, one
        position per check, and delivers through the same outbox as `run_failure_alerts`: an
        alert the webhook refuses is sent again later, and none twice (its id is the day).
        """
        outbox = AlertOutbox.from_cursor(context.cursor)
        positions: dict[str, int] = json.loads(outbox.position) if outbox.position else {}
        first_tick_after = time.time() - FIRST_TICK_LOOKBACK_SECONDS
        late: dict[str, tuple[float, list[str]]] = {}
        for asset in FRESHNESS_ASSETS:
            check_key = dg.AssetCheckKey(dg.AssetKey(asset), FRESHNESS_CHECK_NAME)
            # Newest first, with storage ids: the event log storage's check history (the instance
            # itself has no public reader of check evaluations, unlike fetch_run_status_changes).
            records = context.instance.event_log_storage.get_asset_check_execution_history(
                check_key, limit=EVENTS_PER_TICK
            )
            position = positions.get(check_key.to_user_string())
            for record in reversed(records):  # oldest first
                if position is not None and record.id <= position:
                    continue
                if record.status.value == "PLANNED" and _run_going(context.instance, record.run_id):
                    # Its run is still going: the row is updated in place when the check ends, so
                    # it is read again then. (A run that ended without the check leaves it PLANNED.)
                    break
                position = record.id
                if record.event is None or (
                    positions.get(check_key.to_user_string()) is None and record.create_timestamp < first_tick_after
                ):
                    continue
                evaluation = record.event.asset_check_evaluation
                if (
                    record.status.value != "FAILED"
                    or evaluation is None
                    or DEADLINE_METADATA not in evaluation.metadata
                ):
                    continue
                deadline = float(evaluation.metadata[DEADLINE_METADATA].value)
                late.setdefault(overdue_day(deadline), (deadline, []))[1].append(asset)
            if position is not None:
                positions[check_key.to_user_string()] = position
        found = 0
        for day, (deadline, assets) in sorted(late.items()):
            missing_now = [asset for asset in assets if not _materialized(context.instance, day, dg.AssetKey(asset))]
            if missing_now:
                why = why_not_ready(context.instance, day, users_api)
                status, reason = why.status, why.reason
            else:
                status, reason = "late", "materialized after its deadline"
            alert = FreshnessAlert(
                partition=day,
                status=status,
                reason=reason,
                deadline=_utc(deadline),
                assets=sorted(set(assets)),
            )
            if outbox.add(f"freshness/{day}", alert.as_payload()):
                context.log.error(alert.as_text())
                found += 1
        outbox.position = json.dumps(positions, sort_keys=True)
        return _deliver(context, outbox, alerts, found, "late day(s)")

    return freshness_alerts


def _run_going(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and not run.is_finished


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def run_failure_cause(entry: dg.EventLogEntry) -> str:
    """Why a run failed outside its steps (a bad setting checked at run start, a resource that could
    not be set up): the innermost cause of its RUN_FAILURE error, which names what was wrong, rather
    than Dagster's headline "An exception was thrown during execution"."""
    event = entry.dagster_event
    error = getattr(event.event_specific_data, "error", None) if event else None
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else entry.message


def run_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, alerts: AlertChannel) -> RunFailureAlert:
    """The alert of a failed run: job, partition, failed steps and their errors, a link to the run.

    A run stopped by its maximum run time is alerted as such: the error is the timeout in the
    operator's words (`daily_users_job run exceeded its maximum run time of 3600 s
    (USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=3600)`), the failed steps those it stopped (the
    interrupted step's own failure, if any, is the interruption, not the cause)."""
    if timeout := run_timeout(instance, run):
        stopped = [
            stats.step_key
            for stats in instance.get_run_step_stats(run.run_id)
            if stats.status is None or stats.status.value not in ("SUCCESS", "SKIPPED")
        ]
        return RunFailureAlert(
            job=run.job_name,
            run_id=run.run_id,
            partition=_alert_partition(run),
            failed_steps=stopped,
            error=timeout.message,
            run_url=alerts.run_url(run.run_id),
        )
    step_failures = [
        entry.dagster_event for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    ]
    errors = [
        event.event_specific_data.error.message.strip() for event in step_failures if event.event_specific_data.error
    ]
    run_failure = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return RunFailureAlert(
        job=run.job_name,
        run_id=run.run_id,
        partition=_alert_partition(run),
        failed_steps=[event.step_key for event in step_failures if event.step_key],
        error="\n".join(errors) or (run_failure_cause(run_failure[-1]) if run_failure else "") or "unknown error",
        run_url=alerts.run_url(run.run_id),
    )


def _alert_partition(run: dg.DagsterRun) -> str | None:
    """The run's day, or its range of days (first...last)."""
    return run.tags.get("dagster/partition") or (
        "...".join(
            filter(
                None,
                (
                    run.tags.get("dagster/asset_partition_range_start"),
                    run.tags.get("dagster/asset_partition_range_end"),
                ),
            )
        )
        or None
    )
