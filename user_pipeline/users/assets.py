"""The daily users assets: fetched JSON -> normalized CSV -> warehouse table, and the registry.

A run covers one day, or several days of a backfill; every day is written and checked on its
own, atomically, so a failure on day N leaves days before it done and day N as it was.
"""

import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import NoReturn

import dagster as dg
from pydantic import Field

from user_pipeline.partitions import daily_backfill_policy, daily_partitions
from user_pipeline.run_checks import check_run_inputs
from user_pipeline.users.api_client import (
    CircuitOpenError,
    InvalidSettingError,
    TransientUsersApiError,
    UsersApiError,
)
from user_pipeline.users.columns import COLUMN_DESCRIPTIONS
from user_pipeline.users.csv_format import read_header
from user_pipeline.users.normalize import (
    USER_COLUMNS,
    audit_normalized_csv,
    read_normalized_csv,
    write_normalized_csv,
)
from user_pipeline.users.raw_files import (
    count_raw_users,
    read_raw_users,
    write_raw_users,
)
from user_pipeline.users.receipts import (
    PartitionReceipt,
    make_receipt,
    row_fingerprints,
)
from user_pipeline.users.registry import (
    empty_registry,
    read_registry,
    update_registry,
    write_registry,
)
from user_pipeline.users.resources import (
    PartitionFiles,
    UserRegistrySettings,
    UsersApi,
    WarehouseResource,
)
from user_pipeline.users.warehouse import LATEST_VIEW, TABLE, TableMismatchError, WarehouseUnavailableError

GROUP = "users"
LOAD_CHUNK_ROWS = 5000
PREVIEW_COLUMNS = ["email", "first_name", "last_name", "country", "postcode", "age"]

_COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name, {"string": "text", "Int64": "integer", "float64": "double"}[dtype],
                            description=COLUMN_DESCRIPTIONS.get(name))
             for name, dtype in USER_COLUMNS.items()]
)


# The API client already retries each request; these retry the step when the API stays down.
API_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
# A locked or restarting warehouse is usually back within seconds.
WAREHOUSE_RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def retry_or_fail(context: dg.AssetExecutionContext, error: Exception, policy: dg.RetryPolicy) -> NoReturn:
    """Leaves a transient error to the retry policy; on the last attempt fails with the error's own
    message, which Dagster would otherwise replace with "Exceeded max_retries"."""
    if context.retry_number < policy.max_retries:
        raise error
    raise dg.Failure(
        description=f"{error} (attempt {context.retry_number + 1} of {policy.max_retries + 1})", allow_retries=False
    ) from error


def run_metadata(per_day: dict[str, dict], **shared) -> dict:
    """A one-day run's metadata as is; a multi-day run's total row count and each day's figures."""
    if len(per_day) == 1:
        return {**next(iter(per_day.values())), **shared}
    by_day = {
        day: {key: value.value if isinstance(value, dg.MetadataValue) else value for key, value in metadata.items()}
        for day, metadata in per_day.items()
    }
    return {
        "dagster/row_count": sum(metadata["dagster/row_count"] for metadata in per_day.values()),
        "days": dg.MetadataValue.json(by_day),
        **shared,
    }


def check_over_days(check_name: str, results: dict[str, tuple[bool, dict]]) -> dg.AssetCheckResult:
    """One check result for the run: passed if every day passed; failing days named, with their figures."""
    failing = [day for day, (passed, _) in results.items() if not passed]
    metadata = next(iter(results.values()))[1] if len(results) == 1 else {"failing_days": ", ".join(failing) or "none"}
    description = None
    if failing:
        description = "failed for " + "; ".join(
            f"{day}: " + ", ".join(f"{key}={value}" for key, value in results[day][1].items()) for day in failing
        )
    return dg.AssetCheckResult(check_name=check_name, passed=not failing, metadata=metadata, description=description)


def previous_fingerprints(context: dg.AssetExecutionContext, csv_path: Path):
    """The receipt's "before": the day's current CSV, None if there is none or it predates USER_COLUMNS."""
    if not csv_path.exists():
        return None
    if read_header(csv_path) != list(USER_COLUMNS):
        context.log.warning(f"{csv_path} has other columns than {', '.join(USER_COLUMNS)} (an older format): no diff against it")
        return None
    return row_fingerprints(read_normalized_csv(csv_path, chunk_rows=LOAD_CHUNK_ROWS))


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"python", "json"},
    pool="users_api",
    backfill_policy=daily_backfill_policy,
    retry_policy=API_RETRY_POLICY,
)
def raw_users(context: dg.AssetExecutionContext, users_api: UsersApi, files: PartitionFiles) -> dg.MaterializeResult:
    """The day's users as the Random User API sent them, one JSON object per line.

    The partition key (YYYY-MM-DD) is the API seed, so a re-run fetches the same users.
    `login.password`, the plaintext password, is dropped before anything is written.
    """
    per_day = {}
    check_run_inputs(context)
    for day in context.partition_keys:
        path = files.raw_users(day)
        try:
            summary = write_raw_users(users_api.iter_pages(day, on_retry=context.log.warning), path)
        except CircuitOpenError as error:
            # No call was made; the users API sensor backfills the day once the circuit closes.
            users_api.breaker().record_skipped_day(day)
            raise dg.Failure(description=f"{day} skipped: {error}", allow_retries=False) from error
        except TransientUsersApiError as error:
            retry_or_fail(context, error, API_RETRY_POLICY)
        except (UsersApiError, InvalidSettingError) as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error
        per_day[day] = {
            "dagster/row_count": summary.users,
            "seed": day,
            "pages": summary.pages,
            "path": dg.MetadataValue.path(str(path.resolve())),
            "bytes": summary.bytes,
        }
    breaker = users_api.breaker()
    return dg.MaterializeResult(
        metadata=run_metadata(per_day, source=users_api.source, users_api_circuit=breaker.describe() if breaker else "none")
    )


class NormalizedUsersConfig(dg.Config):
    max_row_drop_fraction: float = Field(
        default=float(os.environ.get("USER_PIPELINE_MAX_ROW_DROP_FRACTION", "0.2")),
        ge=0.0,
        le=1.0,
        description="A re-run that would shrink a day by more than this fraction keeps the previous day instead.",
    )


class RowDropRefused(Exception):
    def __init__(self, receipt: PartitionReceipt):
        super().__init__(f"{receipt.row_drop_fraction:.0%} fewer rows")
        self.receipt = receipt


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "csv"},
    backfill_policy=daily_backfill_policy,
    deps=[raw_users],
    # Without output: a day refused by row_drop_within_limit records no materialization.
    output_required=False,
    check_specs=[
        dg.AssetCheckSpec("emails_unique_and_present", asset="normalized_users", blocking=True),
        dg.AssetCheckSpec("user_ids_unique", asset="normalized_users", blocking=True),
        dg.AssetCheckSpec("no_plaintext_password", asset="normalized_users", blocking=True),
        dg.AssetCheckSpec("rows_match_raw_users", asset="normalized_users"),
        dg.AssetCheckSpec("row_drop_within_limit", asset="normalized_users", blocking=True),
    ],
)
def normalized_users(
    context: dg.AssetExecutionContext, config: NormalizedUsersConfig, files: PartitionFiles
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """One row per user for the day, as a UTF-8 CSV with a header; postcode is always text.

    Duplicate emails (compared by email key: trimmed, case-folded): the first occurrence in API
    order is kept, later ones are dropped and counted. A user_id (login.uuid) on two rows of a
    day fails the blocking user_ids_unique check, naming the day and the ids. Passwords appear
    only as the API's salt and salted SHA-256, never in plaintext.
    Every materialization carries a receipt: rows, a content hash, and rows added, removed and
    changed (by user_id) since the day's previous CSV. A re-run that would drop more than
    `max_row_drop_fraction` of the day's rows keeps the previous CSV and fails row_drop_within_limit.
    """
    checks: dict[str, dict[str, tuple[bool, dict]]] = {
        name: {}
        for name in ("emails_unique_and_present", "user_ids_unique", "no_plaintext_password", "rows_match_raw_users", "row_drop_within_limit")
    }
    per_day = {}
    check_run_inputs(context)
    for day in context.partition_keys:
        raw_path, csv_path = files.raw_users(day), files.normalized_users(day)
        previous = previous_fingerprints(context, csv_path)
        receipts: list[PartitionReceipt] = []

        def check_row_drop(written: Path) -> None:
            receipts.append(make_receipt(previous, row_fingerprints(read_normalized_csv(written, chunk_rows=LOAD_CHUNK_ROWS))))
            if receipts[0].row_drop_fraction > config.max_row_drop_fraction:
                raise RowDropRefused(receipts[0])

        try:
            summary = write_normalized_csv(read_raw_users(raw_path), csv_path, day, before_commit=check_row_drop)
        except RowDropRefused as refused:
            yield dg.AssetCheckResult(
                check_name="row_drop_within_limit",
                passed=False,
                description=f"{day}: the new data has {refused} than the previous CSV; the previous CSV was kept",
                metadata={"day": day, "max_row_drop_fraction": config.max_row_drop_fraction, **refused.receipt.as_metadata()},
            )
            return
        [receipt] = receipts
        audit = audit_normalized_csv(csv_path)
        raw_count = count_raw_users(raw_path)
        if receipt.changed_since_previous:
            context.log.warning(
                f"normalized_users {day} changed since its previous materialization: +{receipt.added} "
                f"-{receipt.removed} ~{receipt.changed} rows (the API's answer for the seed changed)"
            )
        per_day[day] = {
            "dagster/row_count": summary.rows_written,
            "users_read": summary.users_read,
            "duplicates_dropped": summary.duplicates_dropped,
            "path": dg.MetadataValue.path(str(csv_path.resolve())),
            "bytes": csv_path.stat().st_size,
            **receipt.as_metadata(),
        }
        checks["emails_unique_and_present"][day] = (
            audit.missing_emails == 0 and audit.duplicate_emails == 0,
            {"missing_emails": audit.missing_emails, "duplicate_emails": audit.duplicate_emails},
        )
        checks["user_ids_unique"][day] = (
            not audit.repeated_user_ids,
            {
                "repeated_user_ids": ", ".join(audit.repeated_user_ids[:20]) or "none",
                "repeated_user_id_count": len(audit.repeated_user_ids),
            },
        )
        if audit.repeated_user_ids:
            context.log.error(
                f"normalized_users {day}: user_id (login.uuid) repeated on several rows: "
                f"{', '.join(audit.repeated_user_ids[:20])}{' ...' if len(audit.repeated_user_ids) > 20 else ''}"
            )
        checks["no_plaintext_password"][day] = (
            not audit.plaintext_password_columns,
            {"password_columns": ", ".join(audit.plaintext_password_columns) or "none"},
        )
        checks["rows_match_raw_users"][day] = (
            audit.rows + summary.duplicates_dropped == raw_count,
            {"csv_rows": audit.rows, "duplicates_dropped": summary.duplicates_dropped, "raw_users": raw_count},
        )
        checks["row_drop_within_limit"][day] = (
            True,
            {"row_drop_fraction": receipt.row_drop_fraction, "max_row_drop_fraction": config.max_row_drop_fraction},
        )
    yield dg.MaterializeResult(
        metadata=run_metadata(
            per_day,
            **{
                "dagster/column_schema": _COLUMN_SCHEMA,
                "preview": dg.MetadataValue.md(summary.preview[PREVIEW_COLUMNS].to_markdown(index=False)),
            },
        ),
        check_results=[check_over_days(name, results) for name, results in checks.items()],
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"sql", "table"},
    backfill_policy=daily_backfill_policy,
    retry_policy=WAREHOUSE_RETRY_POLICY,
    deps=[normalized_users],
    # Without output: a day whose rows do not read back identical is rolled back and records no materialization.
    output_required=False,
    check_specs=[
        dg.AssetCheckSpec("rows_match_normalized_users", asset="users_table", blocking=True),
        dg.AssetCheckSpec("table_matches_normalized_users", asset="users_table", blocking=True),
    ],
)
def users_table(
    context: dg.AssetExecutionContext, files: PartitionFiles, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The `users` warehouse table: every day's rows, tagged with their partition_date.

    Loading a day replaces that day's rows in one transaction, which commits only if the rows
    read back have the content hash of the normalized_users CSV (table_matches_normalized_users):
    any value changed on the way (truncated, NULL for "", a changed byte) rolls the day back and
    fails the run. The `users_latest` view answers "one row per email": the row from the latest
    day that has the email key (trimmed, case-folded).
    """
    store = warehouse.open()
    per_day, row_checks, hash_checks = {}, {}, {}
    check_run_inputs(context)
    for day in context.partition_keys:
        csv_path = files.normalized_users(day)
        try:
            load = store.replace_partition_verified(day, read_normalized_csv(csv_path, chunk_rows=LOAD_CHUNK_ROWS), LOAD_CHUNK_ROWS)
        except WarehouseUnavailableError as error:
            retry_or_fail(context, error, WAREHOUSE_RETRY_POLICY)
        except TableMismatchError as mismatch:
            yield dg.AssetCheckResult(
                check_name="table_matches_normalized_users",
                passed=False,
                description=str(mismatch),
                metadata={"day": day, "csv_content_hash": mismatch.loaded_hash, "table_content_hash": mismatch.stored_hash},
            )
            return
        except (OSError, ValueError) as error:
            raise dg.Failure(description=f"loading {csv_path} failed: {error}", allow_retries=False) from error
        receipt = make_receipt(load.previous, load.stored)
        stored, csv_rows = store.count_rows(day), audit_normalized_csv(csv_path).rows
        per_day[day] = {"dagster/row_count": stored, "rows_inserted": load.rows_inserted, **receipt.as_metadata()}
        row_checks[day] = (stored == csv_rows, {"table_rows": stored, "csv_rows": csv_rows})
        hash_checks[day] = (
            receipt.content_hash == load.content_hash,
            {"csv_content_hash": load.content_hash, "table_content_hash": receipt.content_hash},
        )
    yield dg.MaterializeResult(
        metadata=run_metadata(
            per_day,
            **{
                "dagster/table_name": TABLE,
                "table_rows_all_days": store.count_rows(),
                "latest_view": LATEST_VIEW,
                "warehouse": store.display_url,
            },
        ),
        check_results=[
            check_over_days("rows_match_normalized_users", row_checks),
            check_over_days("table_matches_normalized_users", hash_checks),
        ],
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "csv"},
    backfill_policy=daily_backfill_policy,
    deps=[
        normalized_users,
        dg.AssetDep("user_registry", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)),
    ],
)
def user_registry(
    context: dg.AssetExecutionContext, files: PartitionFiles, registry_settings: UserRegistrySettings
) -> dg.MaterializeResult:
    """Every email seen up to and including the day, with first_seen, last_seen and days_seen.

    Day D is built from day D-1's registry and day D's normalized users (depends_on_past), so
    days are materialized in date order and D is refused while D-1 is missing. The registry
    starts empty on its first day (USER_PIPELINE_REGISTRY_START_DATE).
    """
    first_day = registry_settings.validated_first_day()
    per_day = {}
    check_run_inputs(context)
    for day in sorted(context.partition_keys):
        previous = previous_registry(files, day, first_day)
        registry = update_registry(previous, read_normalized_csv(files.normalized_users(day)), day)
        path = files.user_registry(day)
        write_registry(registry, path)
        per_day[day] = {
            "dagster/row_count": len(registry),
            "new_emails": int((registry["first_seen"] == day).sum()),
            "seen_today": int((registry["last_seen"] == day).sum()),
            "path": dg.MetadataValue.path(str(path.resolve())),
        }
    return dg.MaterializeResult(metadata=run_metadata(per_day))


def previous_registry(files: PartitionFiles, day: str, first_day: str):
    """Day D-1's registry, empty on the first day; refuses a day before it or after a gap."""
    if day < first_day:
        raise dg.Failure(
            description=f"user_registry starts on {first_day} (USER_PIPELINE_REGISTRY_START_DATE); {day} is before it",
            allow_retries=False,
        )
    if day == first_day:
        return empty_registry()
    previous_day = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    if not files.user_registry(previous_day).exists():
        raise dg.Failure(
            description=(
                f"user_registry {day} needs user_registry {previous_day}, which is not materialized: "
                f"materialize {previous_day} first, or backfill the range up to {day}"
            ),
            allow_retries=False,
        )
    return read_registry(files.user_registry(previous_day))
