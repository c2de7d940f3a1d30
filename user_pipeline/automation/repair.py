"""Repair in one action: the failed or missing days of a date range, submitted as ONE Dagster
asset backfill that touches only what failed or is missing.

    python -m user_pipeline.automation.repair --from 2026-11-01 --to 2026-11-07 --dry-run
    python -m user_pipeline.automation.repair --from 2026-11-01 --to 2026-11-07 --url http://127.0.0.1:3000

It reads the partition statuses from the instance (DAGSTER_HOME) and submits the backfill
through the webserver's GraphQL API (`launchPartitionBackfill` with one partition list per
asset), so an asset whose day succeeded is never materialized again; the backfill daemon runs
it (the UI's *Backfills* tab shows it). Planned: each ingestion asset's days that failed or never
ran, and each downstream asset's days whose latest attempt failed. A downstream day that is merely
missing is left to its automation condition, which follows the repaired days once they land.
The dry run prints the plan and an estimate of its duration from the last successful runs.
"""

import argparse
import sys
from dataclasses import dataclass

import dagster as dg

from user_pipeline.graphql_triggers import DEFAULT_URL, DagsterGraphQL, TriggerError
from user_pipeline.partitions import InvalidPartitionKeyError, check_partition_keys, daily_partitions

REPAIRED_ASSETS = ("raw_users", "normalized_users", "users_table")
# Repaired only where their latest attempt failed: a missing day is their automation condition's.
DOWNSTREAM_ASSETS = ("user_registry", "daily_users_report", "users_parquet")
HISTORY_RUNS = 20


@dataclass(frozen=True)
class RepairPlan:
    days_by_asset: dict[str, list[str]]
    seconds_per_day: float | None

    @property
    def days(self) -> list[str]:
        return sorted({day for days in self.days_by_asset.values() for day in days})

    def describe(self, dry_run: bool = True) -> str:
        if not self.days:
            return "nothing to repair: every day of the range is ingested, and no downstream day failed"
        verb = "would re-run" if dry_run else "re-running"
        lines = [f"{asset}: {', '.join(days)}" for asset, days in self.days_by_asset.items() if days]
        estimate = (
            f"about {self.seconds_per_day * len(self.days):.0f}s of runs ({self.seconds_per_day:.1f}s a day "
            f"over the last successful runs)"
            if self.seconds_per_day
            else "unknown (no successful run yet)"
        )
        return "\n".join([f"{verb} {len(self.days)} day(s):", *lines, f"estimated time: {estimate}"])


def plan_repair(instance: dg.DagsterInstance, first_day: str, last_day: str) -> RepairPlan:
    """Per asset, the days in [first_day, last_day] to re-run: for the ingestion assets those whose
    latest attempt failed or never happened, for the downstream assets those whose latest attempt
    failed."""
    days = daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first_day, last_day))
    days_by_asset = {}
    for asset in (*REPAIRED_ASSETS, *DOWNSTREAM_ASSETS):
        statuses = instance.get_status_by_partition(dg.AssetKey(asset), days, daily_partitions) or {}
        if asset in REPAIRED_ASSETS:
            done = (dg.AssetPartitionStatus.MATERIALIZED, dg.AssetPartitionStatus.IN_PROGRESS)
            days_by_asset[asset] = [day for day in days if statuses.get(day) not in done]
        else:
            days_by_asset[asset] = [day for day in days if statuses.get(day) == dg.AssetPartitionStatus.FAILED]
    return RepairPlan(days_by_asset, _seconds_per_day(instance))


def _seconds_per_day(instance: dg.DagsterInstance) -> float | None:
    records = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS], job_name="daily_users_job"), limit=HISTORY_RUNS
    )
    durations = [record.end_time - record.start_time for record in records if record.start_time and record.end_time]
    return sum(durations) / len(durations) if durations else None


def launch_repair(plan: RepairPlan, client: DagsterGraphQL) -> str:
    """Launches one asset backfill of exactly the plan's (asset, day) pairs; returns its id."""
    selection = [
        {"assetKey": {"path": [asset]}, "partitions": {"ranges": [{"start": day, "end": day} for day in days]}}
        for asset, days in plan.days_by_asset.items()
        if days
    ]
    return client.launch_backfill_params(
        {"partitionsByAssets": selection, "tags": [{"key": "user_pipeline/repair", "value": "true"}]}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m user_pipeline.automation.repair", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--from", dest="first_day", required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="last_day", required=True, help="last day, YYYY-MM-DD (included)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time only")
    parser.add_argument(
        "--url", default=None, help=f"the Dagster webserver (default $DAGSTER_WEBSERVER_URL or {DEFAULT_URL})"
    )
    args = parser.parse_args(argv)
    try:
        check_partition_keys([args.first_day, args.last_day])
    except InvalidPartitionKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.first_day > args.last_day:
        print(f"error: --from {args.first_day} is after --to {args.last_day}", file=sys.stderr)
        return 2
    with dg.DagsterInstance.get() as instance:
        plan = plan_repair(instance, args.first_day, args.last_day)
    print(plan.describe(dry_run=args.dry_run))
    if args.dry_run or not plan.days:
        return 0
    try:
        backfill_id = launch_repair(plan, DagsterGraphQL(args.url))
    except TriggerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"launched backfill {backfill_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
