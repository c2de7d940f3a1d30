"""The daily schedule: which day a tick materializes, in whatever timezone it runs."""

from datetime import UTC, datetime

import dagster as dg

from user_pipeline.automation.schedules import daily_users_schedule, user_registry_schedule
from user_pipeline.definitions import defs as load_definitions


def tick(at: datetime) -> dg.RunRequest:
    context = dg.build_schedule_context(scheduled_execution_time=at, repository_def=load_definitions().get_repository_def())
    [request] = daily_users_schedule.evaluate_tick(context).run_requests
    return request


def test_a_tick_after_midnight_utc_materializes_the_day_that_just_closed():
    request = tick(datetime(2026, 11, 25, 1, 0, tzinfo=UTC))
    assert (request.partition_key, request.run_key) == ("2026-11-24", "2026-11-24")


def test_a_tick_late_in_the_day_still_materializes_the_last_closed_utc_day():
    assert tick(datetime(2026, 11, 25, 23, 30, tzinfo=UTC)).partition_key == "2026-11-24"


def test_the_schedules_start_stopped_the_registry_an_hour_after_the_ingestion():
    assert daily_users_schedule.default_status == user_registry_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert (daily_users_schedule.cron_schedule, daily_users_schedule.execution_timezone) == ("0 1 * * *", "UTC")
    assert (user_registry_schedule.cron_schedule, user_registry_schedule.job_name) == ("0 2 * * *", "user_registry_job")
