"""The daily users report: a chart and a table per day, from the day's normalized users."""

import dagster as dg

from user_pipeline.partitions import check_run_inputs, daily_backfill_policy, daily_partitions
from user_pipeline.report.daily_report import WrittenReport, png_markdown, read_figures, report_paths, write_report
from user_pipeline.shared.conditions import day_landed
from user_pipeline.shared.metadata import run_metadata
from user_pipeline.users.resources import PartitionFiles

GROUP = "report"
TOP_COUNTRIES = 10


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "matplotlib"},
    backfill_policy=daily_backfill_policy,
    deps=["normalized_users"],
    automation_condition=day_landed(),
)
def daily_users_report(context: dg.AssetExecutionContext, files: PartitionFiles) -> dg.MaterializeResult:
    """The day's users at a glance: a PNG bar chart of users by country and by age band, and its figures as CSV.

    Files: `<data dir>/reports/YYYY-MM-DD.png` and `.csv`, rebuilt from the day's normalized users
    (a re-run writes the same bytes). A one-day run shows the chart, the top countries and the age
    bands here; a multi-day run lists each day's figures and files.
    """
    per_day = {}
    check_run_inputs(context)
    for day in context.partition_keys:
        source = files.normalized_users(day)
        if not source.exists():
            raise dg.Failure(
                description=f"normalized_users {day} is not materialized ({source} is missing): materialize it first",
                allow_retries=False,
            )
        report = write_report(read_figures(day, source), report_paths(files.data_dir, day))
        per_day[day] = {
            "dagster/row_count": report.figures.users,
            "countries": len(report.figures.by_country),
            "path": dg.MetadataValue.path(str(report.paths.png.resolve())),
            "csv_path": dg.MetadataValue.path(str(report.paths.csv.resolve())),
            "png_bytes": len(report.png),
        }
    # The chart is embedded for a one-day run only: a multi-day run's metadata is recorded on each
    # of its days, so one day's picture would show on all of them, and 31 pictures would be too many.
    shared = display_metadata(report) if len(per_day) == 1 else {}
    return dg.MaterializeResult(metadata=run_metadata(per_day, **shared))


def display_metadata(report: WrittenReport) -> dict:
    figures = report.figures
    return {
        "chart": dg.MetadataValue.md(png_markdown(f"users {figures.day}", report.png)),
        "top_countries": _table("country", figures.by_country[:TOP_COUNTRIES]),
        "age_bands": _table("age_band", figures.by_age_band),
    }


def _table(label: str, counts: list[tuple[str, int]]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({label: value, "users": users}) for value, users in counts],
        schema=dg.TableSchema(columns=[dg.TableColumn(label, "string"), dg.TableColumn("users", "int")]),
    )
