"""Which executor runs the steps of a run, chosen by settings, not code: `build_executor()`.

    USER_PIPELINE_EXECUTOR=in_process   (default) every step in the run's own process
    USER_PIPELINE_EXECUTOR=celery       every step a Celery task, on the workers of its queue
                                        (user_pipeline/shared/queues.py), over Redis

The Celery settings (broker, result backend, Redis password, visibility timeout) are read when a
run starts (in the run worker) and when a worker starts (user_pipeline/celery_app.py): both must
see the same values. The password travels only in USER_PIPELINE_REDIS_PASSWORD and is put into
the URLs in memory; every URL shown (the executor's description in the UI, errors, Celery's
banner) has it redacted.

Sources: dagster-celery 0.29 (`dagster_celery.celery_executor`: broker, backend, include,
config_source, retries); Celery 5 configuration (task_acks_late, task_reject_on_worker_lost,
broker_transport_options) and kombu's Redis transport (visibility_timeout,
unacked_restore_interval, unacked_restore_throttle).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from user_pipeline.users.warehouse import redact_url

EXECUTOR_ENV = "USER_PIPELINE_EXECUTOR"
BROKER_URL_ENV = "USER_PIPELINE_CELERY_BROKER_URL"
BACKEND_URL_ENV = "USER_PIPELINE_CELERY_BACKEND_URL"
REDIS_PASSWORD_ENV = "USER_PIPELINE_REDIS_PASSWORD"
VISIBILITY_TIMEOUT_ENV = "USER_PIPELINE_CELERY_VISIBILITY_TIMEOUT_SECONDS"

# dagster_celery.defaults.broker_transport_options: connection retries on publish.
_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class InvalidExecutorSettingsError(ValueError):
    """An executor setting out of bounds; one line per setting, naming its environment variable."""


def _redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("a redis://host:port/db (or rediss://) URL")
    if parts.password is not None:
        raise ValueError(f"a URL without a password (put the password in {REDIS_PASSWORD_ENV})")
    return value


class ExecutorSettings(BaseModel):
    """The executor settings, each bound to its environment variable (the field's alias)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    executor: Literal["in_process", "celery"] = Field(
        "in_process",
        alias=EXECUTOR_ENV,
        description="`in_process`: every step in the run's own process; `celery`: each step a Celery task on "
        "the workers of its queue (docs/celery.md).",
    )
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0", alias=BROKER_URL_ENV, description="The Celery broker (Redis), without a password."
    )
    backend_url: str = Field(
        "redis://127.0.0.1:6379/1",
        alias=BACKEND_URL_ENV,
        description="The Celery result backend (Redis), without a password.",
    )
    redis_password: SecretStr = Field(
        SecretStr(""), alias=REDIS_PASSWORD_ENV, description="Redis's password (`requirepass`); never shown."
    )
    # A step not acknowledged this long after delivery is given to another worker: the time to
    # notice a lost worker. It must exceed the longest step, or a running step runs twice.
    visibility_timeout_seconds: int = Field(
        3600,
        ge=5,
        le=7 * 86400,
        alias=VISIBILITY_TIMEOUT_ENV,
        description="Seconds before a step a worker took but did not finish goes to another worker.",
    )

    @field_validator("broker_url", "backend_url")
    @classmethod
    def _check_urls(cls, value: str) -> str:
        return _redis_url(value)

    @model_validator(mode="after")
    def _locked_down(self) -> ExecutorSettings:
        if self.executor == "celery" and not self.redis_password.get_secret_value():
            raise ValueError(
                f"{REDIS_PASSWORD_ENV} is required with {EXECUTOR_ENV}=celery (Redis must ask for a password)"
            )
        return self

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ExecutorSettings:
        """The settings from `environ` (default: os.environ, read now, never at import).

        Raises InvalidExecutorSettingsError, one line per bad variable: its name, its value (URLs
        redacted, the password never shown) and what was expected."""
        environ = os.environ if environ is None else environ
        try:
            return cls.model_validate(
                {key: value for key, value in environ.items() if key.startswith("USER_PIPELINE_")}
            )
        except ValidationError as error:
            raise InvalidExecutorSettingsError("; ".join(_describe(item, environ) for item in error.errors())) from None

    def _with_password(self, url: str) -> str:
        parts = urlsplit(url)
        user = quote(parts.username or "", safe="")
        secret = quote(self.redis_password.get_secret_value(), safe="")
        netloc = f"{user}:{secret}@{parts.netloc.rsplit('@', 1)[-1]}"
        return urlunsplit(parts._replace(netloc=netloc))

    def shown(self) -> str:
        """One line for the UI and logs, password redacted."""
        if self.executor == "in_process":
            return "in_process executor: every step in the run's process"
        return (
            f"celery executor: broker {redact_url(self._with_password(self.broker_url))}, result backend "
            f"{redact_url(self._with_password(self.backend_url))}, visibility timeout {self.visibility_timeout_seconds} s"
        )

    def celery_executor_config(self) -> dict[str, Any]:
        """The config of `dagster_celery.celery_executor`, with the password in the URLs."""
        timeout = self.visibility_timeout_seconds
        return {
            "broker": self._with_password(self.broker_url),
            "backend": self._with_password(self.backend_url),
            "include": [],
            "config_source": {
                # A task is acknowledged when it ends, not when it is received, so a worker killed
                # mid-step (SIGKILL, node lost) leaves its step to another worker after the
                # visibility timeout; a killed pool process returns it at once.
                "task_acks_late": True,
                "task_reject_on_worker_lost": True,
                "worker_prefetch_multiplier": 1,
                "broker_connection_retry_on_startup": True,
                "broker_transport_options": {
                    **_PUBLISH_RETRY,
                    "visibility_timeout": timeout,
                    # kombu sweeps for abandoned steps every interval x throttle seconds (100 s by default).
                    "unacked_restore_interval": max(1, min(10, timeout // 4)),
                    "unacked_restore_throttle": 1,
                },
                "result_backend_transport_options": {"visibility_timeout": timeout},
            },
            "retries": {"enabled": {}},
        }


def _describe(item: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    name = str(item["loc"][0]) if item["loc"] else ""
    expected = str(item["msg"]).removeprefix("Value error, ").removeprefix("Input should be ")
    if name == REDIS_PASSWORD_ENV or not name:
        return expected
    value = environ.get(name)
    shown = "(unset)" if value is None else repr(redact_url(value) if "://" in value else value)
    return f"{name}={shown}: expected {expected}"


def celery_executor_from_settings(settings: ExecutorSettings) -> dg.ExecutorDefinition:
    """dagster-celery's executor, configured from the environment of the process that runs the run
    (read when the run starts, so the password is never part of a definition or a run's config)."""
    from dagster_celery import celery_executor

    def create(init_context: dg.InitExecutorContext) -> dg.Executor:
        config = ExecutorSettings.from_environ().celery_executor_config()
        return celery_executor.executor_creation_fn(
            dg.InitExecutorContext(
                job=init_context.job,
                executor_def=init_context.executor_def,
                executor_config=config,
                instance=init_context.instance,
            )
        )

    return dg.ExecutorDefinition(
        name="celery",
        requirements=dg.multiple_process_executor_requirements(),
        executor_creation_fn=create,
        description=f"Steps as Celery tasks ({settings.shown()}); queues by the op tag dagster-celery/queue.",
    )


def build_executor(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor USER_PIPELINE_EXECUTOR names: `dg.in_process_executor` (default) or the Celery
    executor. Raises InvalidExecutorSettingsError naming each bad variable."""
    settings = ExecutorSettings.from_environ(environ)
    if settings.executor == "in_process":
        return dg.in_process_executor
    return celery_executor_from_settings(settings)
