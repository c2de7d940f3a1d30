"""Limits on runs: how long a run may run (Airflow's `execution_timeout`), and how many steps may
call the users API at once (the `users_api` pool). Their values are settings
(`RunLimitSettings`, bound to environment variables in user_pipeline/settings.py).

Maximum run time. Dagster's run monitoring (the daemon, `run_monitoring` in the instance's
dagster.yaml) stops a run that has been running (since its RUN_START) longer than its
`dagster/max_runtime` tag, in seconds, or, for a run without that tag, the instance's
`run_monitoring.max_runtime_seconds`. Source: dagster 1.13.27,
dagster/_daemon/monitoring/run_monitoring.py (`check_run_timeout`): the daemon records
RUN_CANCELING "Canceling due to exceeding maximum runtime of N seconds.", asks the run launcher to
terminate the run (the run's process gets SIGINT and the step in progress is interrupted), then
records RUN_FAILURE "Exceeded maximum runtime of N seconds.". A run that materializes the
ingestion's assets gets `USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS`, one that materializes
`users_parquet` gets `USER_PIPELINE_SPARK_MAX_RUNTIME_SECONDS`, one that does both their sum (its
steps run one after the other): as job tags (`max_runtime_tags`, user_pipeline/jobs.py), and, for a
run that starts without the tag (the UI's *Materialize* on assets, an asset backfill, the
automation's runs), from the run itself as it starts (user_pipeline/run_checks.py).

The pool. Dagster 1.13's dagster.yaml has only `concurrency.pools.default_limit`, which limits
every pool; a limit for one pool lives in the instance's storage (`dagster instance concurrency
set users_api 2`, or `set_concurrency_slots` below). `apply_users_api_pool_limit` sets it: the
tooling that starts the stack does (`make ui`, `make pools`), and each run whose steps use the pool
does when the pool has no limit yet (a plain `dagster dev` on a fresh instance), never replacing one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field

from user_pipeline.shared.pools import USERS_API_POOL

INGESTION_ASSETS = frozenset(dg.AssetKey(name) for name in ("raw_users", "normalized_users", "users_table"))
SPARK_ASSETS = frozenset({dg.AssetKey("users_parquet")})
MAX_RUNTIME_TAG = dg.MAX_RUNTIME_SECONDS_TAG  # "dagster/max_runtime", read by the run monitor
# Which setting gave the run its maximum run time, with the value it had: the alert names it.
MAX_RUNTIME_SETTING_TAG = "user_pipeline/max_runtime_setting"
INSTANCE_MAX_RUNTIME = "the instance's run_monitoring.max_runtime_seconds"
# Both of the run monitor's messages (RUN_CANCELING, RUN_FAILURE) say it so.
_MONITOR_MESSAGE = re.compile(r"maximum runtime of (\d+) seconds")
_SETTING_VALUE = re.compile(r"=(\d+)")
_STOPPING = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)


class RunLimitSettings(BaseModel):
    """The limits' settings. Defaults: a healthy day's ingestion takes seconds, and the worst day
    its retries allow (5 attempts of 30 s per request, with backoff, and 3 step retries) about 20
    minutes, so 1 h stops only a run that hangs; a Spark run covers a range of days in one
    application and may wait for a cluster's executors, so 2 h. Two steps calling the users API at
    once, across runs, is what the public API tolerates without rate-limiting a day's fetch."""

    model_config = ConfigDict(frozen=True)

    ingestion_max_runtime_seconds: int = Field(
        default=3600,
        ge=10,
        le=604800,
        description="Maximum run time of a run that ingests days (`raw_users`, `normalized_users`, `users_table`), "
        "in seconds: the daemon's run monitoring then stops it and the run fails (tag `dagster/max_runtime`).",
    )
    spark_max_runtime_seconds: int = Field(
        default=7200,
        ge=10,
        le=604800,
        description="Maximum run time of a run that materializes `users_parquet` (Spark), in seconds; a run with "
        "both gets the sum.",
    )
    users_api_pool_limit: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Steps calling the users API at once across all runs (the `users_api` pool's limit; other pools "
        "are not limited); applied by `make ui` and `make pools`, and by a run when the pool has no limit yet.",
    )


@dataclass(frozen=True)
class MaxRuntime:
    seconds: int
    setting: str  # the environment variable that sets it

    @property
    def shown(self) -> str:
        return f"{self.setting}={self.seconds}"


@dataclass(frozen=True)
class RunLimits:
    """The limits in force, each with the environment variable that sets it (for the operator's messages)."""

    ingestion: MaxRuntime
    spark: MaxRuntime
    users_api_pool_limit: int
    users_api_pool_setting: str

    def max_runtimes(self, asset_keys: Iterable[dg.AssetKey]) -> list[MaxRuntime]:
        """The maximum run times that apply to a run materializing `asset_keys`."""
        keys = set(asset_keys)
        return [
            limit for assets, limit in ((INGESTION_ASSETS, self.ingestion), (SPARK_ASSETS, self.spark)) if keys & assets
        ]


def max_runtime_tags(asset_keys: Iterable[dg.AssetKey], limits: RunLimits) -> dict[str, str]:
    """The run tags giving a run that materializes `asset_keys` its maximum run time: `dagster/max_runtime`
    (seconds) and `user_pipeline/max_runtime_setting` (the setting and its value); {} for a run of neither
    the ingestion nor Spark (the instance's `run_monitoring.max_runtime_seconds` applies to it)."""
    parts = limits.max_runtimes(asset_keys)
    if not parts:
        return {}
    return {
        MAX_RUNTIME_TAG: str(sum(part.seconds for part in parts)),
        MAX_RUNTIME_SETTING_TAG: " + ".join(part.shown for part in parts),
    }


def max_runtime_source(tags: Mapping[str, str], seconds: int) -> str:
    """Where a run's maximum run time of `seconds` came from, in the operator's words: the setting(s)
    named in its tags if they add up to it, the run's own tag if it was given another value at launch,
    or the instance's default for a run without the tag."""
    if MAX_RUNTIME_TAG not in tags:
        return INSTANCE_MAX_RUNTIME
    setting = tags.get(MAX_RUNTIME_SETTING_TAG, "")
    if setting and sum(int(value) for value in _SETTING_VALUE.findall(setting)) == seconds:
        return setting
    return f"the run's {MAX_RUNTIME_TAG} tag"


@dataclass(frozen=True)
class RunTimeout:
    """A run stopped by the run monitor for passing its maximum run time."""

    job: str
    seconds: int
    source: str

    @property
    def message(self) -> str:
        return f"{self.job} run exceeded its maximum run time of {self.seconds} s ({self.source})"


def run_timeout(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunTimeout | None:
    """The maximum run time that stopped `run`, from the run monitor's RUN_CANCELING or RUN_FAILURE
    event; None if no maximum run time stopped it."""
    entries = instance.all_logs(
        run.run_id, of_type={dg.DagsterEventType.RUN_CANCELING, dg.DagsterEventType.RUN_FAILURE}
    )
    for entry in entries:
        text = (entry.dagster_event.message if entry.dagster_event else None) or entry.message or ""
        if match := _MONITOR_MESSAGE.search(text):
            seconds = int(match[1])
            return RunTimeout(run.job_name, seconds, max_runtime_source(run.tags, seconds))
    return None


def run_is_stopping(instance: dg.DagsterInstance, run_id: str) -> bool:
    """True once the run was asked to stop (terminated, or past its maximum run time) or marked failed."""
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status in _STOPPING


def tag_max_runtime(
    instance: dg.DagsterInstance, run: dg.DagsterRun, asset_keys: Iterable[dg.AssetKey], limits: RunLimits
) -> str:
    """Gives a run that has no maximum run time of its own the one its assets call for (the run
    monitor reads the run's tags at each poll); returns the line to log saying which applies."""
    if MAX_RUNTIME_TAG not in run.tags:
        tags = max_runtime_tags(asset_keys, limits)
        if not tags:
            return f"Maximum run time: {INSTANCE_MAX_RUNTIME} (this run materializes neither the ingestion nor Spark)."
        instance.add_run_tags(run.run_id, tags)
        run = run.with_tags({**run.tags, **tags})
    given = run.tags[MAX_RUNTIME_TAG]
    try:
        seconds = int(float(given))
    except ValueError:
        # The run monitor logs it and applies no maximum at all (run_monitoring.py, check_run_timeout).
        return f"Maximum run time: none: the run's {MAX_RUNTIME_TAG} tag {given!r} is not a number of seconds."
    return (
        f"Maximum run time: {seconds} s ({max_runtime_source(run.tags, seconds)}); the daemon's run monitoring "
        "stops the run after that."
    )


def users_api_pool_limit(instance: dg.DagsterInstance) -> int | None:
    """The `users_api` pool's own limit in the instance; None if it has none (a limit Dagster filled
    in from `concurrency.pools.default_limit` counts as none: Dagster drops it once that is gone)."""
    for pool in instance.event_log_storage.get_pool_limits():
        if pool.name == USERS_API_POOL and not pool.from_default:
            return pool.limit
    return None


def apply_users_api_pool_limit(instance: dg.DagsterInstance, limits: RunLimits, *, replace: bool) -> str | None:
    """Sets the `users_api` pool's limit to the setting's value; with `replace=False` only when the
    pool has no limit (an operator's `dagster instance concurrency set` stays). Returns what it did
    in one line, or None when it left the limit as it was."""
    current = users_api_pool_limit(instance)
    if current == limits.users_api_pool_limit or (current is not None and not replace):
        return None
    try:
        instance.event_log_storage.set_concurrency_slots(USERS_API_POOL, limits.users_api_pool_limit)
    except Exception:
        # Runs starting together on a pool without a limit all set it: on SQLite, Dagster's
        # select-for-update does not lock, and the second insert of the pool's row breaks its
        # unique key. The limit another run set is the one wanted (the same setting).
        if replace or users_api_pool_limit(instance) is None:
            raise
        return None
    before = "had no limit" if current is None else f"was limited to {current}"
    return (
        f"Pool {USERS_API_POOL} {before}: now at most {limits.users_api_pool_limit} step(s) at once "
        f"({limits.users_api_pool_setting})."
    )
