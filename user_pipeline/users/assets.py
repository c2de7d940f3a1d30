"""The daily users assets: fetched JSON (raw_users) -> normalized CSV (normalized_users) -> warehouse
table (users_table), as one step that goes day by day, and the registry (user_registry).

`daily_users` is one multi-asset over raw_users, normalized_users and users_table. For each day of
the run it runs the selected steps (users/days.py: `fetch_day`, `normalize_day`, `load_day`),
commits the day's staged raw file, rejects and CSV only when the day passed every selected step
and blocking check (users/day_commit.py), and then counts the day as materialized for each
selected asset. A run stopped at day N (a refusal by a blocking check, a permanent error, the
last failed retry, a termination) records exactly the days before N, which stay committed, with
each day's own metadata; day N and later keep every layer as the previous good run left them.
While a day is loaded and committed, later days are fetched and normalized into their staged
files by `days_ahead` worker processes (DayLimits, USER_PIPELINE_DAYS_AHEAD; users/days_ahead.py);
they are taken, checked and committed in date order like any day.
The bodies here only turn the per-day results into metadata and check results.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NoReturn

import dagster as dg

from user_pipeline.partitions import check_run_inputs, daily_backfill_policy, daily_partitions
from user_pipeline.shared.conditions import day_landed
from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.shared.metadata import check_over_days, run_metadata
from user_pipeline.shared.pools import USERS_API_POOL
from user_pipeline.shared.queues import USERS_API_QUEUE_TAGS
from user_pipeline.users.api_errors import CircuitOpenError, TransientUsersApiError, UsersApiError
from user_pipeline.users.circuit_breaker import CircuitBreaker
from user_pipeline.users.columns import COLUMN_DESCRIPTIONS
from user_pipeline.users.contract import ContractViolation
from user_pipeline.users.days import (
    DAY_CHECKS,
    FetchedDay,
    LoadedDay,
    NormalizedDay,
    RowDropRefused,
    load_checks,
    load_day,
    normalize_checks,
    normalize_day,
    refusing_checks,
)
from user_pipeline.users.days_ahead import DayPlan, DaysAhead, StagedDay
from user_pipeline.users.normalize import USER_COLUMNS, read_normalized_csv
from user_pipeline.users.registry import empty_registry, read_registry, update_registry, write_registry
from user_pipeline.users.resources import (
    DayLimits,
    PartitionFiles,
    UserRegistrySettings,
    UsersApi,
    WarehouseResource,
)
from user_pipeline.users.warehouse import (
    LATEST_VIEW,
    TABLE,
    TableMismatchError,
    Warehouse,
    WarehouseUnavailableError,
    describe_integrity_error,
)

GROUP = "users"
PREVIEW_COLUMNS = ["email", "first_name", "last_name", "country", "postcode", "age"]
RAW_USERS, NORMALIZED_USERS, USERS_TABLE = "raw_users", "normalized_users", "users_table"

_COLUMN_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            name,
            {"string": "text", "Int64": "integer", "float64": "double"}[dtype],
            description=COLUMN_DESCRIPTIONS.get(name),
        )
        for name, dtype in USER_COLUMNS.items()
    ]
)

# Transient errors only (429, 5xx, timeouts, refused connections, locks; the API client already
# retries each request): the step retries when the API or the warehouse stays down. Permanent
# errors go to `fail_permanently`, which no retry policy retries.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

RAW_USERS_DESCRIPTION = """The day's users as the Random User API sent them, one JSON object per line.

The partition key (YYYY-MM-DD) is the API seed, so a re-run fetches the same users.
`login.password`, the plaintext password, is dropped before anything is written. Every user is
checked against the declared contract (users/contract.py) before the file is replaced: a violation
fails the day naming seed, page, user, field and value, or, with `contract_violations=quarantine`,
the user is left out and written with its reason to the day's rejects file
(data/rejects/YYYY-MM-DD.jsonl), and rejected_share_within_limit fails when more than
`max_rejected_fraction` of the day's users were left out."""

NORMALIZED_USERS_DESCRIPTION = """One row per user for the day, as a UTF-8 CSV with a header; postcode is always text.

Duplicate emails (compared by email key: trimmed, case-folded): the first occurrence in API order
is kept, later ones are dropped and counted. A user_id (login.uuid) on two rows of a day fails the
blocking user_ids_unique check, naming the day and the ids. Passwords appear only as the API's
salt and salted SHA-256, never in plaintext. Every materialization carries a receipt: rows, a
content hash, and rows added, removed and changed (by user_id) since the day's previous CSV. A
re-run that would drop more than `max_row_drop_fraction` (USER_PIPELINE_MAX_ROW_DROP_FRACTION)
of the day's rows keeps the previous CSV and fails row_drop_within_limit."""

USERS_TABLE_DESCRIPTION = """The `users` warehouse table: every day's rows, tagged with their partition_date.

Loading a day replaces that day's rows in one transaction, which commits only if the rows read
back have the content hash of the rows normalized (table_matches_normalized_users): any value
changed on the way (truncated, NULL for "", a changed byte) rolls the day back and fails the run.
The `users_latest` view answers "one row per email": the row from the latest day that has the
email key (trimmed, case-folded)."""

# Each asset's checks and their blocking flags (a day failing a blocking check is not committed
# and not materialized) are the plain module's.
CHECKS = DAY_CHECKS


def _describe_circuit(breaker: CircuitBreaker | None) -> str:
    """The circuit's state for the metadata; the days are committed by now, so a warehouse that
    went away meanwhile is reported here rather than failing the step."""
    if breaker is None:
        return "none"
    try:
        return breaker.describe()
    except WarehouseUnavailableError as error:
        return f"unknown: {error}"


def retry_or_fail(context: dg.AssetExecutionContext, error: Exception) -> NoReturn:
    """Leaves a transient error to the retry policy; on the last attempt fails with the error's own
    message, which Dagster would otherwise replace with "Exceeded max_retries"."""
    if context.retry_number < RETRY_POLICY.max_retries:
        raise error
    raise dg.Failure(
        description=f"{error} (attempt {context.retry_number + 1} of {RETRY_POLICY.max_retries + 1})",
        allow_retries=False,
    ) from error


def fail_permanently(description: str, error: BaseException | None = None) -> NoReturn:
    """A failure that no retry can mend (a contract violation, an integrity error, a bad setting):
    the step fails at once, whatever its RetryPolicy."""
    raise dg.Failure(description=description, allow_retries=False) from error


@dataclass
class DayOutcome:
    """One day through the selected steps: their results, each check's (passed, figures), and the
    blocking check results that refused the day (none: the day passed)."""

    day: str
    fetched: FetchedDay | None = None
    normalized: NormalizedDay | None = None
    loaded: LoadedDay | None = None
    checks: dict[str, tuple[bool, dict]] = field(default_factory=dict)
    refusals: list[dg.AssetCheckResult] = field(default_factory=list)

    def refuse(self, check_name: str, asset_key: dg.AssetKey, description: str, **figures) -> None:
        """The day fails the blocking check `check_name` of `asset_key`: why, and its figures."""
        self.refusals.append(
            dg.AssetCheckResult(
                check_name=check_name,
                asset_key=asset_key,
                passed=False,
                description=description,
                metadata={"day": self.day, **figures},
            )
        )


@dataclass
class DayChainRun:
    """What a run of `daily_users` did so far: the days it committed, with each selected asset's
    metadata, and every check's results by day."""

    context: dg.AssetExecutionContext
    files: PartitionFiles
    assets: list[str]
    committed: dict[str, dict[str, dict]] = field(default_factory=dict)
    checks: dict[str, dict[str, tuple[bool, dict]]] = field(default_factory=dict)
    shared: dict[str, dict] = field(default_factory=dict)
    stopped: bool = False
    recorded: set[str] = field(default_factory=set)
    """Days an earlier attempt of the run committed and recorded already."""

    def commit(self, outcome: DayOutcome) -> None:
        """Commits the day's staged files and counts the day as done, with its metadata."""
        self.files.commit_day(outcome.day)
        self.committed[outcome.day] = day_metadata(outcome, self.files)
        self.add_checks(outcome)

    def add_checks(self, outcome: DayOutcome) -> None:
        for name, result in outcome.checks.items():
            self.checks.setdefault(name, {})[outcome.day] = result

    def stop(self, day: str) -> None:
        """The run stops at `day`: what it staged and did not commit is dropped (every layer of the
        day stays the previous good run's), and each committed day is recorded as materialized
        for each selected asset, with its own metadata."""
        if self.stopped:
            return
        self.stopped = True
        for pending in self.context.partition_keys:
            if pending not in self.committed:
                self.files.discard_day(pending)
        for done, metadata in self.committed.items():
            if done in self.recorded:
                continue
            for asset in self.assets:
                self.context.log_event(
                    dg.AssetMaterialization(
                        asset_key=asset, partition=done, metadata={**metadata[asset], **self.shared.get(asset, {})}
                    )
                )
        if self.committed:
            self.context.log.warning(
                f"daily_users stopped at {day}; committed and recorded before it: {', '.join(self.committed)}"
            )

    def check_results(self, refusals: list[dg.AssetCheckResult] = ()) -> list[dg.AssetCheckResult]:
        """Every selected check's result over the days evaluated, the refusing day's own results
        in place of theirs."""
        refused = {result.check_name for result in refusals}
        results = [result for result in refusals if self.selected(result.asset_key.to_user_string(), result.check_name)]
        for asset in self.assets:
            for name in CHECKS[asset]:
                if name in self.checks and name not in refused and self.selected(asset, name):
                    results.append(check_over_days(name, self.checks[name], asset_key=asset))
        return results

    def selected(self, asset: str, check_name: str) -> bool:
        return dg.AssetCheckKey(dg.AssetKey(asset), check_name) in self.context.selected_asset_check_keys


def committed_by_earlier_attempts(context: dg.AssetExecutionContext, assets: list[str]) -> dict[str, dict[str, dict]]:
    """On a step retry: the days an earlier attempt of this run committed, with each selected
    asset's metadata as recorded then (a stopped attempt records exactly its committed days for
    every selected asset). Empty on a first attempt; a re-execution is a new run and starts over."""
    if context.retry_number == 0:
        return {}
    recorded: dict[str, dict[str, dict]] = {}
    for entry in context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        recorded.setdefault(materialization.partition, {})[materialization.asset_key.to_user_string()] = dict(
            materialization.metadata
        )
    return {day: by_asset for day, by_asset in recorded.items() if all(asset in by_asset for asset in assets)}


def day_metadata(outcome: DayOutcome, files: PartitionFiles) -> dict[str, dict]:
    """Each selected asset's metadata for one committed day."""
    day, metadata = outcome.day, {}
    if outcome.fetched:
        raw = outcome.fetched.raw
        metadata[RAW_USERS] = {
            "dagster/row_count": raw.users,
            "seed": day,
            "pages": raw.pages,
            "path": dg.MetadataValue.path(str(files.committed_raw_users(day).resolve())),
            "bytes": raw.bytes,
            "users_received": raw.received,
            "users_rejected": raw.rejected,
        }
        if outcome.fetched.rejects_path is not None:
            metadata[RAW_USERS]["rejected_by_field"] = dg.MetadataValue.json(raw.rejected_by_field or {})
            metadata[RAW_USERS]["rejects_path"] = dg.MetadataValue.path(str(files.rejects(day).resolve()))
    if outcome.normalized:
        normalized = outcome.normalized
        metadata[NORMALIZED_USERS] = {
            "dagster/row_count": normalized.rows,
            "users_read": normalized.summary.users_read,
            "duplicates_dropped": normalized.summary.duplicates_dropped,
            "path": dg.MetadataValue.path(str(files.committed_normalized_users(day).resolve())),
            "bytes": normalized.summary.bytes,
            "preview": dg.MetadataValue.md(normalized.summary.preview[PREVIEW_COLUMNS].to_markdown(index=False)),
            **normalized.receipt.as_metadata(),
        }
    if outcome.loaded:
        loaded = outcome.loaded
        metadata[USERS_TABLE] = {
            "dagster/row_count": loaded.rows_stored,
            "rows_inserted": loaded.rows_loaded,
            **loaded.receipt.as_metadata(),
        }
    return metadata


def day_plan(
    files: PartitionFiles, day: str, *, quarantine: bool, normalize: bool, max_rejected: float, limits: DayLimits
) -> DayPlan:
    """Where the run stages the day's raw file, rejects (quarantine) and CSV (when it normalizes)."""
    return DayPlan(
        day,
        raw_path=files.staged_raw_users(day),
        rejects_path=files.staged_rejects(day) if quarantine else None,
        csv_path=files.staged_normalized_users(day) if normalize else None,
        previous_csv=files.committed_normalized_users(day),
        max_rejected_fraction=max_rejected,
        max_row_drop_fraction=limits.max_row_drop_fraction,
        reservation=files.reserve_day(day),
    )


def run_fetch(
    context: dg.AssetExecutionContext,
    users_api: UsersApi,
    files: PartitionFiles,
    outcome: DayOutcome,
    staged: StagedDay,
    *,
    max_rejected: float,
) -> None:
    """raw_users for the day, as `stage_day` left it in the day's staged raw file (and, when the
    run normalizes, its staged CSV, finished by run_normalize): its errors, the rejected share's check."""
    day = outcome.day
    try:
        fetched = staged.fetched_or_raise()
    except CircuitOpenError as error:
        # No call was made; the users API sensor backfills the day once the circuit closes.
        users_api.breaker().record_skipped_day(day)
        fail_permanently(f"{day} skipped: {error}", error)
    except (TransientUsersApiError, WarehouseUnavailableError) as error:
        # The warehouse holds the circuit breaker's state: down or locked, it is worth a retry too.
        retry_or_fail(context, error)
    except ContractViolation as error:
        fail_permanently(f"raw_users {day}: {error}; the previous raw file was kept", error)
    except (UsersApiError, InvalidSettingError) as error:
        fail_permanently(str(error), error)
    except Exception as error:  # noqa: BLE001 - only the transient API errors above are retried
        fail_permanently(f"raw_users {day}: {type(error).__name__}: {error}", error)
    if not fetched.raw.rejected:
        # A rejects file exists exactly for the days that left users out.
        files.stage_no_rejects(day)
    outcome.fetched = fetched
    outcome.checks.update(staged.checks)
    if refusing_checks(RAW_USERS, outcome.checks):
        raw = fetched.raw
        outcome.refuse(
            "rejected_share_within_limit",
            RAW_USERS,
            f"{day}: {raw.rejected} of {raw.received} users break the contract "
            f"({raw.rejected_fraction:.2%} > {max_rejected:.2%}); the previous raw file was kept",
            users_received=raw.received,
            **outcome.checks["rejected_share_within_limit"][1],
        )


def run_normalize(
    context: dg.AssetExecutionContext,
    files: PartitionFiles,
    limits: DayLimits,
    outcome: DayOutcome,
    staged: StagedDay | None = None,
) -> None:
    """normalized_users for the day: the CSV `stage_day` wrote in the same pass as the raw file
    (`staged`, when the run fetched the day), else the committed raw file into the day's staged
    CSV; its checks."""
    day = outcome.day
    if staged is None:
        raw_path = files.raw_users(day)
        if not raw_path.exists():
            fail_permanently(
                f"normalized_users {day}: raw_users {day} is not materialized ({raw_path} is missing): "
                "materialize it first"
            )
    try:
        if staged is None:
            normalized = normalize_day(
                day,
                raw_path,
                files.staged_normalized_users(day),
                previous_csv=files.committed_normalized_users(day),
                max_row_drop_fraction=limits.max_row_drop_fraction,
            )
        else:
            normalized = staged.normalized_or_raise()
    except RowDropRefused as refused:
        outcome.checks["row_drop_within_limit"] = (False, {"row_drop_fraction": refused.receipt.row_drop_fraction})
        outcome.refuse(
            "row_drop_within_limit",
            NORMALIZED_USERS,
            str(refused),
            max_row_drop_fraction=limits.max_row_drop_fraction,
            **refused.receipt.as_metadata(),
        )
        return
    except ValueError as error:
        fail_permanently(f"normalized_users {day}: {error}; the previous CSV was kept", error)
    outcome.normalized = normalized
    if normalized.previous_note:
        context.log.warning(normalized.previous_note)
    receipt, audit = normalized.receipt, normalized.audit
    if receipt.changed_since_previous:
        context.log.warning(
            f"normalized_users {day} changed since its previous materialization: +{receipt.added} "
            f"-{receipt.removed} ~{receipt.changed} rows (the API's answer for the seed changed)"
        )
    if audit.repeated_user_ids:
        context.log.error(
            f"normalized_users {day}: user_id (login.uuid) repeated on several rows: "
            f"{', '.join(audit.repeated_user_ids[:20])}{' ...' if len(audit.repeated_user_ids) > 20 else ''}"
        )
    # The raw file's users as this run wrote them when it fetched the day, else as read from it.
    raw_users = outcome.fetched.raw.users if outcome.fetched else normalized.summary.users_read
    checks = normalize_checks(normalized, raw_users, limits.max_row_drop_fraction)
    outcome.checks.update(checks)
    for name in refusing_checks(NORMALIZED_USERS, checks):
        figures = checks[name][1]
        described = ", ".join(f"{key}={value}" for key, value in figures.items())
        outcome.refuse(
            name,
            NORMALIZED_USERS,
            f"{day}: {described}; the previous raw file, CSV and table rows were kept",
            **figures,
        )


def run_load(context: dg.AssetExecutionContext, files: PartitionFiles, store: Warehouse, outcome: DayOutcome) -> None:
    """users_table for the day: the CSV (staged by this run, else committed) into the table; its checks."""
    day = outcome.day
    csv_path = files.normalized_users(day)
    if not csv_path.exists():
        fail_permanently(
            f"users_table {day}: normalized_users {day} is not materialized ({csv_path} is missing): materialize it first"
        )
    normalized = outcome.normalized
    try:
        loaded = load_day(store, day, csv_path, expected_hash=normalized.receipt.content_hash if normalized else None)
    except WarehouseUnavailableError as error:
        retry_or_fail(context, error)
    except TableMismatchError as mismatch:
        outcome.checks["rows_match_normalized_users"] = (
            mismatch.stored_rows == mismatch.loaded_rows,
            {"table_rows": mismatch.stored_rows, "csv_rows": mismatch.loaded_rows},
        )
        outcome.refuse(
            "table_matches_normalized_users",
            USERS_TABLE,
            str(mismatch),
            csv_content_hash=mismatch.loaded_hash,
            table_content_hash=mismatch.stored_hash,
        )
        return
    except Exception as error:  # noqa: BLE001 - anything but a transient warehouse error is permanent
        integrity = describe_integrity_error(error)
        if integrity:
            fail_permanently(
                f"users_table {day}: the warehouse refused the day's rows: {integrity}; the previous rows were "
                "kept (a permanent error, not retried)",
                error,
            )
        fail_permanently(f"users_table {day}: loading {csv_path} failed: {type(error).__name__}: {error}", error)
    outcome.loaded = loaded
    checks = load_checks(loaded, normalized)
    outcome.checks.update(checks)
    for name in refusing_checks(USERS_TABLE, checks):
        figures = checks[name][1]
        outcome.refuse(
            name, USERS_TABLE, f"{day}: " + ", ".join(f"{key}={value}" for key, value in figures.items()), **figures
        )


def _chain_spec(
    key: dg.AssetKey,
    description: str,
    kinds: set[str],
    upstream: dg.AssetKey | None = None,
    metadata: dict | None = None,
) -> dg.AssetSpec:
    """An asset of the day chain; skippable (a refused day records none). The ones after raw_users
    follow their upstream day by automation (materializing raw_users alone brings them along)."""
    return dg.AssetSpec(
        key,
        description=description,
        deps=[upstream] if upstream else [],
        group_name=GROUP,
        kinds=kinds,
        metadata=metadata,
        automation_condition=day_landed() if upstream else None,
        skippable=True,
    )


@dg.multi_asset(
    name="daily_users",
    specs=[
        _chain_spec(RAW_USERS, RAW_USERS_DESCRIPTION, {"python", "json"}),
        _chain_spec(
            NORMALIZED_USERS,
            NORMALIZED_USERS_DESCRIPTION,
            {"pandas", "csv"},
            upstream=RAW_USERS,
            metadata={"dagster/column_schema": _COLUMN_SCHEMA},
        ),
        _chain_spec(
            USERS_TABLE,
            USERS_TABLE_DESCRIPTION,
            {"sql", "table"},
            upstream=NORMALIZED_USERS,
            metadata={"dagster/column_schema": _COLUMN_SCHEMA, "dagster/table_name": TABLE},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(name, asset=asset, blocking=blocking)
        for asset, checks in CHECKS.items()
        for name, blocking in checks.items()
    ],
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    pool=USERS_API_POOL,
    # On the Celery executor, its own queue: the workers serving it cap the calls to the users API.
    op_tags=USERS_API_QUEUE_TAGS,
    retry_policy=RETRY_POLICY,
    can_subset=True,
)
def daily_users(
    context: dg.AssetExecutionContext,
    users_api: UsersApi,
    files: PartitionFiles,
    warehouse: WarehouseResource,
    day_limits: DayLimits,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The users day chain, one day after another: fetch (raw_users), normalize (normalized_users),
    load (users_table), for the selected assets; each day committed and recorded as a whole, or
    not at all. Materializing normalized_users alone re-normalizes the committed raw file;
    users_table alone reloads the committed CSV."""
    check_run_inputs(context)
    assets = [asset for asset in CHECKS if dg.AssetKey(asset) in context.selected_asset_keys]
    quarantine, max_rejected = False, 0.0
    if RAW_USERS in assets:
        try:
            quarantine, max_rejected = users_api.quarantines(), users_api.validated_max_rejected_fraction()
        except InvalidSettingError as error:
            fail_permanently(str(error), error)
    store = warehouse.open() if USERS_TABLE in assets else None
    run = DayChainRun(context, files, assets)
    if RAW_USERS in assets:
        breaker = users_api.breaker()
        run.shared[RAW_USERS] = {
            "source": users_api.source,
            "contract_violations": "quarantine" if quarantine else "fail",
        }
    if NORMALIZED_USERS in assets:
        run.shared[NORMALIZED_USERS] = {"dagster/column_schema": _COLUMN_SCHEMA}
    if USERS_TABLE in assets:
        run.shared[USERS_TABLE] = {
            "dagster/table_name": TABLE,
            "latest_view": LATEST_VIEW,
            "warehouse": store.display_url,
        }
    day = context.partition_keys[0]
    # A retry does not fetch again the days an earlier attempt committed (and recorded).
    resumed = committed_by_earlier_attempts(context, assets)
    if resumed:
        context.log.info(
            f"daily_users attempt {context.retry_number + 1}: already committed by an earlier attempt, not "
            f"fetched again: {', '.join(sorted(resumed))}"
        )
    try:
        with DaysAhead(
            [day for day in context.partition_keys if day not in resumed] if RAW_USERS in assets else [],
            lambda day: day_plan(
                files,
                day,
                quarantine=quarantine,
                normalize=NORMALIZED_USERS in assets,
                max_rejected=max_rejected,
                limits=day_limits,
            ),
            users_api.iter_pages,
            days_ahead=day_limits.days_ahead,
            on_message=context.log.warning,
        ) as days_ahead:
            for day in context.partition_keys:
                if day in resumed:
                    run.committed[day] = resumed[day]
                    run.recorded.add(day)
                    continue
                outcome = DayOutcome(day)
                staged = days_ahead.take(day) if RAW_USERS in assets else None
                if staged is not None:
                    run_fetch(context, users_api, files, outcome, staged, max_rejected=max_rejected)
                if NORMALIZED_USERS in assets and not outcome.refusals:
                    run_normalize(context, files, day_limits, outcome, staged)
                if USERS_TABLE in assets and not outcome.refusals:
                    run_load(context, files, store, outcome)
                if outcome.refusals:
                    days_ahead.close()
                    run.add_checks(outcome)
                    run.stop(day)
                    results = run.check_results(outcome.refusals)
                    yield from results
                    if not any(result in results for result in outcome.refusals):
                        # The refusing checks were left out of the selection: the day is refused all the same.
                        fail_permanently("; ".join(result.description for result in outcome.refusals))
                    return
                run.commit(outcome)
    except BaseException:
        # A permanent error, the last failed retry, a retry to come, or the run terminated: the
        # days committed so far are recorded, the day under way and every day staged ahead are
        # dropped (leaving the `with` stopped the workers first).
        run.stop(day)
        raise
    if RAW_USERS in assets:
        run.shared[RAW_USERS]["users_api_circuit"] = _describe_circuit(breaker)
    if USERS_TABLE in assets:
        run.shared[USERS_TABLE]["table_rows_all_days"] = store.count_rows()
    checks = run.check_results()
    for asset in assets:
        for done, metadata in run.committed.items():
            context.add_asset_metadata(metadata[asset], asset_key=asset, partition_key=done)
        yield dg.MaterializeResult(
            asset_key=asset,
            metadata=run.shared.get(asset, {}),
            check_results=[result for result in checks if result.asset_key == dg.AssetKey(asset)],
        )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    kinds={"pandas", "csv"},
    backfill_policy=daily_backfill_policy,
    deps=[
        NORMALIZED_USERS,
        dg.AssetDep("user_registry", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)),
    ],
    automation_condition=day_landed(),
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
        source = files.normalized_users(day)
        if not source.exists():
            fail_permanently(
                f"user_registry {day} needs normalized_users {day}, which is not materialized ({source} is missing): materialize it first"
            )
        previous = previous_registry(files, day, first_day)
        registry = update_registry(previous, read_normalized_csv(source), day)
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
        fail_permanently(f"user_registry starts on {first_day} (USER_PIPELINE_REGISTRY_START_DATE); {day} is before it")
    if day == first_day:
        return empty_registry()
    previous_day = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    if not files.user_registry(previous_day).exists():
        fail_permanently(
            f"user_registry {day} needs user_registry {previous_day}, which is not materialized: "
            f"materialize {previous_day} first, or backfill the range up to {day}"
        )
    return read_registry(files.user_registry(previous_day))
