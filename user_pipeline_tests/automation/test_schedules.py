"""The daily schedule and the definition-time settings it is built from: which day a tick
materializes, in whatever timezone it runs; bad settings named by their environment variable."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from user_pipeline.automation.schedules import build_daily_users_schedule
from user_pipeline.definitions import defs as load_definitions
from user_pipeline.jobs import build_jobs
from user_pipeline.settings import SETTINGS, AutomationSettings, InvalidSettingsError, automation_settings, run_limits

defs = load_definitions()


def tick(at: datetime, schedule: dg.ScheduleDefinition | None = None) -> dg.RunRequest:
    schedule = schedule or defs.resolve_schedule_def("daily_users_schedule")
    context = dg.build_schedule_context(scheduled_execution_time=at, repository_def=defs.get_repository_def())
    [request] = schedule.evaluate_tick(context).run_requests
    return request


def test_a_tick_after_midnight_utc_materializes_the_day_that_just_closed():
    request = tick(datetime(2026, 11, 25, 1, 0, tzinfo=UTC))
    assert (request.partition_key, request.run_key) == ("2026-11-24", "2026-11-24")


def test_a_tick_late_in_the_day_still_materializes_the_last_closed_utc_day():
    assert tick(datetime(2026, 11, 25, 23, 30, tzinfo=UTC)).partition_key == "2026-11-24"


def test_a_schedule_in_another_timezone_still_materializes_utc_days():
    schedule = build_daily_users_schedule("30 0 * * *", "Pacific/Auckland", build_jobs(run_limits({})).daily_users)
    # 00:30 in Auckland on the 25th is 11:30 UTC on the 24th: the last closed UTC day is the 23rd.
    at = datetime(2026, 11, 25, 0, 30, tzinfo=ZoneInfo("Pacific/Auckland"))
    assert tick(at, schedule).partition_key == "2026-11-23"
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 0 * * *", "Pacific/Auckland")


def test_only_the_ingestion_is_scheduled_and_it_starts_stopped():
    [schedule] = defs.get_repository_def().schedule_defs
    assert schedule.name == "daily_users_schedule" and schedule.job_name == "daily_users_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 1 * * *", "UTC")


def test_the_definition_time_settings_come_from_their_variables_when_asked():
    settings = automation_settings(
        {"USER_PIPELINE_SCHEDULE_CRON": "15 2 * * *", "USER_PIPELINE_FRESHNESS_DEADLINE_HOUR": "9"}
    )
    assert (settings.schedule_cron, settings.freshness_deadline_cron) == ("15 2 * * *", "0 9 * * *")
    assert automation_settings({}).api_sensor_interval_seconds == 60


def test_the_automation_sensor_ticks_at_its_setting(monkeypatch):
    assert load_definitions().get_sensor_def("automation_condition_sensor").minimum_interval_seconds == 30
    monkeypatch.setenv("USER_PIPELINE_AUTOMATION_SENSOR_INTERVAL_SECONDS", "7")
    assert load_definitions().get_sensor_def("automation_condition_sensor").minimum_interval_seconds == 7


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"USER_PIPELINE_SCHEDULE_CRON": "every day"},
            "USER_PIPELINE_SCHEDULE_CRON='every day': expected a cron expression of 5 fields, e.g. '0 1 * * *' "
            "(sets the definitions' schedule_cron)",
        ),
        (
            {"USER_PIPELINE_SCHEDULE_TIMEZONE": "Mars/Olympus"},
            "USER_PIPELINE_SCHEDULE_TIMEZONE='Mars/Olympus': expected an IANA timezone such as UTC or Europe/Paris "
            "(sets the definitions' schedule_timezone)",
        ),
        (
            {"USER_PIPELINE_FRESHNESS_DEADLINE_HOUR": "24"},
            "USER_PIPELINE_FRESHNESS_DEADLINE_HOUR=24: expected an integer from 0 to 23 "
            "(sets the definitions' freshness_deadline_hour)",
        ),
        (
            {"USER_PIPELINE_AUTOMATION_SENSOR_INTERVAL_SECONDS": "1"},
            "USER_PIPELINE_AUTOMATION_SENSOR_INTERVAL_SECONDS=1: expected an integer from 5 to 86400 "
            "(sets the definitions' automation_sensor_interval_seconds)",
        ),
        (
            {"USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS": "often"},
            "USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS=often: expected an integer "
            "(sets the definitions' api_sensor_interval_seconds)",
        ),
    ],
)
def test_a_bad_definition_time_setting_is_named_in_one_line(environ, message):
    with pytest.raises(InvalidSettingsError) as raised:
        automation_settings(environ)
    assert str(raised.value) == message


def test_every_definition_time_setting_is_in_the_readme_configuration_table():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    declared = [setting for setting in SETTINGS if setting.model is AutomationSettings]
    assert {setting.field for setting in declared} == set(AutomationSettings.model_fields)
    for setting in declared:
        assert f"| `{setting.env_var}` |" in table, setting.env_var


def test_a_bad_definition_time_setting_stops_the_code_location_from_loading_naming_it():
    loaded = subprocess.run(
        [sys.executable, "-c", "from user_pipeline.definitions import defs; defs()"],
        env={**os.environ, "USER_PIPELINE_FRESHNESS_DEADLINE_HOUR": "24"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode != 0
    assert (
        "USER_PIPELINE_FRESHNESS_DEADLINE_HOUR=24: expected an integer from 0 to 23" in loaded.stderr.splitlines()[-1]
    )
