"""The daily assets materialized with Dagster's Python API, one day after another, in this one
process: `dg.materialize` per day, on the instance of DAGSTER_HOME and the resources of
user_pipeline.definitions (so the same settings as the CLI and the daemon).

    python -m benchmarks.dagster_api 2026-02-01 2026-02-02
"""

from __future__ import annotations

import sys

import dagster as dg

from user_pipeline.definitions import defs
from user_pipeline.users.assets import normalized_users, raw_users, users_table

RESOURCES = ("users_api", "files", "warehouse")


def main(argv: list[str] | None = None) -> int:
    days = list(sys.argv[1:] if argv is None else argv)
    if not days:
        print("usage: python -m benchmarks.dagster_api DAY [DAY ...]", file=sys.stderr)
        return 2
    resources = {name: defs.resources[name] for name in RESOURCES}
    with dg.DagsterInstance.get() as instance:
        for day in days:
            result = dg.materialize(
                [raw_users, normalized_users, users_table],
                partition_key=day,
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )
            if not result.success:
                print(f"materialize failed for {day}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
