"""The daily assets materialized with Dagster's Python API, one day after another, in this one
process: `dg.materialize` per day, on the instance of DAGSTER_HOME and the resources of
user_pipeline.definitions (so the same settings as the CLI and the daemon).

    python -m benchmarks.dagster_api 2026-02-01 2026-02-02
    python -m benchmarks.dagster_api --floor 2026-02-01   # benchmarks.noop_assets: the same graph doing nothing
    python -m benchmarks.dagster_api --range 2026-02-01 2026-02-31   # one run over the range (first and last day)
"""

from __future__ import annotations

import sys

import dagster as dg

RESOURCES = ("users_api", "files", "warehouse", "day_limits")
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def daily_assets(floor: bool) -> tuple[list[dg.AssetsDefinition], dict]:
    """The daily users multi-asset and its resources; with `floor`, its no-op copy and none."""
    if floor:
        from benchmarks.noop_assets import daily_users

        return [daily_users], {}
    from user_pipeline.definitions import resources
    from user_pipeline.users.assets import daily_users

    return [daily_users], {name: resource for name, resource in resources().items() if name in RESOURCES}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    floor, as_range = "--floor" in args, "--range" in args
    days = [arg for arg in args if arg not in ("--floor", "--range")]
    if not days or (as_range and len(days) != 2):
        print("usage: python -m benchmarks.dagster_api [--floor] DAY [DAY ...] | --range FIRST LAST", file=sys.stderr)
        return 2
    assets, resources = daily_assets(floor)
    # One run over the range (as `dg launch --partition-range` and the UI's single run make it), or a run per day.
    runs = (
        {f"{days[0]}...{days[1]}": {"tags": {RANGE_START: days[0], RANGE_END: days[1]}}}
        if as_range
        else {day: {"partition_key": day} for day in days}
    )
    with dg.DagsterInstance.get() as instance:
        for name, selection in runs.items():
            result = dg.materialize(assets, resources=resources, instance=instance, raise_on_error=False, **selection)
            if not result.success:
                print(f"materialize failed for {name}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
