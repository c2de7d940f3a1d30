"""Everything Dagster loads for the users pipeline, wired from the environment: the resources'
fields come from the settings declared in `user_pipeline/settings.py` (one declaration per
setting: field, environment variable, default, bounds)."""

from __future__ import annotations

import os
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
from user_pipeline.jobs import (
    daily_users_job,
    daily_users_report_job,
    spark_ingestion_job,
    user_registry_job,
)
from user_pipeline.partitions import daily_partitions
from user_pipeline.report import assets as report_assets
from user_pipeline.run_checks import executor_checking_settings
from user_pipeline.settings import automation_settings, resource_fields
from user_pipeline.spark import assets as spark_assets
from user_pipeline.spark.resources import SparkSettings
from user_pipeline.users import assets as users_assets
from user_pipeline.users.resources import (
    PartitionFiles,
    RandomUserApi,
    UserRegistrySettings,
    WarehouseResource,
)


def env_or_default(name: str, default, parse=dg.EnvVar):
    """An EnvVar when `name` is set, so the UI shows the variable's name rather than its value."""
    return parse(name) if name in os.environ else default


DATA_DIR = str(Path(os.environ.get("USER_PIPELINE_DATA_DIR", "data")).resolve())
# The settings the schedule, sensors and checks are built from, read as the definitions load.
AUTOMATION = automation_settings()
FRESHNESS_CHECKS = build_freshness_checks(AUTOMATION.freshness_deadline_cron)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([users_assets, spark_assets, report_assets]),
    asset_checks=[*dg.load_asset_checks_from_modules([users_assets]), *FRESHNESS_CHECKS],
    jobs=[daily_users_job, user_registry_job, spark_ingestion_job, daily_users_report_job],
    # The ingestion starts from users_api_sensor (or this schedule); everything after it from
    # the automation condition sensor, when the day it needs has landed.
    schedules=[build_daily_users_schedule(AUTOMATION.schedule_cron, AUTOMATION.schedule_timezone)],
    sensors=[
        build_users_api_sensor(AUTOMATION.api_sensor_interval_seconds),
        build_automation_sensor(),
        build_run_failure_alerts(AUTOMATION.alert_sensor_interval_seconds),
        build_freshness_checks_sensor(FRESHNESS_CHECKS),
        build_freshness_alerts(AUTOMATION.alert_sensor_interval_seconds),
    ],
    # One process per run: the steps are short and sequential, so a process per step would
    # cost more in start-up than it buys in isolation.
    executor=executor_checking_settings(dg.in_process_executor),
    resources={
        "users_api": RandomUserApi(
            **resource_fields("users_api"), circuit_state_path=f"{DATA_DIR}/state/users_api_circuit.json"
        ),
        "files": PartitionFiles(data_dir=DATA_DIR),
        "warehouse": WarehouseResource(**resource_fields("warehouse", url=f"sqlite:///{DATA_DIR}/warehouse.sqlite")),
        "registry_settings": UserRegistrySettings(
            **resource_fields("registry_settings", first_day=daily_partitions.get_first_partition_key())
        ),
        "spark": SparkSettings(
            master=env_or_default("SPARK_MASTER", "local[*]"),
            driver_memory=env_or_default("SPARK_DRIVER_MEMORY", "1g"),
            executor_memory=env_or_default("SPARK_EXECUTOR_MEMORY", "1g"),
            total_executor_cores=env_or_default("SPARK_TOTAL_EXECUTOR_CORES", 1, dg.EnvVar.int),
            shuffle_partitions=env_or_default("SPARK_SHUFFLE_PARTITIONS", 4, dg.EnvVar.int),
            master_web_ui_url=env_or_default("SPARK_MASTER_WEB_UI_URL", ""),
        ),
        "alerts": AlertChannel(**resource_fields("alerts")),
    },
)
