"""Spark ingestion: the normalized users of a day range into partitioned Parquet."""

import warnings

import dagster as dg

from user_pipeline.partitions import check_run_inputs, daily_partitions
from user_pipeline.shared.conditions import day_landed
from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.shared.queues import SPARK_QUEUE_TAGS
from user_pipeline.spark.resources import SparkSettings
from user_pipeline.spark.submit import submit_environment
from user_pipeline.users.resources import PartitionFiles

# What spark_jobs/ingest_users.py sends through Dagster Pipes (its PIPES_* names; the job is not
# imported here: that would load PySpark with the definitions).
INGESTION_ERROR = "ingestion_error"
MASTER_WEB_UI_URL = "spark_master_web_ui_url"

# Dagster 1.13's Pipes session calls its own preview and deprecated APIs (expected_writer_count,
# context.run_id) and warns about them in every Spark run: silence exactly what that module raises.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, module=r"dagster\._core\.pipes\.context")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"dagster\._core\.pipes\.context")


@dg.asset(
    partitions_def=daily_partitions,
    group_name="spark",
    kinds={"spark", "parquet"},
    deps=["normalized_users"],
    automation_condition=day_landed(),
    # A backfill of many days is one Spark application, not one JVM per day.
    backfill_policy=dg.BackfillPolicy.single_run(),
    # On the Celery executor, the workers of the `spark` queue start the Spark applications.
    op_tags=SPARK_QUEUE_TAGS,
)
def users_parquet(
    context: dg.AssetExecutionContext, files: PartitionFiles, spark: SparkSettings
) -> dg.MaterializeResult:
    """The normalized users as Parquet partitioned by partition_date, plus users per country and age band.

    Runs spark_jobs/ingest_users.py with spark-submit (`SPARK_MASTER`: local[*] or a standalone
    cluster) through Dagster Pipes: the job reports the metadata (rows per day, files, bytes,
    Spark application) and sends its log lines to the run's log. Dynamic partition overwrite
    replaces exactly the days of the run. A bad input (a day's CSV missing or corrupt) fails the
    step with the job's message, without retries.
    """
    check_run_inputs(context)
    days = context.partition_key_range
    try:
        command = spark.submit_command(
            input_dir=str(files.normalized_users_dir()),
            start_date=days.start,
            end_date=days.end,
            output_dir=str(files.spark_output_dir()),
        )
    except InvalidSettingError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    invocation = dg.PipesSubprocessClient(env=submit_environment()).run(
        context=context, command=command, extras={MASTER_WEB_UI_URL: spark.master_web_ui_url}
    )
    for message in invocation.get_custom_messages():
        if isinstance(message, dict) and INGESTION_ERROR in message:
            raise dg.Failure(description=message[INGESTION_ERROR], allow_retries=False)
    if not invocation.get_results(implicit_materializations=False):
        raise dg.Failure(
            description="spark_jobs/ingest_users.py ended without reporting through Dagster Pipes: "
            "can the job's Python (this interpreter, PYSPARK_DRIVER_PYTHON) import dagster_pipes?",
            allow_retries=False,
        )
    return invocation.get_materialize_result(implicit_materialization=False)
