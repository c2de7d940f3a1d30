"""How a resource declares its settings: each field's default and bounds once, with pydantic
(`Field(default=..., ge=..., le=..., description=...)`, or a check in the field's annotation), on
a `SettingsResource`. `user_pipeline/settings.py` binds each field to its environment variable and
derives defaults, bounds and the operator's error messages from these declarations.

Source of the mechanics: dagster/_config/pythonic_config (Dagster 1.13). A `dg.EnvVar` stands in
for its value until a run sets the resource up (it is the variable's name, and `dg.EnvVar.int` is
0, at definition time); Dagster then builds the resource again from the resolved values, and the
declared bounds apply to those. Dagster binds environment variables to str, int and bool fields
only (there is no float config source; nor, dagster-io/dagster#16232, an EnvVar default), so
user_pipeline/settings.py gives a float field its value when the definitions load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import AfterValidator, ValidatorFunctionWrapHandler, field_validator

from user_pipeline.shared.errors import InvalidSettingError


class SettingsResource(dg.ConfigurableResource):
    """A resource whose fields' declared bounds hold for every value it is built with, except a
    `dg.EnvVar` placeholder, checked once the run has resolved it."""

    @field_validator("*", mode="wrap")
    @classmethod
    def _bounds_apply_to_values_not_placeholders(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if hasattr(value, "env_var_name"):  # dg.EnvVar or dg.EnvVar.int, resolved when a run starts
            return value
        return handler(value)


def checked_by(check: Callable[[Any], object]) -> AfterValidator:
    """A field validator running `check`, which raises InvalidSettingError when the value is out of
    bounds; the field keeps the value as given (a check never rewrites a setting)."""

    def validate(value: Any) -> Any:
        check(value)
        return value

    return AfterValidator(validate)


def check_one_of(*choices: str) -> Callable[[object], str]:
    """A check accepting exactly one of `choices` (a Literal field cannot be bound to an
    environment variable: Dagster makes it an enum config type)."""

    def check(value: object) -> str:
        if value not in choices:
            raise InvalidSettingError("value", value, " or ".join(repr(choice) for choice in choices))
        return value

    return check


def check_http_url(*, optional: bool = False) -> Callable[[str], str]:
    """A check accepting an http(s) URL with a host (or, if `optional`, nothing)."""

    def check(url: str) -> str:
        if optional and url == "":
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidSettingError("url", url, "an http(s) URL" + (" or nothing" if optional else ""))
        return url

    return check
