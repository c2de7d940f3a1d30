"""The pipeline's settings, each declared once: the resource field it sets, its environment
variable, its default and its bounds. `definitions.py` builds the resources from these
declarations, and every run checks them before any work (`check_settings`), so an error names
what the operator set (`USER_PIPELINE_USERS_PER_PARTITION=0: expected an integer from 1 to
1000000`), not the resource field alone.

The bounds are the plain modules' own validators (users/api_client.py, users/warehouse.py) where
they exist, so a bound is written in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from user_pipeline.users.api_client import (
    InvalidSettingError,
    validate_base_url,
    validate_nationalities,
    validate_page_size,
    validate_users_per_partition,
)
from user_pipeline.users.resources import validate_contract_violations, validate_max_rejected_fraction
from user_pipeline.users.warehouse import redact_url


def _expected(error: InvalidSettingError) -> str:
    return str(error).split(": expected ", 1)[-1]


def _int_range(low: int, high: int | None = None) -> Callable[[object], object]:
    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            raise InvalidSettingError("value", value, f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}")
        return value

    return check


def _fraction(value: object) -> object:
    if not isinstance(value, float) or not 0.0 <= value <= 1.0:
        raise InvalidSettingError("value", value, "a number from 0 to 1")
    return value


def _http_url(optional: bool) -> Callable[[object], object]:
    def check(value: object) -> object:
        if optional and value == "":
            return value
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidSettingError("value", value, "an http(s) URL" + (" or nothing" if optional else ""))
        return value

    return check


def _warehouse_url(value: object) -> object:
    if urlsplit(str(value)).scheme not in ("sqlite", "postgresql", "postgres"):
        raise InvalidSettingError("value", value, "a sqlite:///path or postgresql://user@host:port/database URL")
    return value


def _day(value: object) -> object:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InvalidSettingError("value", value, "a date YYYY-MM-DD") from None


@dataclass(frozen=True)
class Setting:
    """One setting: `env_var` sets `resource`.`field` (or, without a resource, a config default read
    at run time); `parse` turns the variable's text into the value, `check` raises
    InvalidSettingError when it is out of bounds."""

    env_var: str
    resource: str | None
    field: str
    default: object
    parse: type = str
    check: Callable[[object], object] | None = None
    display: Callable[[str], str] = lambda text: text

    def source(self, environ: Mapping[str, str]) -> object:
        """The resource field's value: a dg.EnvVar when the variable is set (the UI shows its name),
        the default otherwise."""
        if self.env_var not in environ:
            return self.default
        return dg.EnvVar.int(self.env_var) if self.parse is int else dg.EnvVar(self.env_var)

    def problem(self, environ: Mapping[str, str]) -> str | None:
        """None if the setting is valid, else one line naming the variable, the value and the bounds."""
        if self.env_var not in environ:
            return None
        text = environ[self.env_var]
        # What the operator typed: a number as is, a text quoted (and a URL's password redacted).
        shown = f"{self.env_var}={text}" if self.parse is not str else f"{self.env_var}={self.display(text)!r}"
        where = f"sets {self.resource}.{self.field}" if self.resource else f"sets the {self.field}"
        try:
            value = self.parse(text.strip()) if self.parse is not str else text
        except ValueError:
            return f"{shown}: expected {'an integer' if self.parse is int else 'a number'} ({where})"
        if self.check is not None:
            try:
                self.check(value)
            except InvalidSettingError as error:
                return f"{shown}: expected {_expected(error)} ({where})"
        return None


SETTINGS: tuple[Setting, ...] = (
    Setting("USER_PIPELINE_API_URL", "users_api", "base_url", "https://randomuser.me/api/", check=validate_base_url),
    Setting("USER_PIPELINE_USERS_PER_PARTITION", "users_api", "users_per_partition", 100, int, validate_users_per_partition),
    Setting("USER_PIPELINE_PAGE_SIZE", "users_api", "page_size", 5000, int, validate_page_size),
    Setting("USER_PIPELINE_NATIONALITIES", "users_api", "nationalities", "", check=validate_nationalities),
    Setting("USER_PIPELINE_API_TIMEOUT_SECONDS", "users_api", "timeout_seconds", 30, int, _int_range(1, 3600)),
    Setting("USER_PIPELINE_API_MAX_ATTEMPTS", "users_api", "max_attempts", 5, int, _int_range(1, 100)),
    Setting("USER_PIPELINE_CONTRACT_VIOLATIONS", "users_api", "contract_violations", "fail", check=validate_contract_violations),
    Setting("USER_PIPELINE_MAX_REJECTED_FRACTION", "users_api", "max_rejected_fraction", "0.01", check=validate_max_rejected_fraction),
    Setting("USER_PIPELINE_CIRCUIT_FAILURES", "users_api", "circuit_failure_threshold", 5, int, _int_range(1, 1000)),
    Setting("USER_PIPELINE_CIRCUIT_COOLDOWN_SECONDS", "users_api", "circuit_cooldown_seconds", 300, int, _int_range(0, 86400)),
    Setting("USER_PIPELINE_WAREHOUSE_URL", "warehouse", "url", None, check=_warehouse_url, display=redact_url),
    Setting("USER_PIPELINE_REGISTRY_START_DATE", "registry_settings", "first_day", None, check=_day),
    Setting("USER_PIPELINE_MAX_ROW_DROP_FRACTION", None, "normalized_users config max_row_drop_fraction", 0.2, float, _fraction),
    Setting("USER_PIPELINE_ALERT_WEBHOOK_URL", "alerts", "webhook_url", "", check=_http_url(optional=True)),
    Setting("USER_PIPELINE_UI_URL", "alerts", "ui_base_url", "http://127.0.0.1:3000", check=_http_url(optional=False)),
    Setting("USER_PIPELINE_ALERT_TIMEOUT_SECONDS", "alerts", "timeout_seconds", 10, int, _int_range(1, 300)),
)


def resource_fields(resource: str, environ: Mapping[str, str] | None = None, **defaults: object) -> dict[str, object]:
    """The fields of `resource` from its declared settings; `defaults` replace declared defaults
    that depend on other settings (the warehouse URL in the data directory)."""
    environ = os.environ if environ is None else environ
    fields = {}
    for setting in SETTINGS:
        if setting.resource == resource:
            value = setting.source(environ)
            fields[setting.field] = defaults[setting.field] if value is None else value
    return fields


class InvalidSettingsError(ValueError):
    """One or more settings out of bounds; the message has one line per setting."""


def settings_problems(environ: Mapping[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    return [problem for setting in SETTINGS if (problem := setting.problem(environ))]


def check_settings(environ: Mapping[str, str] | None = None) -> None:
    """Raises InvalidSettingsError naming every environment variable whose value is out of bounds.
    Reads the environment when called (in the run), never at import."""
    problems = settings_problems(environ)
    if problems:
        raise InvalidSettingsError("; ".join(problems))


class AutomationSettings(BaseModel):
    """The settings the definitions themselves are built from (when a schedule ticks, how often the
    sensors tick, the freshness deadline): unlike resource fields they are fixed when the code
    location loads, so they are read by `automation_settings()` in `definitions.py`, never at import.
    Each field's alias is its environment variable."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schedule_cron: str = Field("0 1 * * *", alias="USER_PIPELINE_SCHEDULE_CRON")
    schedule_timezone: str = Field("UTC", alias="USER_PIPELINE_SCHEDULE_TIMEZONE")
    api_sensor_interval_seconds: int = Field(60, ge=1, le=86400, alias="USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS")
    alert_sensor_interval_seconds: int = Field(30, ge=1, le=3600, alias="USER_PIPELINE_ALERT_SENSOR_INTERVAL_SECONDS")
    # A day is due at this hour (UTC) the next day: a daily cron tick, hence 0..23.
    freshness_deadline_hour: int = Field(6, ge=0, le=23, alias="USER_PIPELINE_FRESHNESS_DEADLINE_HOUR")

    @field_validator("schedule_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            dg.ScheduleDefinition(name="check", cron_schedule=value, job_name="check")
        except dg.DagsterInvalidDefinitionError:
            raise ValueError("a cron expression of 5 fields, e.g. '0 1 * * *'") from None
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("an IANA timezone such as UTC or Europe/Paris") from None
        return value

    @property
    def freshness_deadline_cron(self) -> str:
        return f"0 {self.freshness_deadline_hour} * * *"


def automation_settings(environ: Mapping[str, str] | None = None) -> AutomationSettings:
    """The definition-time settings from `environ` (default: the process environment, read now);
    raises InvalidSettingsError with one line per bad variable, naming it and its bounds."""
    environ = os.environ if environ is None else environ
    names = {field.alias for field in AutomationSettings.model_fields.values()}
    try:
        return AutomationSettings.model_validate({name: environ[name] for name in names if name in environ})
    except ValidationError as error:
        problems = []
        by_alias = {field.alias: field for field in AutomationSettings.model_fields.values()}
        for item in error.errors():
            name = str(item["loc"][0])
            if item["type"] == "value_error":
                expected = item["msg"].removeprefix("Value error, ")
            else:
                bounds = {type(rule).__name__: rule for rule in by_alias[name].metadata}
                expected = f"an integer from {bounds['Ge'].ge} to {bounds['Le'].le}"
            problems.append(f"{name}={environ.get(name)!r}: expected {expected}")
        raise InvalidSettingsError("; ".join(problems)) from None
