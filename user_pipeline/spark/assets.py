"""Spark ingestion: the normalized users of a day range into partitioned Parquet."""

import dagster as dg

from user_pipeline.partitions import check_run_inputs, daily_partitions
from user_pipeline.shared.conditions import day_landed
from user_pipeline.shared.queues import SPARK_QUEUE_TAGS
from user_pipeline.spark.resources import SparkSettings
from user_pipeline.spark.submit import SparkSubmitError, spark_submit
from user_pipeline.users.resources import PartitionFiles


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

    Runs spark_jobs/ingest_users.py: in this process (local[*]) or on a standalone cluster
    (spark-submit). Dynamic partition overwrite replaces exactly the days of the run.
    """
    # Imported here, not with the definitions: only Spark runs pay for loading PySpark.
    from spark_jobs.ingest_users import IngestionError, run_ingestion

    check_run_inputs(context)
    days = context.partition_key_range
    job_args = {
        "input_dir": str(files.normalized_users_dir()),
        "start_date": days.start,
        "end_date": days.end,
        "output_dir": str(files.spark_output_dir()),
    }
    try:
        if spark.on_cluster:
            summary = spark_submit(
                spark.submit_args(),
                [f"--{key.replace('_', '-')}={value}" for key, value in job_args.items()],
                on_line=context.log.info,
            )
        else:
            summary = run_ingestion(spark.local_session(), **job_args)
    except (IngestionError, SparkSubmitError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error

    users = summary["users"]
    metadata = {
        "dagster/row_count": users["total_rows"],
        "rows_by_day": dg.MetadataValue.json(users["rows"]),
        "files": users["files"],
        "bytes": users["bytes"],
        "path": dg.MetadataValue.path(users["path"]),
        "aggregate_path": dg.MetadataValue.path(summary["users_by_country_age_band"]["path"]),
        "aggregate_rows": summary["users_by_country_age_band"]["total_rows"],
        "spark_application_id": summary["app_id"],
        "spark_master": summary["master"],
    }
    if spark.master_web_ui_url:
        metadata["spark_ui"] = dg.MetadataValue.url(
            f"{spark.master_web_ui_url.rstrip('/')}/app/?appId={summary['app_id']}"
        )
    return dg.MaterializeResult(metadata=metadata)
