"""The users domain's settings, each declared once, with its default, bounds and description, on
plain pydantic models that the resources are built on (resources.py: `RandomUserApi` is a
`RandomUserApiFields`, and so on), and bound to their environment variables (`USERS_SETTINGS`,
part of user_pipeline/settings.py's `SETTINGS`).

No Dagster here: a script that runs the per-day functions without an orchestrator
(benchmarks/bare.py) reads the same settings through `users_setting` without importing it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.shared.setting_checks import Setting, check_one_of, checked_by
from user_pipeline.users.api_client import (
    MAX_PAGE_SIZE,
    MAX_USERS_PER_PARTITION,
    validate_base_url,
    validate_nationalities,
)
from user_pipeline.users.warehouse import redact_url

CONTRACT_VIOLATION_MODES = ("fail", "quarantine")
WAREHOUSE_SCHEMES = ("sqlite", "postgresql", "postgres")
# Worker processes staging days ahead (users/days_ahead.py): more than the machine's cores only
# makes them take turns.
MAX_DAYS_AHEAD = 8


def validate_contract_violations(mode: object) -> str:
    """What a contract violation does: 'fail' the day, or 'quarantine' the user."""
    return check_one_of(*CONTRACT_VIOLATION_MODES)(mode)


def check_warehouse_url(url: str) -> str:
    """sqlite:///path or postgresql://user@host:port/database; the message never shows a password."""
    if urlsplit(url).scheme not in WAREHOUSE_SCHEMES:
        raise InvalidSettingError("url", "<not shown>", "a sqlite:///path or postgresql://user@host:port/database URL")
    return url


def check_day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except (TypeError, ValueError):
        raise InvalidSettingError("day", text, "a date YYYY-MM-DD") from None


class UsersApiFields(BaseModel):
    """Settings of any source of one day's users (resources.UsersApi)."""

    users_per_partition: int = Field(
        default=100,
        ge=1,
        le=MAX_USERS_PER_PARTITION,
        description="Users fetched per day (more than a page means several pages).",
    )
    # Not a Literal: Dagster makes that an enum config type, which no environment variable can set.
    contract_violations: Annotated[str, checked_by(validate_contract_violations)] = Field(
        default="fail",
        description="`fail`: a user breaking the contract fails the day; `quarantine`: such users are left out "
        "and written to `data/rejects/`.",
    )
    max_rejected_fraction: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="With quarantine, the largest share of a day's users that may be left out; more fails "
        "`rejected_share_within_limit`.",
    )


class RandomUserApiFields(UsersApiFields):
    """Settings of the Random User Generator HTTP API client (resources.RandomUserApi)."""

    base_url: Annotated[str, checked_by(validate_base_url)] = Field(
        default="https://randomuser.me/api/",
        description="Users API base URL (`make demo`/`make ui` point it at the bundled server).",
    )
    page_size: int = Field(
        default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Users per API request (the API's limit is 5000)."
    )
    nationalities: Annotated[str, checked_by(validate_nationalities)] = Field(
        default="", description="Comma list, e.g. `us,gb,fr`; empty: all."
    )
    timeout_seconds: int = Field(default=30, ge=1, le=3600, description="Seconds per API request.")
    max_attempts: int = Field(
        default=5, ge=1, le=100, description="Attempts per request on 429, 5xx, timeouts, refused connections."
    )
    backoff_seconds: float = Field(
        default=1.0, ge=0.0, le=3600.0, description="First retry's backoff ceiling (full jitter, doubling)."
    )
    max_backoff_seconds: float = Field(default=60.0, ge=0.0, le=3600.0, description="Longest wait between attempts.")
    circuit_failure_threshold: int = Field(
        default=5, ge=1, le=1000, description="Transient failures in a row that open the circuit."
    )
    circuit_cooldown_seconds: int = Field(
        default=300, ge=0, le=86400, description="Seconds the open circuit waits before a trial call."
    )


class PartitionFilesFields(BaseModel):
    """Settings of the partition files' folder (resources.PartitionFiles)."""

    data_dir: str = Field(
        default="data",
        min_length=1,
        description="Everything passed between steps: partition files, staging, reports, Parquet "
        "(one shared mount for every node).",
    )


class WarehouseFields(BaseModel):
    """Settings of the SQL warehouse (resources.WarehouseResource)."""

    # No default here: the definitions derive it from the data directory.
    url: Annotated[str, checked_by(check_warehouse_url)] = Field(
        description="Or `postgresql://user@host:5432/database` (several nodes); also keeps the circuit breaker's "
        "state. A password put in the URL is redacted wherever the URL is shown (keep it in PGPASSWORD or "
        "`~/.pgpass`)."
    )
    lock_timeout_seconds: int = Field(default=30, ge=1, le=3600, description="Seconds to wait for the table's lock.")


class UserRegistryFields(BaseModel):
    """Settings of the user registry (resources.UserRegistrySettings)."""

    # No default here: the definitions give the partitions' first day.
    first_day: Annotated[str, checked_by(check_day)] = Field(
        description="The registry's first day, where it starts empty."
    )


class DayLimitsFields(BaseModel):
    """Limits a day's new data must keep to, and how far ahead a range run stages days (resources.DayLimits)."""

    max_row_drop_fraction: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="A re-run that would shrink a day by more than this fraction of its rows keeps the previous day "
        "instead.",
    )
    days_ahead: int = Field(
        default=1,
        ge=0,
        le=MAX_DAYS_AHEAD,
        description="A range run fetches and normalizes later days in this many worker processes (up to two days "
        "each) while it loads and commits a day (still in date order, each whole or not at all), and a day no worker "
        "holds (a one-day run's) is fetched by a worker while the run's process normalizes it; 0: one day after "
        "another in the run's process.",
    )


USERS_SETTINGS: tuple[Setting, ...] = (
    Setting("USER_PIPELINE_API_URL", "users_api", RandomUserApiFields, "base_url"),
    Setting("USER_PIPELINE_USERS_PER_PARTITION", "users_api", RandomUserApiFields, "users_per_partition"),
    Setting("USER_PIPELINE_PAGE_SIZE", "users_api", RandomUserApiFields, "page_size"),
    Setting("USER_PIPELINE_NATIONALITIES", "users_api", RandomUserApiFields, "nationalities"),
    Setting("USER_PIPELINE_API_TIMEOUT_SECONDS", "users_api", RandomUserApiFields, "timeout_seconds"),
    Setting("USER_PIPELINE_API_MAX_ATTEMPTS", "users_api", RandomUserApiFields, "max_attempts"),
    Setting("USER_PIPELINE_CIRCUIT_FAILURES", "users_api", RandomUserApiFields, "circuit_failure_threshold"),
    Setting("USER_PIPELINE_CIRCUIT_COOLDOWN_SECONDS", "users_api", RandomUserApiFields, "circuit_cooldown_seconds"),
    Setting("USER_PIPELINE_CONTRACT_VIOLATIONS", "users_api", RandomUserApiFields, "contract_violations"),
    Setting("USER_PIPELINE_MAX_REJECTED_FRACTION", "users_api", RandomUserApiFields, "max_rejected_fraction"),
    Setting("USER_PIPELINE_DATA_DIR", "files", PartitionFilesFields, "data_dir"),
    Setting(
        "USER_PIPELINE_WAREHOUSE_URL",
        "warehouse",
        WarehouseFields,
        "url",
        default_text="sqlite:///<data dir>/warehouse.sqlite",
        shown=redact_url,
    ),
    Setting("USER_PIPELINE_MAX_ROW_DROP_FRACTION", "day_limits", DayLimitsFields, "max_row_drop_fraction"),
    Setting("USER_PIPELINE_DAYS_AHEAD", "day_limits", DayLimitsFields, "days_ahead"),
    Setting(
        "USER_PIPELINE_REGISTRY_START_DATE",
        "registry_settings",
        UserRegistryFields,
        "first_day",
        default_text="the first partition",
    ),
)


def users_setting(env_var: str) -> Setting:
    """The declaration of `env_var`, one of USERS_SETTINGS (`problem` and `value` read it from an environment)."""
    [setting] = [setting for setting in USERS_SETTINGS if setting.env_var == env_var]
    return setting
