"""The fault catalogue behind docs/reliability.md: each fault, its outcome, what the operator sees,
and the test that proves it. `python -m user_pipeline_tests.reliability.catalogue --write` rewrites
the table in the doc; test_reliability_doc.py fails when the doc and this list disagree."""

import argparse
from pathlib import Path
from typing import NamedTuple

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- fault-table:begin -->", "<!-- fault-table:end -->"


class Fault(NamedTuple):
    fault: str
    outcome: str
    operator_sees: str
    evidence: str  # path::test (parametrized tests by function name)


API = "user_pipeline_tests/reliability/test_api_faults.py"
CRASH = "user_pipeline_tests/reliability/test_crashes.py"
STORAGE = "user_pipeline_tests/reliability/test_storage.py"
CONCURRENCY = "user_pipeline_tests/reliability/test_config_and_concurrency.py"
SECURITY = "user_pipeline_tests/reliability/test_security.py"
CORE = "user_pipeline_tests/acceptance/test_core_pipeline.py"
SPARK = "user_pipeline_tests/spark/test_assets.py"
DAYS = "user_pipeline_tests/reliability/test_trustworthy_days.py"
DAYS_AHEAD = "user_pipeline_tests/reliability/test_days_ahead_runs.py"
SPARK_JOB = "user_pipeline_tests/spark_jobs/test_ingest_users.py"
LOSSLESS = "user_pipeline_tests/acceptance/test_lossless_day.py"
LOSSLESS_UNIT = "user_pipeline_tests/users/test_lossless.py"
TRUST = "user_pipeline_tests/users/test_trustworthy_data.py"

FAULTS = [
    Fault(
        'API: HTTP 200 with `{"error": ...}`',
        "fails at once, no retry, previous day intact",
        "step `daily_users` failed: `users API answered HTTP 200 with an error for seed=... : 'Uh oh...'`",
        f"{API}::test_permanent_faults_fail_at_once_naming_what_is_wrong_and_keep_the_good_day",
    ),
    Fault(
        "API: 429 with `Retry-After`",
        "retried after the server's delay, then the same data as a clean run",
        "a warning per retry: `seed='YYYY-MM-DD' page=1: HTTP 429 ...; attempt 1 of 5, retrying in 1.00s`",
        f"{API}::test_transient_faults_recover_by_retry_to_exactly_the_good_data",
    ),
    Fault(
        "API: 429 without `Retry-After`",
        "retried with exponential backoff and jitter",
        "retry warnings, then success",
        f"{API}::test_transient_faults_recover_by_retry_to_exactly_the_good_data",
    ),
    Fault(
        "API: 500 / 502 / 503",
        "retried with backoff; the step retries too if the API stays down",
        "retry warnings naming the status; on the last attempt the failure names it",
        f"{API}::test_transient_faults_recover_by_retry_to_exactly_the_good_data",
    ),
    Fault(
        "API: connection refused",
        "retried until the API is back",
        "`connection failed: ...` retry warnings",
        f"{API}::test_a_refused_connection_recovers_once_the_api_is_back",
    ),
    Fault(
        "API: answer slower than the timeout",
        "retried",
        "`no answer within Ns` retry warnings",
        f"{API}::test_transient_faults_recover_by_retry_to_exactly_the_good_data",
    ),
    Fault(
        "API: an answer that never comes while each request may wait longer than the run may last",
        "the daemon's run monitoring stops the run at its maximum run time (`USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS`): "
        "its step is interrupted and not retried, its process exits, nothing of the day changes; the instance retries "
        "the run once",
        "`Exceeded maximum runtime of N seconds.`; in the run's log and the one alert: `daily_users_job run exceeded "
        "its maximum run time of N s (USER_PIPELINE_INGESTION_MAX_RUNTIME_SECONDS=N)`",
        "user_pipeline_tests/e2e/test_cli_triggers.py::"
        "test_a_hung_step_is_stopped_at_the_runs_maximum_run_time_with_one_alert_and_the_day_intact",
    ),
    Fault(
        "API: truncated JSON body",
        "retried (a cut body is a network fault)",
        "`invalid JSON (N bytes, ... at offset M)` retry warnings",
        f"{API}::test_transient_faults_recover_by_retry_to_exactly_the_good_data",
    ),
    Fault(
        "API: no `results` field",
        "fails at once, previous day intact",
        "`users API answer for seed=... has no 'results' field`",
        f"{API}::test_permanent_faults_fail_at_once_naming_what_is_wrong_and_keep_the_good_day",
    ),
    Fault(
        "API: a user without `email` / `login`",
        "fails at once, previous day intact",
        "`users API answer breaks the user contract: seed '...' page 2 results[0] (user 100 of the seed): email: missing (got nothing)`",
        f"{API}::test_permanent_faults_fail_at_once_naming_what_is_wrong_and_keep_the_good_day",
    ),
    Fault(
        "API: a user breaking the contract (`location.street` as text, `login.uuid` null or not a UUID, an email that is no address, non-numeric coordinates, a float postcode, a non-ISO date, an age as text, a missing object)",
        "fails at once, no retry, before any file is replaced: raw file, CSV and table as the previous good run left them",
        "`raw_users DAY: users API answer breaks the user contract: seed 'DAY' page 2 results[4] (user 104 of the seed): location.street: Input should be a valid dictionary ... (got 'Parliament St'); the previous raw file was kept`",
        f"{DAYS}::test_a_contract_violation_fails_the_day_at_once_and_replaces_nothing",
    ),
    Fault(
        'API: U+0000 in a text field (`"Null\\u0000Byte"`)',
        "refused by the contract like any violation: never truncated by a store",
        "`name.last: holds U+0000 (NUL), which PostgreSQL text cannot store`",
        f"{DAYS}::test_a_contract_violation_fails_the_day_at_once_and_replaces_nothing",
    ),
    Fault(
        'API: a key holding "." in any object of a user (`location["street.name"]` beside `location.street.name`, '
        "which flattening made one column, silently keeping one value)",
        "refused by the contract like any violation, naming the object and the key; quarantined with its reason",
        "`location: key 'street.name' holds '.', the separator of flattened field names (location.street.name "
        "would name two values) (got 'Other St')`",
        f"{DAYS}::test_a_value_that_would_be_changed_fails_the_day_naming_key_or_field_or_is_quarantined",
    ),
    Fault(
        "API: numeric text that float() reads but normalization would not store as sent (other scripts' digits "
        '`"٤٥.٥"` or `"４５"`, `"4_5"`, surrounding spaces, more digits than a float keeps, an underflow to 0; '
        "offsets and timestamps in other digits)",
        "refused by the contract naming the field; normalization reads coordinates with the contract's own "
        "`stored_float`, so what is accepted is stored as the same number",
        "`location.coordinates.latitude: a coordinate must be a number or numeric text in ASCII digits such as "
        "-65.9485 (got '٤٥.٥')`",
        f"{DAYS}::test_a_value_that_would_be_changed_fails_the_day_naming_key_or_field_or_is_quarantined",
    ),
    Fault(
        "API: users breaking the contract, with `USER_PIPELINE_CONTRACT_VIOLATIONS=quarantine`",
        "they are left out; the day lands without them",
        "`users_rejected` and `rejected_by_field` metadata; each user and its reasons in `data/rejects/DAY.jsonl` (without `login.password`)",
        f"{DAYS}::test_quarantine_leaves_violating_users_out_counts_them_and_writes_their_reasons",
    ),
    Fault(
        "Quarantine leaving out more than `USER_PIPELINE_MAX_REJECTED_FRACTION` of a day",
        "blocking check fails; raw file, CSV and table as before",
        "`rejected_share_within_limit` failed: `DAY: 30 of 300 users break the contract (10.00% > 5.00%); the previous raw file was kept`",
        f"{DAYS}::test_quarantine_past_the_limit_fails_its_check_and_keeps_the_good_day",
    ),
    Fault(
        "A re-run refused by `row_drop_within_limit`",
        "raw file, CSV and table as the previous good run left them (the new raw file was only staged)",
        "`row_drop_within_limit` failed",
        f"{DAYS}::test_a_re_run_refused_by_row_drop_keeps_raw_file_csv_and_table",
    ),
    Fault(
        "The warehouse refuses the day's rows (NOT NULL, UNIQUE, CHECK)",
        "fails at once, no retry; table, raw file and CSV as before",
        "`users_table DAY: the warehouse refused the day's rows: NOT NULL constraint failed: users.user_id (column users.user_id); ... not retried`",
        f"{DAYS}::test_not_null_in_the_warehouse_fails_at_once_naming_day_and_column",
    ),
    Fault(
        "PostgreSQL refuses the day's rows (NOT NULL)",
        "fails at once, no retry; the previous rows kept",
        '`users_table DAY: the warehouse refused the day\'s rows: null value in column "user_id" ... (column user_id); ... not retried`',
        f"{DAYS}::test_not_null_in_postgresql_fails_at_once_naming_day_and_column",
    ),
    Fault(
        "A multi-day run refused on day N by the table",
        "days before N committed in all three layers and recorded as materialized; day N and later unchanged",
        "the step fails naming day N; materializations of the three assets for the days before N",
        f"{DAYS}::test_a_multi_day_run_refused_by_the_table_on_day_n_commits_and_records_the_days_before",
    ),
    Fault(
        "A multi-day run refused on day N by the contract, the row-drop limit or the table (one step goes day by day through fetch, normalize, load)",
        "the days before N are committed in every layer and recorded as materialized for raw_users, normalized_users and users_table; nothing of day N or later is recorded, and every layer of those days is as the previous good run left them",
        "the step `daily_users` fails naming day N; materializations of all three assets for the days before N only",
        f"{DAYS}::test_a_multi_day_run_refused_on_day_2_records_day_1_only_and_keeps_days_2_and_3",
    ),
    Fault(
        "A multi-day run meeting a transient API error (5xx) on day N",
        "the step retries and goes on from day N: the days before N, committed by the first attempt, are not fetched again",
        "`STEP_UP_FOR_RETRY` for `daily_users`; `already committed by an earlier attempt, not fetched again: ...` in the run log",
        f"{DAYS}::test_a_step_retry_does_not_fetch_again_the_days_an_earlier_attempt_committed",
    ),
    Fault(
        "A multi-day run with days staged ahead (`USER_PIPELINE_DAYS_AHEAD`) refused or failed on day N by "
        "the table, the contract or the row-drop limit, while later days were already fetched and staged "
        "by worker processes",
        "the days before N committed and recorded; the later days' staged files dropped, never committed: day N "
        "and every later day as the previous good run left them in every layer",
        "the step fails naming day N, as without days ahead",
        f"{DAYS_AHEAD}::test_a_range_stopped_on_day_2_keeps_day_2_and_every_later_day_a_worker_staged",
    ),
    Fault(
        "A multi-day run interrupted (the interrupt Dagster's termination delivers) while a worker process "
        "stages a later day",
        "the workers are stopped with the attempt; the days committed before are kept and recorded, the day under "
        "way and the days staged ahead are dropped; the step's retry goes on from that day",
        "`daily_users stopped at DAY; committed and recorded before it: ...`, then `STEP_UP_FOR_RETRY`; no worker "
        "process is left",
        f"{DAYS_AHEAD}::test_a_range_run_interrupted_mid_range_stops_its_workers_and_its_retry_goes_on_from_the_day_it_stopped_at",
    ),
    Fault(
        "A multi-day run of `raw_users,normalized_users` refused by `row_drop_within_limit` on day N",
        "days before N committed (raw file and CSV) and recorded as materialized by `normalized_users`; day N as before",
        "`row_drop_within_limit` failed for day N",
        f"{DAYS}::test_a_multi_day_run_refused_by_row_drop_on_day_n_records_the_days_committed_before",
    ),
    Fault(
        "`USER_PIPELINE_CONTRACT_VIOLATIONS=maybe`, `USER_PIPELINE_MAX_REJECTED_FRACTION=1.5`",
        "the run fails before any request or file, not retried",
        "`invalid contract_violations='maybe': expected 'fail' or 'quarantine'`",
        f"{DAYS}::test_a_bad_contract_setting_fails_before_any_request",
    ),
    Fault(
        "API: an extra field",
        "accepted: kept in raw_users, ignored downstream",
        "a successful run",
        f"{API}::test_an_extra_field_is_kept_in_raw_and_ignored_downstream",
    ),
    Fault(
        "API: empty `results`",
        "fails at once, previous day intact",
        "`users API returned 0 users for seed=... page=1, asked for N`",
        f"{API}::test_permanent_faults_fail_at_once_naming_what_is_wrong_and_keep_the_good_day",
    ),
    Fault(
        "API: fewer users than asked",
        "fails at once, previous day intact",
        "`returned 7 users ..., asked for 100`",
        f"{API}::test_permanent_faults_fail_at_once_naming_what_is_wrong_and_keep_the_good_day",
    ),
    Fault(
        "API: a non-UTF-8 byte",
        "fails at once, previous day intact",
        "`users API answer for seed=... is not UTF-8: bad byte at offset N`",
        f"{API}::test_permanent_faults_fail_at_once_naming_what_is_wrong_and_keep_the_good_day",
    ),
    Fault(
        "SIGKILL while writing raw JSON",
        "previous file intact; the dead writer's hidden temp file is ignored, then removed by the re-run",
        "a run that ended abruptly (run retries relaunch it once)",
        f"{CRASH}::test_killed_while_writing_raw_json",
    ),
    Fault(
        "SIGKILL while writing the CSV",
        "previous CSV intact, re-run byte-identical",
        "as above",
        f"{CRASH}::test_killed_while_writing_the_csv",
    ),
    Fault(
        "SIGKILL while loading the table",
        "the transaction never commits: the previous rows, all of them",
        "as above",
        f"{CRASH}::test_killed_while_loading_the_table",
    ),
    Fault(
        "SIGKILL of a full run while loading the table (the API's answer changed)",
        "raw file, CSV and table as the previous good run left them: the new files were only staged",
        "as above",
        f"{CRASH}::test_a_full_run_killed_while_loading_the_table_leaves_all_three_layers_as_they_were",
    ),
    Fault(
        "SIGKILL while writing Parquet",
        "previous Parquet partition intact; Spark's hidden staging folder is not read as data",
        "as above",
        f"{CRASH}::test_killed_while_writing_parquet",
    ),
    Fault(
        "A corrupt CSV for one day of a Spark range",
        "the Spark job fails before writing, no Parquet partition changes; in a run, the step fails as below",
        "the error names the CSV file and the reason",
        f"{SPARK_JOB}::test_corrupt_day_fails_naming_file_and_keeps_output",
    ),
    Fault(
        "A day's CSV missing from a Spark range",
        "the run fails at once, no retry, no Parquet partition changes",
        "step `users_parquet` failed: `Missing input CSV for 1 day(s) of the requested range: .../2026-11-04.csv`, also the job's own error line in the run log (through Dagster Pipes)",
        f"{SPARK}::test_a_missing_day_fails_the_run_at_once_naming_it_and_keeps_the_parquet",
    ),
    Fault(
        "SQLite warehouse locked by another writer",
        "waits `lock_timeout_seconds`, then the step retries (backoff) and succeeds",
        "`warehouse sqlite:///... unavailable: database is locked (waited 1s for the lock)`",
        f"{STORAGE}::test_a_locked_sqlite_warehouse_is_a_clear_error_then_a_successful_retry",
    ),
    Fault(
        "PostgreSQL stopped",
        "step retried 3 times, then fails; nothing lost",
        "`warehouse postgresql://user@host:port/db unavailable: connection failed: ... Connection refused (attempt 4 of 4)`",
        f"{STORAGE}::test_a_postgres_down_during_a_run_fails_it_after_retries_and_loses_nothing",
    ),
    Fault(
        "PostgreSQL restarted between two runs",
        "the next run just works",
        "nothing",
        f"{STORAGE}::test_a_stopped_postgres_is_a_clear_error_and_a_restarted_one_works",
    ),
    Fault(
        "Two runs of the same day at once",
        "exactly one run's data: files renamed whole, table loads serialized (the daemon's queue also holds the second run)",
        "two successful runs",
        f"{CONCURRENCY}::test_two_runs_of_one_day_at_once_leave_exactly_one_runs_data",
    ),
    Fault("Ten days at once", "all land", "ten successful runs", f"{CONCURRENCY}::test_ten_days_at_once_all_land"),
    Fault(
        "`results` 0, -1 / page size 5001 / a base URL that is not a URL / an unknown nationality",
        "the run fails before any request or file",
        "`USER_PIPELINE_USERS_PER_PARTITION=0: expected an integer from 1 to 1000000 (sets users_api.users_per_partition)`; in a run's config: `users_per_partition: Input should be greater than or equal to 1`",
        f"{CORE}::test_a_bad_setting_is_refused_before_any_data_is_touched",
    ),
    Fault(
        "`USER_PIPELINE_USERS_PER_PARTITION=abc`",
        "the run fails before any request or file",
        '`Value stored in env variable "USER_PIPELINE_USERS_PER_PARTITION" cannot be coerced into an int`',
        f"{CONCURRENCY}::test_bad_configuration_from_the_cli_fails_before_any_data_is_touched",
    ),
    Fault(
        "A warehouse URL with an unknown scheme",
        "the run fails before any resource is set up or step runs, not retried",
        "`USER_PIPELINE_WAREHOUSE_URL='mysql://...': expected a sqlite:///path or postgresql://... URL (sets warehouse.url)` (password redacted)",
        f"{CONCURRENCY}::test_bad_configuration_from_the_cli_fails_before_any_data_is_touched",
    ),
    Fault(
        "An invalid partition key",
        "refused before the run starts",
        "`Could not find a partition with key 2026-02-30`",
        f"{CONCURRENCY}::test_bad_configuration_from_the_cli_fails_before_any_data_is_touched",
    ),
    Fault(
        "Plaintext passwords from the API",
        "dropped at fetch: in no file, table, log or metadata",
        "only `password_salt`, `password_sha256`",
        f"{SECURITY}::test_no_plaintext_password_in_any_file_table_or_log",
    ),
    Fault(
        "Names like `O'Brien`, `Robert'); DROP TABLE users;--`",
        "stored verbatim (bound parameters only)",
        "nothing",
        f"{SECURITY}::test_names_that_look_like_sql_are_stored_verbatim_by_the_table_asset",
    ),
    Fault(
        "The PostgreSQL password (even if put in the URL)",
        "never in the event log or metadata",
        "`postgresql://user:***@host/db`",
        f"{SECURITY}::test_the_postgres_password_never_reaches_logs_or_metadata",
    ),
    # Issue #12, trustworthy data: lossless values, one email identity, unique keys, literal Spark paths.
    Fault(
        "Text with CR, LF, CRLF, tab, VT, U+2028, quotes, `\\N`, backslashes, emoji, RTL, combining marks, 100,000 characters",
        "reaches raw, CSV, table (SQLite and PostgreSQL) and Parquet byte for byte",
        "a successful run",
        f"{LOSSLESS}::test_hostile_values_reach_csv_table_and_parquet_exactly",
    ),
    Fault(
        '`id.name = ""` (empty, not missing)',
        'stays `""` in the CSV, the table and Parquet; null stays null',
        "a successful run",
        f"{TRUST}::test_a_carriage_return_and_an_empty_id_name_reach_the_table_exactly",
    ),
    Fault(
        "A value the warehouse would change (e.g. SQLite dropping the sign of -0.0)",
        "the day's load is rolled back: the previous rows stay",
        "blocking check `table_matches_normalized_users` failed: `users DAY: the rows read back (N rows, content hash ...) differ from the normalized_users CSV (N rows, content hash ...); the load was rolled back`",
        f"{LOSSLESS_UNIT}::test_a_value_the_store_changes_rolls_the_load_back",
    ),
    Fault(
        "U+0000 in text bound for PostgreSQL",
        "the load fails naming the user and the column, never truncated; the previous rows stay",
        "`DAY user ID: last_name holds U+0000, which PostgreSQL text cannot store`",
        f"{LOSSLESS_UNIT}::test_postgres_refuses_u0000_naming_the_user_and_column_and_keeps_the_day",
    ),
    Fault(
        "One email in different case or spacing (`Case.Test@Example.com`, `case.test@example.com`)",
        "one identity (`email_key`: trimmed, case-folded) for the in-day dedup, the registry, `users_latest` and the unique index; `email` keeps the address as sent",
        "a successful run",
        f"{TRUST}::test_one_email_identity_in_dedup_registry_and_users_latest",
    ),
    Fault(
        "Two users sharing a `login.uuid` in one day",
        "blocking check `user_ids_unique` fails, the table is not loaded; a re-run once the API stops repeating it just works (receipts diff repeated ids)",
        "`user_ids_unique` failed for DAY: `repeated_user_ids=ID, repeated_user_id_count=1`",
        f"{TRUST}::test_a_repeated_user_id_fails_the_blocking_check_naming_it_and_a_rerun_without_it_works",
    ),
    Fault(
        "A data directory named like a glob (`data dir [v1]`, `{a,b}`, `*`, `?`, `\\`)",
        "Spark reads exactly the given files (glob characters escaped), never a look-alike",
        "a successful run; a bad file is named: `Invalid input CSV /.../data dir [v1]/DAY.csv: ...`",
        f"{SPARK_JOB}::test_hostile_values_in_a_glob_like_folder_reach_parquet_exactly",
    ),
]


def render_table() -> str:
    lines = ["| fault | outcome | what the operator sees | evidence |", "| --- | --- | --- | --- |"]
    for fault in FAULTS:
        path, test = fault.evidence.split("::")
        lines.append(f"| {fault.fault} | {fault.outcome} | {fault.operator_sees} | `{Path(path).name}::{test}` |")
    return "\n".join(lines)


def doc_with_table(doc: str) -> str:
    before, rest = doc.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return f"{before}{BEGIN}\n{render_table()}\n{END}{after}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {DOC}")
    if parser.parse_args().write:
        DOC.write_text(doc_with_table(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(render_table())
