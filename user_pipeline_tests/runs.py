"""Materializing the users assets in process for one day, against a real API server: the one
helper the tests share instead of each spelling out the resources."""

from pathlib import Path

import dagster as dg

from user_pipeline.users.assets import normalized_users, raw_users, users_table
from user_pipeline.users.resources import PartitionFiles, RandomUserApi, WarehouseResource

USERS_ASSETS = (raw_users, normalized_users, users_table)


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
    """`assets` for `day`; the warehouse defaults to a SQLite file in `data_dir`; failures are returned, not raised."""
    return dg.materialize(
        list(assets),
        partition_key=day,
        instance=instance,
        resources={
            "users_api": RandomUserApi(base_url=base_url, **api_settings),
            "files": PartitionFiles(data_dir=str(data_dir)),
            "warehouse": WarehouseResource(
                url=warehouse_url or f"sqlite:///{data_dir}/warehouse.sqlite", lock_timeout_seconds=lock_timeout_seconds
            ),
        },
        run_config=run_config,
        raise_on_error=False,
    )
