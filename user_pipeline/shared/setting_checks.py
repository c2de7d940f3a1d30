"""Checks for a setting's field annotation, and the one declaration of a setting's environment
variable (`Setting`): plain pydantic, no Dagster, so that a script can read settings without
importing it (benchmarks/bare.py, through users/setting_models.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import annotated_types
from pydantic import AfterValidator, BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from user_pipeline.shared.errors import InvalidSettingError


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


@dataclass(frozen=True)
class Setting:
    """`env_var` sets the field `field` of `model`, the class of the resource `resource` (or the
    plain model its fields are declared on; None: a definition-time setting). `default_text`
    stands for a default the definitions derive when they load (the warehouse URL in the data
    directory); `shown` is how the operator's value appears in messages (a URL's password redacted)."""

    env_var: str
    resource: str | None
    model: type[BaseModel]
    field: str
    default_text: str | None = None
    shown: Callable[[str], str] = lambda text: text

    @property
    def info(self) -> FieldInfo:
        return self.model.model_fields[self.field]

    @property
    def is_int(self) -> bool:
        return self.info.annotation is int

    @property
    def is_float(self) -> bool:
        return self.info.annotation is float

    @property
    def target(self) -> str:
        return f"{self.resource}.{self.field}" if self.resource else f"the definitions' {self.field}"

    @property
    def is_number(self) -> bool:
        return self.is_int or self.is_float

    def parse(self, text: str) -> Any:
        """The value the variable's text sets, checked against the field's declaration; raises
        InvalidSettingError whose `expected` is the bounds in words."""
        value: Any = text
        if self.is_number:
            try:
                value = int(text.strip()) if self.is_int else float(text.strip())
            except ValueError:
                raise InvalidSettingError(self.field, text, "an integer" if self.is_int else "a number") from None
        try:
            return _adapter(self.model, self.field).validate_python(value)
        except ValidationError as error:
            raise InvalidSettingError(self.field, text, self.expected(error)) from None

    def expected(self, error: ValidationError | None = None) -> str:
        """The field's bounds in words: from its `ge`/`le`, or what its check says it expects."""
        for item in error.errors() if error else ():
            cause = (item.get("ctx") or {}).get("error")
            if isinstance(cause, InvalidSettingError):
                return cause.expected
        low = next((rule.ge for rule in self.info.metadata if isinstance(rule, annotated_types.Ge)), None)
        high = next((rule.le for rule in self.info.metadata if isinstance(rule, annotated_types.Le)), None)
        kind = "an integer" if self.is_int else "a number"
        if low is not None and high is not None:
            return f"{kind} from {_number(low)} to {_number(high)}"
        if low is not None:
            return f"{kind} of at least {_number(low)}"
        return error.errors()[0]["msg"].removeprefix("Input should be ") if error else "a valid value"

    def problem(self, environ: Mapping[str, str]) -> str | None:
        """None if the variable is unset or valid, else one line naming it, the value and the bounds."""
        if self.env_var not in environ:
            return None
        text = environ[self.env_var]
        try:
            self.parse(text)
        except InvalidSettingError as error:
            # What the operator typed: a number as is, a text quoted (a URL's password redacted).
            shown = f"{self.env_var}={text}" if self.is_number else f"{self.env_var}={self.shown(text)!r}"
            return f"{shown}: expected {error.expected} (sets {self.target})"
        return None

    def value(self, environ: Mapping[str, str]) -> Any:
        """The value the variable sets (its field's default when unset; None when the field has
        none); raises InvalidSettingError when it is out of bounds (`problem` says it in words)."""
        if self.env_var not in environ:
            return None if self.info.is_required() else self.info.default
        return self.parse(environ[self.env_var])


def _number(bound: float) -> str:
    """A bound as the operator writes it: 1000000, 0, 1, 0.5."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


_ADAPTERS: dict[tuple[type, str], TypeAdapter] = {}


def _adapter(model: type[BaseModel], field: str) -> TypeAdapter:
    """Validates one field of `model` alone, by its declaration (type, bounds, checks)."""
    key = (model, field)
    if key not in _ADAPTERS:
        info = model.model_fields[field]
        _ADAPTERS[key] = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)
    return _ADAPTERS[key]
