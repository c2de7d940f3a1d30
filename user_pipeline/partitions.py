"""The daily partitions, defined once, and the check every entry point makes on a partition key."""

import re
import warnings
from collections.abc import Iterable

import dagster as dg

# A partition is one UTC day; its key (YYYY-MM-DD) is also the API seed, so a re-run
# of a day asks the API for the same users.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")

# BackfillPolicy is beta in Dagster 1.13: silence exactly that notice, so other warnings stay visible.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

# An asset backfill (UI, GraphQL, `dg launch --partition-range`) is one run over its whole range:
# one process start for many days, each day still written atomically. The CLI's
# --partition-range requires a single-run policy. `dagster job backfill` keeps one run per day.
daily_backfill_policy = dg.BackfillPolicy.single_run()

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class InvalidPartitionKeyError(ValueError):
    """A partition key that is not a day of `daily_partitions`; its message is one line naming
    the key and the valid range, for the operator."""


def valid_range() -> str:
    """The days that are partitions now: the first day to the last closed UTC day."""
    last = daily_partitions.get_last_partition_key()
    return f"{daily_partitions.get_first_partition_key()} to {last or '(none yet)'}"


def check_partition_key(key: object) -> str:
    """Returns `key` if it is a daily partition (YYYY-MM-DD, from the first day to the last closed
    UTC day); raises InvalidPartitionKeyError otherwise. The range is read from `daily_partitions`
    at call time, so a day becomes valid once it has closed."""
    if not isinstance(key, str) or not _DAY.fullmatch(key):
        raise InvalidPartitionKeyError(f"partition key {key!r} is not a day YYYY-MM-DD; valid days: {valid_range()}")
    if not daily_partitions.has_partition_key(key):
        raise InvalidPartitionKeyError(f"partition key {key!r} is not a daily partition; valid days: {valid_range()}")
    return key


def check_partition_keys(keys: Iterable[object]) -> list[str]:
    return [check_partition_key(key) for key in keys]


PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def check_run_inputs(context: dg.AssetExecutionContext) -> None:
    """Raises dg.Failure(allow_retries=False) naming the run's bad partition key and the valid days.

    Dagster itself turns a bad `dagster/partition` tag into an internal invariant error deep in
    the step, after its retries; every asset's body calls this first instead. (The settings are
    checked earlier, when the run starts: user_pipeline/run_checks.py.)
    """
    try:
        check_partition_keys(context.run.tags[tag] for tag in PARTITION_TAGS if tag in context.run.tags)
    except InvalidPartitionKeyError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
