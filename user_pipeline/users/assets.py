"""The daily users assets: fetched JSON -> normalized CSV -> warehouse table, and the registry.

A run covers one day, or several days of a backfill. A day is all-or-nothing across its raw file,
CSV and table: raw_users and normalized_users stage the day's new files, and the last of the three
assets in the run commits them once the day passed it (day_commit.py). A day refused anywhere
leaves every layer as the previous good run left it; in a multi-day run refused on day N, the
days committed before N are recorded as materialized, and no others.
"""

import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import NoReturn

import dagster as dg
from pydantic import Field

from user_pipeline.shared.conditions import day_landed  # t-auto TEMPORARY
from user_pipeline.partitions import daily_backfill_policy, daily_partitions
from user_pipeline.run_checks import check_run_inputs
from user_pipeline.users.api_client import (
    CircuitOpenError,
    InvalidSettingError,
    TransientUsersApiError,
    UsersApiError,
)
from user_pipeline.users.contract import ContractViolation
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
    message, which Dagster would otherwise replace with "Exceeded max_retries".

    Only transient errors come here (429, 5xx, timeouts, refused connections, locks): anything
    else is permanent and goes to `fail_permanently`, which the retry policy never retries."""
    if context.retry_number < policy.max_retries:
        raise error
    raise dg.Failure(
        description=f"{error} (attempt {context.retry_number + 1} of {policy.max_retries + 1})", allow_retries=False
    ) from error


def fail_permanently(description: str, error: BaseException | None = None) -> NoReturn:
    """A failure that no retry can mend (a contract violation, an integrity error, a bad setting):
    the step fails at once, whatever its RetryPolicy."""
    raise dg.Failure(description=description, allow_retries=False) from error


def describe_integrity_error(error: Exception) -> str | None:
    """The reason and column of a warehouse integrity error (NOT NULL, UNIQUE, CHECK, ...), or
    None when `error` is not one. SQLite names `table.column`; PostgreSQL `column "name"` or `Key (name)`."""
    psycopg_errors = _psycopg_errors()
    if not isinstance(error, sqlite3.IntegrityError) and not (
        psycopg_errors and isinstance(error, psycopg_errors.IntegrityError)
    ):
        return None
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    column = re.search(r"constraint failed: ([\w.]+)|column \"(\w+)\"|Key \((\w+)\)", str(error))
    named = next((group for group in column.groups() if group), None) if column else None
    return f"{text} (column {named})" if named else text


def _psycopg_errors():
    try:
        import psycopg.errors as errors
    except ImportError:
        return None
    return errors


# The chain a day commits through, in order: the last of them in a run commits the day.
DAY_CHAIN = ("raw_users", "normalized_users", "users_table")


def commits_days(context: dg.AssetExecutionContext) -> bool:
    """True when no later asset of DAY_CHAIN runs after this one in the run: this step commits
    each day that passes it."""
    later = DAY_CHAIN[DAY_CHAIN.index(context.asset_key.to_user_string()) + 1 :]
    return not steps_in_run(context).intersection(later)


def steps_in_run(context: dg.AssetExecutionContext) -> set[str]:
    """The assets this run executes: its job's, narrowed to the steps a re-execution runs."""
    in_run = {key.to_user_string() for key in context.job_def.asset_layer.executable_asset_keys}
    if context.run.step_keys_to_execute is not None:
        in_run &= set(context.run.step_keys_to_execute)
    return in_run


def commit_day(context: dg.AssetExecutionContext, files: PartitionFiles, day: str, committed: list[str]) -> None:
    """Called once `day` passed this step: commits it when this step is the last of the chain in
    the run (appending it to `committed`); otherwise the later step will."""
    if commits_days(context):
        files.commit_day(day)
        committed.append(day)


def stop_at_day(
    context: dg.AssetExecutionContext,
    files: PartitionFiles,
    day: str,
    committed: dict[str, dict],
    *,
    keep_staged: bool = False,
) -> None:
    """The run stops at `day`: the days it did not commit keep every layer as the previous good run
    left them (their staged files are dropped, unless `keep_staged` keeps them for a retry or a
    re-execution), and the days committed before `day` are recorded as materialized, each with
    its metadata, since the failing step records no output."""
    if not keep_staged:
        this_asset = context.asset_key.to_user_string()
        earlier = [asset for asset in DAY_CHAIN[: DAY_CHAIN.index(this_asset)] if asset in steps_in_run(context)]
        for pending in context.partition_keys:
            if pending not in committed:
                files.discard_day(pending)
                # Earlier steps of the run recorded the day when they staged it: say it was rolled back.
                for asset in earlier:
                    context.log_event(
                        dg.AssetObservation(
                            asset_key=asset,
                            partition=pending,
                            metadata={"rolled_back": True, "refused_by": this_asset, "refused_day": day},
                        )
                    )
    for done, metadata in committed.items():
        context.log_event(dg.AssetMaterialization(asset_key=context.asset_key, partition=done, metadata=metadata))
    if committed:
        context.log.warning(f"{context.asset_key.to_user_string()}: stopped at {day}; committed before it: {', '.join(committed)}")


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
    # Without output: a day whose rejected share passes the limit records no materialization.
    output_required=False,
    check_specs=[dg.AssetCheckSpec("rejected_share_within_limit", asset="raw_users", blocking=True)],
)
def raw_users(
    context: dg.AssetExecutionContext, users_api: UsersApi, files: PartitionFiles
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The day's users as the Random User API sent them, one JSON object per line.

    The partition key (YYYY-MM-DD) is the API seed, so a re-run fetches the same users.
    `login.password`, the plaintext password, is dropped before anything is written. Every user
    is checked against the declared contract (users/contract.py) before the file is replaced: a
    violation fails the day naming seed, page, user, field and value, or, with
    `contract_violations=quarantine`, the user is left out and written with its reason to the
    day's rejects file (data/rejects/YYYY-MM-DD.jsonl), and rejected_share_within_limit fails
    when more than `max_rejected_fraction` of the day's users were left out.
    """
    check_run_inputs(context)
    try:
        quarantine, max_rejected = users_api.quarantines(), users_api.validated_max_rejected_fraction()
    except InvalidSettingError as error:
        fail_permanently(str(error), error)
    per_day: dict[str, dict] = {}
    committed: list[str] = []
    shares: dict[str, tuple[bool, dict]] = {}
    for day in context.partition_keys:
        try:
            # Pages first: a bad setting raises here, before any folder or file is created.
            pages = users_api.iter_pages(day, on_retry=context.log.warning)
            summary = write_raw_users(
                pages, files.staged_raw_users(day), rejects_path=files.staged_rejects(day) if quarantine else None
            )
        except CircuitOpenError as error:
            # No call was made; the users API sensor backfills the day once the circuit closes.
            users_api.breaker().record_skipped_day(day)
            stop_at_day(context, files, day, {d: per_day[d] for d in committed})
            fail_permanently(f"{day} skipped: {error}", error)
        except TransientUsersApiError as error:
            # Staged days stay for the step's retry; the last attempt drops them.
            last_attempt = context.retry_number >= API_RETRY_POLICY.max_retries
            stop_at_day(context, files, day, {d: per_day[d] for d in committed} if last_attempt else {}, keep_staged=not last_attempt)
            retry_or_fail(context, error, API_RETRY_POLICY)
        except ContractViolation as error:
            stop_at_day(context, files, day, {d: per_day[d] for d in committed})
            fail_permanently(f"raw_users {day}: {error}; the previous raw file was kept", error)
        except (UsersApiError, InvalidSettingError) as error:
            stop_at_day(context, files, day, {d: per_day[d] for d in committed})
            fail_permanently(str(error), error)
        except Exception as error:  # noqa: BLE001 - only the transient API errors above are retried
            stop_at_day(context, files, day, {d: per_day[d] for d in committed})
            fail_permanently(f"raw_users {day}: {type(error).__name__}: {error}", error)
        if not summary.rejected:
            # A rejects file exists exactly for the days that left users out.
            files.stage_no_rejects(day)
        per_day[day] = {
            "dagster/row_count": summary.users,
            "seed": day,
            "pages": summary.pages,
            "path": dg.MetadataValue.path(str(files.committed_raw_users(day).resolve())),
            "bytes": summary.bytes,
            "users_received": summary.received,
            "users_rejected": summary.rejected,
        }
        if quarantine:
            per_day[day]["rejected_by_field"] = dg.MetadataValue.json(summary.rejected_by_field or {})
            per_day[day]["rejects_path"] = dg.MetadataValue.path(str(files.rejects(day).resolve()))
        share = {"rejected_fraction": round(summary.rejected_fraction, 6), "max_rejected_fraction": max_rejected}
        if summary.rejected_fraction > max_rejected:
            stop_at_day(context, files, day, {d: per_day[d] for d in committed})
            yield dg.AssetCheckResult(
                check_name="rejected_share_within_limit",
                passed=False,
                description=(
                    f"{day}: {summary.rejected} of {summary.received} users break the contract "
                    f"({summary.rejected_fraction:.2%} > {max_rejected:.2%}); the previous raw file was kept"
                ),
                metadata={"day": day, "users_rejected": summary.rejected, "users_received": summary.received, **share},
            )
            return
        shares[day] = (True, {"users_rejected": summary.rejected, **share})
        commit_day(context, files, day, committed)
    breaker = users_api.breaker()
    yield dg.MaterializeResult(
        metadata=run_metadata(
            per_day,
            source=users_api.source,
            contract_violations="quarantine" if quarantine else "fail",
            users_api_circuit=breaker.describe() if breaker else "none",
        ),
        check_results=[check_over_days("rejected_share_within_limit", shares)],
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
    automation_condition=day_landed(),  # t-auto TEMPORARY: the multi-asset helper owns this line
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
    committed: list[str] = []  # day commit (#12): days this step committed
    check_run_inputs(context)
    for day in context.partition_keys:
        # day commit (#12): the CSV is written to this run's staging; the committed one is the previous.
        raw_path, csv_path, committed_csv = files.raw_users(day), files.staged_normalized_users(day), files.committed_normalized_users(day)
        previous = previous_fingerprints(context, committed_csv)
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
            stop_at_day(context, files, day, {d: per_day[d] for d in committed})  # day commit (#12)
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
            "path": dg.MetadataValue.path(str(committed_csv.resolve())),
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
        # day commit (#12): a day failing a blocking check keeps its previous files.
        if all(checks[name][day][0] for name in ("emails_unique_and_present", "user_ids_unique", "no_plaintext_password")):
            commit_day(context, files, day, committed)
        else:
            files.discard_day(day)
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
    automation_condition=day_landed(),  # t-auto TEMPORARY: the multi-asset helper owns this line
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
    committed: list[str] = []  # day commit (#12): days this step committed
    check_run_inputs(context)
    for day in context.partition_keys:
        csv_path = files.normalized_users(day)
        try:
            load = store.replace_partition_verified(day, read_normalized_csv(csv_path, chunk_rows=LOAD_CHUNK_ROWS), LOAD_CHUNK_ROWS)
        except WarehouseUnavailableError as error:
            # day commit (#12): staged files stay for the retry, and for a re-execution after the last one.
            if context.retry_number >= WAREHOUSE_RETRY_POLICY.max_retries:
                stop_at_day(context, files, day, {d: per_day[d] for d in committed}, keep_staged=True)
            retry_or_fail(context, error, WAREHOUSE_RETRY_POLICY)
        except TableMismatchError as mismatch:
            stop_at_day(context, files, day, {d: per_day[d] for d in committed})  # day commit (#12)
            yield dg.AssetCheckResult(
                check_name="table_matches_normalized_users",
                passed=False,
                description=str(mismatch),
                metadata={"day": day, "csv_content_hash": mismatch.loaded_hash, "table_content_hash": mismatch.stored_hash},
            )
            return
        except Exception as error:  # noqa: BLE001 - anything but a transient warehouse error is permanent
            integrity = describe_integrity_error(error)
            # day commit (#12): rows the warehouse refused are dropped with the day; otherwise (a
            # warehouse that cannot be opened, say) the staged files stay, so that once it is mended
            # a re-execution from failure loads exactly what this run fetched and normalized.
            stop_at_day(context, files, day, {d: per_day[d] for d in committed}, keep_staged=integrity is None)
            if integrity:
                fail_permanently(
                    f"users_table {day}: the warehouse refused the day's rows: {integrity}; the previous rows were "
                    "kept (a permanent error, not retried)",
                    error,
                )
            fail_permanently(f"users_table {day}: loading {csv_path} failed: {type(error).__name__}: {error}", error)
        receipt = make_receipt(load.previous, load.stored)
        stored, csv_rows = store.count_rows(day), audit_normalized_csv(csv_path).rows
        per_day[day] = {"dagster/row_count": stored, "rows_inserted": load.rows_inserted, **receipt.as_metadata()}
        row_checks[day] = (stored == csv_rows, {"table_rows": stored, "csv_rows": csv_rows})
        hash_checks[day] = (
            receipt.content_hash == load.content_hash,
            {"csv_content_hash": load.content_hash, "table_content_hash": receipt.content_hash},
        )
        commit_day(context, files, day, committed)  # day commit (#12): the table holds the day: commit its files
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
    automation_condition=day_landed(),  # t-auto TEMPORARY: the multi-asset helper owns this line
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
