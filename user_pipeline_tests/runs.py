"""Materializing the users assets in process for one day, against a real API server: the one
helper the tests share instead of each spelling out the resources."""

import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from user_pipeline.users.assets import daily_users
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource

# The keys of the users day chain, in order; `daily_users` materializes any selection of them.
USERS_ASSETS = ("raw_users", "normalized_users", "users_table")


def users_resources(
    base_url: str,
    data_dir: Path,
    *,
    warehouse_url: str | None = None,
    lock_timeout_seconds: int = 30,
    max_row_drop_fraction: float = 0.2,
    days_ahead: int = 1,
    **api_settings,
) -> dict:
    """The resources of `daily_users`; the warehouse defaults to a SQLite file in `data_dir`."""
    return {
        "users_api": RandomUserApi(base_url=base_url, **api_settings),
        "files": PartitionFiles(data_dir=str(data_dir)),
        "warehouse": WarehouseResource(
            url=warehouse_url or f"sqlite:///{data_dir}/warehouse.sqlite", lock_timeout_seconds=lock_timeout_seconds
        ),
        "day_limits": DayLimits(max_row_drop_fraction=max_row_drop_fraction, days_ahead=days_ahead),
    }


def materialize_users(
    base_url: str,
    data_dir: Path,
    day: str,
    *,
    warehouse_url: str | None = None,
    lock_timeout_seconds: int = 30,
    instance: dg.DagsterInstance | None = None,
    assets=USERS_ASSETS,
    run_config: dict | None = None,
    **api_settings,
) -> dg.ExecuteInProcessResult:
    """`assets` (keys of the users day chain) for `day`; failures are returned, not raised."""
    return dg.materialize(
        [daily_users],
        selection=list(assets),
        partition_key=day,
        instance=instance,
        resources=users_resources(
            base_url, data_dir, warehouse_url=warehouse_url, lock_timeout_seconds=lock_timeout_seconds, **api_settings
        ),
        run_config=run_config,
        raise_on_error=False,
    )


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> list[dg.AssetMaterialization]:
    """The materializations of one asset recorded by the run, in order (one per day)."""
    return [
        event.event_specific_data.materialization
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key == dg.AssetKey(asset)
    ]


def materialize_command(day: str, assets: Sequence[str] = USERS_ASSETS, *, dagster: Sequence[str] = ()) -> list[str]:
    """The README's `dagster asset materialize` line for `day`, as an argv; `dagster` is the CLI to
    call (default: this interpreter's `python -m dagster`)."""
    return [
        *(dagster or (sys.executable, "-m", "dagster")),
        "asset",
        "materialize",
        "-m",
        "user_pipeline.definitions",
        "--select",
        ",".join(assets),
        "--partition",
        day,
    ]
