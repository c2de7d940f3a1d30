"""Everything Dagster loads for the users pipeline, assembled by `defs`, a `@dg.definitions`
function: Dagster calls it when the code location loads (the code server of `dagster dev`/`dg dev`,
`dagster asset materialize -m`, `dagster job launch -w`, `dg check defs`, each run's process), never
at import, so importing this module reads no environment variable. Tests call `defs()`.

Each resource field is bound to its environment variable with `dg.EnvVar` when the variable is set,
and keeps its declared default otherwise (user_pipeline/settings.py says which variable sets which
field, and exactly when each is read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from user_pipeline.automation.freshness import build_freshness_checks, build_freshness_checks_sensor
from user_pipeline.automation.resources import AlertChannel
from user_pipeline.automation.schedules import build_daily_users_schedule
from user_pipeline.automation.sensors import (
    build_automation_sensor,
    build_freshness_alerts,
    build_run_failure_alerts,
    build_users_api_sensor,
)
from user_pipeline.executors import build_executor
from user_pipeline.jobs import build_jobs
from user_pipeline.partitions import daily_partitions
from user_pipeline.report import assets as report_assets
from user_pipeline.run_checks import executor_checking_settings
from user_pipeline.settings import automation_settings, resource_fields, run_limits, setting_value
from user_pipeline.spark import assets as spark_assets
from user_pipeline.spark.resources import SparkSettings
from user_pipeline.users import assets as users_assets
from user_pipeline.users.resources import (
    DayLimits,
    PartitionFiles,
    RandomUserApi,
    UserRegistrySettings,
    WarehouseResource,
)


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """USER_PIPELINE_DATA_DIR (default `data`) as an absolute path, read now: the warehouse's
    default path lies in it, and a run's process may start elsewhere."""
    return Path(setting_value("USER_PIPELINE_DATA_DIR", environ)).resolve()


def resources(environ: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources, each field bound to its environment variable when that is set in `environ`
    (default: the process environment, read now)."""
    environ = os.environ if environ is None else environ
    data = data_dir(environ)
    warehouse = WarehouseResource(
        **{"url": f"sqlite:///{data}/warehouse.sqlite", **resource_fields("warehouse", environ)}
    )
    return {
        # The circuit breaker keeps its state in the warehouse's database, which every node reaches.
        "users_api": RandomUserApi(**resource_fields("users_api", environ), circuit_store=warehouse),
        "files": PartitionFiles(data_dir=str(data)),
        "warehouse": warehouse,
        "registry_settings": UserRegistrySettings(
            **{"first_day": daily_partitions.get_first_partition_key(), **resource_fields("registry_settings", environ)}
        ),
        "day_limits": DayLimits(**resource_fields("day_limits", environ)),
        "spark": SparkSettings(**resource_fields("spark", environ)),
        "alerts": AlertChannel(**resource_fields("alerts", environ)),
    }


@dg.definitions
def defs() -> dg.Definitions:
    # The settings the schedule, sensors and freshness checks are built from, read now (as the
    # code location loads); a bad one fails the load with one line naming its variable.
    automation = automation_settings()
    # The ingestion's and Spark's maximum run times, as their jobs' run tags (user_pipeline/run_limits.py).
    jobs = build_jobs(run_limits())
    freshness_checks = build_freshness_checks(automation.freshness_deadline_cron)
    return dg.Definitions(
        assets=dg.load_assets_from_modules([users_assets, spark_assets, report_assets]),
        asset_checks=[*dg.load_asset_checks_from_modules([users_assets]), *freshness_checks],
        jobs=jobs.all,
        # The ingestion starts from users_api_sensor (or this schedule); everything after it from
        # the automation condition sensor, when the day it needs has landed.
        schedules=[
            build_daily_users_schedule(automation.schedule_cron, automation.schedule_timezone, jobs.daily_users)
        ],
        sensors=[
            build_users_api_sensor(automation.api_sensor_interval_seconds, jobs.daily_users),
            build_automation_sensor(automation.automation_sensor_interval_seconds),
            build_run_failure_alerts(automation.alert_sensor_interval_seconds),
            build_freshness_checks_sensor(freshness_checks),
            build_freshness_alerts(automation.alert_sensor_interval_seconds),
        ],
        # USER_PIPELINE_EXECUTOR: in_process (the default: one process per run, the steps being short
        # and sequential) or celery (steps on Celery workers over Redis, docs/celery.md).
        executor=executor_checking_settings(build_executor()),
        resources=resources(),
    )
