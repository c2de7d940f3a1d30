"""The daily users assets: fetched JSON -> normalized CSV -> warehouse table, and the registry."""

from datetime import date, timedelta

import dagster as dg

from user_pipeline.partitions import daily_partitions
from user_pipeline.users.api_client import InvalidSettingError, TransientUsersApiError, UsersApiError
from user_pipeline.users.normalize import USER_COLUMNS, audit_normalized_csv, read_normalized_csv, write_normalized_csv
from user_pipeline.users.raw_files import count_raw_users, read_raw_users, write_raw_users
from user_pipeline.users.registry import empty_registry, read_registry, update_registry, write_registry
from user_pipeline.users.resources import PartitionFiles, UserRegistrySettings, UsersApi, WarehouseResource
from user_pipeline.users.warehouse import LATEST_VIEW, TABLE

GROUP = "users"
LOAD_CHUNK_ROWS = 5000

_COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name, {"string": "text", "Int64": "integer", "float64": "double"}[dtype])
             for name, dtype in USER_COLUMNS.items()]
)


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"python", "json"},
    pool="users_api",
    # The client already retries each request; this retries the step when the API stays down.
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)
def raw_users(context: dg.AssetExecutionContext, users_api: UsersApi, files: PartitionFiles) -> dg.MaterializeResult:
    """The day's users as the Random User API sent them, one JSON object per line.

    The partition key (YYYY-MM-DD) is the API seed, so a re-run fetches the same users.
    `login.password`, the plaintext password, is dropped before anything is written.
    """
    path = files.raw_users(context.partition_key)
    try:
        summary = write_raw_users(
            users_api.iter_pages(context.partition_key, on_retry=context.log.warning), path
        )
    except TransientUsersApiError:
        raise  # Worth another try of the whole step (the asset's retry policy).
    except (UsersApiError, InvalidSettingError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.users,
            "pages": summary.pages,
            "source": users_api.source,
            "seed": context.partition_key,
            "path": dg.MetadataValue.path(str(path.resolve())),
            "bytes": summary.bytes,
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "csv"},
    deps=[raw_users],
    check_specs=[
        dg.AssetCheckSpec("emails_unique_and_present", asset="normalized_users", blocking=True),
        dg.AssetCheckSpec("no_plaintext_password", asset="normalized_users", blocking=True),
        dg.AssetCheckSpec("rows_match_raw_users", asset="normalized_users"),
    ],
)
def normalized_users(context: dg.AssetExecutionContext, files: PartitionFiles) -> dg.MaterializeResult:
    """One row per user for the day, as a UTF-8 CSV with a header; postcode is always text.

    Duplicate emails: the first occurrence in API order is kept, later ones are dropped and
    counted. Passwords appear only as the API's salt and salted SHA-256, never in plaintext.
    """
    raw_path = files.raw_users(context.partition_key)
    csv_path = files.normalized_users(context.partition_key)
    summary = write_normalized_csv(read_raw_users(raw_path), csv_path, context.partition_key)
    audit = audit_normalized_csv(csv_path)
    raw_count = count_raw_users(raw_path)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.rows_written,
            "dagster/column_schema": _COLUMN_SCHEMA,
            "users_read": summary.users_read,
            "duplicates_dropped": summary.duplicates_dropped,
            "path": dg.MetadataValue.path(str(csv_path.resolve())),
            "bytes": csv_path.stat().st_size,
            "preview": dg.MetadataValue.md(
                summary.preview[["email", "first_name", "last_name", "country", "postcode", "age"]].to_markdown(index=False)
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="emails_unique_and_present",
                passed=audit.missing_emails == 0 and audit.duplicate_emails == 0,
                metadata={"missing_emails": audit.missing_emails, "duplicate_emails": audit.duplicate_emails},
            ),
            dg.AssetCheckResult(
                check_name="no_plaintext_password",
                passed=not audit.plaintext_password_columns,
                metadata={"password_columns": ", ".join(audit.plaintext_password_columns) or "none"},
            ),
            dg.AssetCheckResult(
                check_name="rows_match_raw_users",
                passed=audit.rows + summary.duplicates_dropped == raw_count,
                metadata={"csv_rows": audit.rows, "duplicates_dropped": summary.duplicates_dropped, "raw_users": raw_count},
            ),
        ],
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"sql", "table"},
    deps=[normalized_users],
    check_specs=[dg.AssetCheckSpec("rows_match_normalized_users", asset="users_table", blocking=True)],
)
def users_table(
    context: dg.AssetExecutionContext, files: PartitionFiles, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """The `users` warehouse table: every day's rows, tagged with their partition_date.

    Loading a day replaces that day's rows in one transaction. The `users_latest` view
    answers "one row per email": the row from the latest day that has the email.
    """
    csv_path = files.normalized_users(context.partition_key)
    store = warehouse.open()
    inserted = store.replace_partition(
        context.partition_key, read_normalized_csv(csv_path, chunk_rows=LOAD_CHUNK_ROWS)
    )
    stored = store.count_rows(context.partition_key)
    csv_rows = audit_normalized_csv(csv_path).rows
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stored,
            "dagster/table_name": TABLE,
            "rows_inserted": inserted,
            "table_rows_all_days": store.count_rows(),
            "latest_view": LATEST_VIEW,
            "warehouse": store.display_url,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="rows_match_normalized_users",
                passed=stored == csv_rows,
                metadata={"table_rows": stored, "csv_rows": csv_rows},
            )
        ],
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "csv"},
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
    day = context.partition_key
    first_day = registry_settings.validated_first_day()
    previous_day = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    if day < first_day:
        raise dg.Failure(
            description=f"user_registry starts on {first_day} (USER_PIPELINE_REGISTRY_START_DATE); {day} is before it",
            allow_retries=False,
        )
    if day == first_day:
        previous = empty_registry()
    elif files.user_registry(previous_day).exists():
        previous = read_registry(files.user_registry(previous_day))
    else:
        raise dg.Failure(
            description=(
                f"user_registry {day} needs user_registry {previous_day}, which is not materialized: "
                f"materialize {previous_day} first, or backfill the range up to {day}"
            ),
            allow_retries=False,
        )
    registry = update_registry(previous, read_normalized_csv(files.normalized_users(day)), day)
    path = files.user_registry(day)
    write_registry(registry, path)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(registry),
            "new_emails": int((registry["first_seen"] == day).sum()),
            "seen_today": int((registry["last_seen"] == day).sum()),
            "path": dg.MetadataValue.path(str(path.resolve())),
        }
    )
