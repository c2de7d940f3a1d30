"""Per-day freshness, evaluated by Dagster: time-partition freshness checks on the last asset of
each branch, the sensor that runs them, and the reading of their failures into alerts.

Why these and not `dg.FreshnessPolicy` (Dagster 1.13's successor, evaluated by the daemon's
FreshnessDaemon): a policy judges an asset by its latest materialization of ANY partition
(`dagster/_core/definitions/freshness_evaluator.py`), so yesterday's day missing is hidden by a
backfill of an older day, and an asset never materialized is UNKNOWN, not late; its state change
event carries no day and no reason. A time-partition freshness check asks whether the partition
due by the deadline exists, per day, and its failed evaluation is an event we can read with a
cursor (`freshness_alerts` in sensors.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from user_pipeline.partitions import daily_partitions
from user_pipeline.users.resources import UsersApi

# The last asset of each branch: the warehouse day, the registry, the report and the Parquet day.
FRESHNESS_ASSETS = ("users_table", "user_registry", "daily_users_report", "users_parquet")
FRESHNESS_SENSOR_NAME = "freshness_checks_sensor"
# Dagster's own name for the check and the metadata it writes (asset_check_factories/utils.py).
FRESHNESS_CHECK_NAME = "freshness_check"
DEADLINE_METADATA = "dagster/latest_cron_tick_timestamp"
IN_FLIGHT_STATUSES = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED"}


def build_freshness_checks(deadline_cron: str) -> Sequence[dg.AssetChecksDefinition]:
    """One freshness check per asset of FRESHNESS_ASSETS: it fails while the UTC day that closed
    before the latest tick of `deadline_cron` (e.g. `0 6 * * *`: day D is due at 06:00 UTC on D+1)
    has no materialization."""
    with warnings.catch_warnings():
        # Superseded by FreshnessPolicy, which is not per partition (see the module docstring).
        warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
        return dg.build_time_partition_freshness_checks(
            assets=[dg.AssetKey(asset) for asset in FRESHNESS_ASSETS], deadline_cron=deadline_cron, timezone="UTC"
        )


def build_freshness_checks_sensor(checks: Sequence[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    """Dagster's sensor that runs the freshness checks when one could have become overdue; stopped
    until switched on, like Dagster's default for it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks, name=FRESHNESS_SENSOR_NAME, default_status=dg.DefaultSensorStatus.STOPPED
        )


def overdue_day(deadline_timestamp: float) -> str:
    """The day a failed check expected: the last UTC day that had closed at the deadline tick."""
    with dg.partition_loading_context(effective_dt=datetime.fromtimestamp(deadline_timestamp, UTC)):
        return daily_partitions.get_last_partition_key()


@dataclass(frozen=True)
class LateDay:
    """Why a day is not there: `late` (its run is queued or running), `failed` (its latest run
    failed: the run id, the failed steps and their errors) or `missing` (no run materialized it)."""

    status: str
    reason: str


def why_not_ready(instance: dg.DagsterInstance, day: str, users_api: UsersApi | None) -> LateDay:
    """The day's state from its latest run (tag `dagster/partition`); for a missing day, whether
    the users API is down. `users_api` None skips the API probe."""
    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": day}), limit=1)
    if records:
        run = records[0].dagster_run
        if run.status.value in IN_FLIGHT_STATUSES:
            state = "still running" if run.status.value == "STARTED" else "queued, not started yet"
            return LateDay("late", f"run {run.run_id} is {state}")
        if run.status.value == "FAILURE":
            failures = [
                entry.dagster_event for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            ]
            steps = ", ".join(
                f"{event.step_key}: {event.event_specific_data.error.message.strip()}"
                for event in failures
                if event.event_specific_data.error
            )
            return LateDay("failed", f"run {run.run_id} failed ({steps or 'outside its steps'})")
        if run.status.value == "SUCCESS":
            return LateDay(
                "missing",
                f"its latest run {run.run_id} succeeded, but nothing has materialized it since "
                "(is the automation_condition_sensor running? did a blocking check fail upstream?)",
            )
    unavailable = users_api.unavailable_reason() if users_api is not None else None
    if unavailable:
        return LateDay("missing", f"nothing materialized it; the users API is unavailable: {unavailable}")
    return LateDay(
        "missing",
        "nothing materialized it: no run was launched for it (is users_api_sensor or daily_users_schedule running?)",
    )
