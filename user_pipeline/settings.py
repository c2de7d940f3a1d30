"""Which environment variable sets which setting, and nothing else: each setting's default, bounds
and description are declared once, on its field (the resource classes, or for the users domain the
plain models they are built on, users/setting_models.py, which also binds their variables; and
`AutomationSettings` below for what the definitions are built from), with pydantic
`Field(default=..., ge=..., le=..., description=...)` or a check in the field's annotation;
everything here is derived from them.

When the environment is read (never at import):
- When the code location loads, that is when the `@dg.definitions` function in definitions.py is
  called: by the code server of `dagster dev`/`dg dev`/the daemon/the webserver, by
  `dagster asset materialize -m`, `dagster job launch -w`, `dg check defs`, and again in every
  run's own process. For each resource setting it only decides whether the variable is set: a set
  one binds the field to `dg.EnvVar` (Dagster reads its value when a run sets the resource up, and
  the UI shows the variable's name), an unset one leaves the field's declared default. A float
  field (a fraction) takes the variable's value there: Dagster binds variables to str, int and
  bool fields only.
  `USER_PIPELINE_DATA_DIR` and the definition-time settings (`AutomationSettings`: schedule, sensor
  intervals) are read for their values there; a bad definition-time value fails the load, naming
  the variable.
- When a run starts (`run_checks.executor_checking_settings`, before any resource is set up): every
  set variable is checked against its field's bounds, and a bad one fails the run at once with one
  line naming it, e.g. `USER_PIPELINE_USERS_PER_PARTITION=0: expected an integer from 1 to 1000000
  (sets users_api.users_per_partition)`.

`python -m user_pipeline.settings` prints the README's configuration table, generated from the
declarations (a test keeps the README equal to it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field

from user_pipeline.automation.resources import AlertChannel
from user_pipeline.executors import ExecutorSettings
from user_pipeline.run_limits import MaxRuntime, RunLimits, RunLimitSettings
from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.shared.setting_checks import Setting, checked_by
from user_pipeline.spark.resources import SparkSettings
from user_pipeline.users.setting_models import USERS_SETTINGS


def check_cron(cron: str) -> str:
    try:
        dg.ScheduleDefinition(name="check", cron_schedule=cron, job_name="check")
    except dg.DagsterInvalidDefinitionError:
        raise InvalidSettingError("cron", cron, "a cron expression of 5 fields, e.g. '0 1 * * *'") from None
    return cron


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSettingError("timezone", name, "an IANA timezone such as UTC or Europe/Paris") from None
    return name


class AutomationSettings(BaseModel):
    """The settings the definitions themselves are built from (when the schedule ticks, how often
    the sensors tick, the freshness deadline): unlike resource fields they are fixed when the code
    location loads (`automation_settings()`, called by definitions.py's `@dg.definitions` function)."""

    model_config = ConfigDict(frozen=True)

    schedule_cron: Annotated[str, checked_by(check_cron)] = Field(
        default="0 1 * * *", description="When `daily_users_schedule` ticks (partitions stay UTC days)."
    )
    schedule_timezone: Annotated[str, checked_by(check_timezone)] = Field(
        default="UTC", description="The timezone of the schedule's cron."
    )
    api_sensor_interval_seconds: int = Field(
        default=60, ge=1, le=86400, description="How often `users_api_sensor` ticks, in seconds."
    )
    automation_sensor_interval_seconds: int = Field(
        default=30,
        ge=5,
        le=86400,
        description=(
            "How often `automation_condition_sensor` evaluates the assets' automation conditions, in seconds"
            " (Dagster's default is 30)."
        ),
    )
    alert_sensor_interval_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="How often the alert sensor looks for failed runs and re-sends undelivered alerts, in seconds.",
    )
    # A day is due at this hour (UTC) the next day: a daily cron tick, hence 0..23.
    freshness_deadline_hour: int = Field(
        default=6, ge=0, le=23, description="A day is late at this hour (UTC) of the next day."
    )

    @property
    def freshness_deadline_cron(self) -> str:
        return f"0 {self.freshness_deadline_hour} * * *"


SETTINGS: tuple[Setting, ...] = (
    # The users domain's, declared with its models (readable without Dagster: benchmarks/bare.py).
    *USERS_SETTINGS,
    Setting("USER_PIPELINE_ALERT_WEBHOOK_URL", "alerts", AlertChannel, "webhook_url"),
    Setting("USER_PIPELINE_UI_URL", "alerts", AlertChannel, "ui_base_url"),
    Setting("USER_PIPELINE_ALERT_TIMEOUT_SECONDS", "alerts", AlertChannel, "timeout_seconds"),
    Setting("SPARK_MASTER", "spark", SparkSettings, "master"),
    Setting("SPARK_DRIVER_MEMORY", "spark", SparkSettings, "driver_memory"),
    Setting("SPARK_EXECUTOR_MEMORY", "spark", SparkSettings, "executor_memory"),
    Setting("SPARK_EXECUTOR_CORES", "spark", SparkSettings, "executor_cores"),
    Setting("SPARK_TOTAL_EXECUTOR_CORES", "spark", SparkSettings, "total_executor_cores"),
    Setting("SPARK_PACKAGES", "spark", SparkSettings, "packages"),
    Setting("SPARK_SHUFFLE_PARTITIONS", "spark", SparkSettings, "shuffle_partitions"),
    Setting("SPARK_MASTER_WEB_UI_URL", "spark", SparkSettings, "master_web_ui_url"),
    Setting("USER_PIPELINE_SCHEDULE_CRON", None, AutomationSettings, "schedule_cron"),
    Setting("USER_PIPELINE_SCHEDULE_TIMEZONE", None, AutomationSettings, "schedule_timezone"),
    Setting("USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS", None, AutomationSettings, "api_sensor_interval_seconds"),
    Setting(
        "USER_PIPELINE_AUTOMATION_SENSOR_INTERVAL_SECONDS",
        None,
        AutomationSettings,
        "automation_sensor_interval_seconds",
    ),
    Setting("USER_PIPELINE_ALERT_SENSOR_INTERVAL_SECONDS", None, AutomationSettings, "alert_sensor_interval_seconds"),
    Setting("USER_PIPELINE_FRESHNESS_DEADLINE_HOUR", None, AutomationSettings, "freshness_deadline_hour"),
    # The executor (user_pipeline/executors.py): chosen when the definitions load; the Celery
    # settings are read again by each worker (user_pipeline/celery_app.py).
    Setting("USER_PIPELINE_EXECUTOR", None, ExecutorSettings, "executor"),
    Setting("USER_PIPELINE_CELERY_BROKER_URL", None, ExecutorSettings, "broker_url"),
    Setting("USER_PIPELINE_CELERY_BACKEND_URL", None, ExecutorSettings, "backend_url"),
    Setting(
        "USER_PIPELINE_REDIS_PASSWORD",
        None,
        ExecutorSettings,
        "redis_password",
        default_text="none (required with celery)",
        shown=lambda text: "***",
    ),
    Setting("USER_PIPELINE_CELERY_VISIBILITY_TIMEOUT_SECONDS", None, ExecutorSettings, "visibility_timeout_seconds"),
    # The limits on runs (user_pipeline/run_limits.py): read when the definitions load (the jobs'
    # tags) and when a run starts (the tags of a run launched without them, the pool's limit).
    Setting("USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS", None, RunLimitSettings, "ingestion_max_runtime_seconds"),
    Setting("USER_PIPELINE_SPARK_MAX_RUNTIME_SECONDS", None, RunLimitSettings, "spark_max_runtime_seconds"),
    Setting("USER_PIPELINE_USERS_API_POOL_LIMIT", None, RunLimitSettings, "users_api_pool_limit"),
)


class InvalidSettingsError(ValueError):
    """One or more settings out of bounds; the message has one line per setting."""


def resource_fields(resource: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields of `resource` whose environment variable is set, each bound to it with
    `dg.EnvVar`; an unset variable leaves its field out, so the field's declared default applies."""
    environ = os.environ if environ is None else environ
    return {
        setting.field: bound(setting, environ)
        for setting in SETTINGS
        if setting.resource == resource and setting.env_var in environ
    }


def bound(setting: Setting, environ: Mapping[str, str]) -> Any:
    """The field's value in the definitions: `dg.EnvVar` naming the variable (an int field:
    `dg.EnvVar.int`). Dagster binds no variable to a float field: it gets the number the variable
    holds now, or its default if that is out of bounds (the definitions still load, and every
    run fails when it starts, naming the variable)."""
    if setting.is_float:
        return setting.info.default if setting.problem(environ) else setting.parse(environ[setting.env_var])
    return dg.EnvVar.int(setting.env_var) if setting.is_int else dg.EnvVar(setting.env_var)


def setting_value(env_var: str, environ: Mapping[str, str] | None = None) -> Any:
    """The value `env_var` sets now (its field's default when unset); raises InvalidSettingsError.
    For the few values the definitions need when they load (the data directory)."""
    environ = os.environ if environ is None else environ
    [setting] = [setting for setting in SETTINGS if setting.env_var == env_var]
    if problem := setting.problem(environ):
        raise InvalidSettingsError(problem)
    return setting.value(environ)


def automation_settings(environ: Mapping[str, str] | None = None) -> AutomationSettings:
    """The definition-time settings from `environ` (default: the process environment, read now);
    raises InvalidSettingsError with one line per bad variable, naming it and its bounds."""
    environ = os.environ if environ is None else environ
    mine = [setting for setting in SETTINGS if setting.model is AutomationSettings]
    problems = [problem for setting in mine if (problem := setting.problem(environ))]
    if problems:
        raise InvalidSettingsError("; ".join(problems))
    return AutomationSettings(
        **{setting.field: setting.parse(environ[setting.env_var]) for setting in mine if setting.env_var in environ}
    )


def run_limits(environ: Mapping[str, str] | None = None) -> RunLimits:
    """The limits on runs from `environ` (default: the process environment, read now), each with
    the variable that sets it; raises InvalidSettingsError with one line per bad variable."""
    environ = os.environ if environ is None else environ
    mine = {setting.field: setting for setting in SETTINGS if setting.model is RunLimitSettings}
    problems = [problem for setting in mine.values() if (problem := setting.problem(environ))]
    if problems:
        raise InvalidSettingsError("; ".join(problems))
    values = RunLimitSettings(
        **{
            field: setting.parse(environ[setting.env_var])
            for field, setting in mine.items()
            if setting.env_var in environ
        }
    )

    def max_runtime(field: str) -> MaxRuntime:
        return MaxRuntime(getattr(values, field), mine[field].env_var)

    return RunLimits(
        ingestion=max_runtime("ingestion_max_runtime_seconds"),
        spark=max_runtime("spark_max_runtime_seconds"),
        users_api_pool_limit=values.users_api_pool_limit,
        users_api_pool_setting=mine["users_api_pool_limit"].env_var,
    )


def settings_problems(environ: Mapping[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    return [problem for setting in SETTINGS if (problem := setting.problem(environ))]


def check_settings(environ: Mapping[str, str] | None = None) -> None:
    """Raises InvalidSettingsError naming every environment variable whose value is out of bounds.
    Reads the environment when called (when a run starts), never at import."""
    problems = settings_problems(environ)
    if problems:
        raise InvalidSettingsError("; ".join(problems))


def configuration_table() -> str:
    """The README's configuration table: one row per variable, from its field's declaration."""
    rows = ["| environment variable | default | sets | meaning |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        info = setting.info
        default = setting.default_text or ("" if info.is_required() else str(info.default))
        default = f"`{default}`" if default and not setting.default_text else (default or "none")
        bounds = "" if setting.expected().startswith("a valid") else f" Expected: {setting.expected()}."
        where = f"`{setting.target}`" if setting.resource else f"definitions: `{setting.field}`"
        rows.append(f"| `{setting.env_var}` | {default} | {where} | {info.description}{bounds} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(configuration_table())
