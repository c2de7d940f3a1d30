"""How a resource declares its settings: each field's default and bounds once, with pydantic
(`Field(default=..., ge=..., le=..., description=...)`, or a check in the field's annotation), on
a `SettingsResource` (or on a plain pydantic model it inherits them from, which scripts can read
without importing Dagster: users/setting_models.py). `user_pipeline/settings.py` binds each field to its environment variable and
derives defaults, bounds and the operator's error messages from these declarations.

Source of the mechanics: dagster/_config/pythonic_config (Dagster 1.13). A `dg.EnvVar` stands in
for its value until a run sets the resource up (it is the variable's name, and `dg.EnvVar.int` is
0, at definition time); Dagster then builds the resource again from the resolved values, and the
declared bounds apply to those. Dagster binds environment variables to str, int and bool fields
only (there is no float config source; nor, dagster-io/dagster#16232, an EnvVar default), so
user_pipeline/settings.py gives a float field its value when the definitions load.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import ValidatorFunctionWrapHandler, field_validator

# The checks a field's annotation uses, which need no Dagster (shared/setting_checks.py).
from user_pipeline.shared.setting_checks import check_http_url, check_one_of, checked_by

__all__ = ["SettingsResource", "check_http_url", "check_one_of", "checked_by"]


class SettingsResource(dg.ConfigurableResource):
    """A resource whose fields' declared bounds hold for every value it is built with, except a
    `dg.EnvVar` placeholder, checked once the run has resolved it."""

    @field_validator("*", mode="wrap")
    @classmethod
    def _bounds_apply_to_values_not_placeholders(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if hasattr(value, "env_var_name"):  # dg.EnvVar or dg.EnvVar.int, resolved when a run starts
            return value
        return handler(value)
