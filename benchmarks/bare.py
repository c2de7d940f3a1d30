"""The daily users work without an orchestrator: what raw_users, normalized_users and users_table
do for the given days, with the project's plain functions, in this one process.

    USER_PIPELINE_API_URL=... USER_PIPELINE_USERS_PER_PARTITION=5000 USER_PIPELINE_DATA_DIR=... \\
    USER_PIPELINE_WAREHOUSE_URL=sqlite:///.../warehouse.sqlite python -m benchmarks.bare 2026-02-01 2026-02-02

Same settings (environment variables, defaults) and the same files as the assets. Per day, as
the assets do: fetch every page through the users API circuit breaker and write the raw JSON
Lines file; normalize it into the CSV, with the partition receipt (row fingerprints of the
previous and the new CSV, row-drop limit) taken before the new file replaces the old; replace the
day in the warehouse, with its receipt (the day's stored rows fingerprinted before and after);
and the reads the assets' checks and row counts do (count the raw lines, audit the CSV, count the
table's rows). What is left out is Dagster itself: definitions, run and event storage,
resources, metadata and the asset checks' bookkeeping. Prints one JSON line: rows per day.

Keep it in step with user_pipeline/users/assets.py: the benchmark compares the two.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from user_pipeline.users.api_client import RetrySettings, UsersApiClient
from user_pipeline.users.circuit_breaker import CircuitBreaker
from user_pipeline.users.normalize import (
    audit_normalized_csv,
    read_normalized_csv,
    write_normalized_csv,
)
from user_pipeline.users.raw_files import (
    count_raw_users,
    read_raw_users,
    write_raw_users,
)
from user_pipeline.users.receipts import make_receipt, row_fingerprints
from user_pipeline.users.warehouse import open_warehouse

LOAD_CHUNK_ROWS = 5000  # user_pipeline.users.assets.LOAD_CHUNK_ROWS, without importing Dagster


def settings() -> dict:
    data_dir = Path(os.environ.get("USER_PIPELINE_DATA_DIR", "data")).resolve()
    return {
        "api_url": os.environ.get("USER_PIPELINE_API_URL", "https://randomuser.me/api/"),
        "users": int(os.environ.get("USER_PIPELINE_USERS_PER_PARTITION", "100")),
        "page_size": int(os.environ.get("USER_PIPELINE_PAGE_SIZE", "5000")),
        "nationalities": os.environ.get("USER_PIPELINE_NATIONALITIES", ""),
        "timeout": int(os.environ.get("USER_PIPELINE_API_TIMEOUT_SECONDS", "30")),
        "max_attempts": int(os.environ.get("USER_PIPELINE_API_MAX_ATTEMPTS", "5")),
        "data_dir": data_dir,
        "warehouse_url": os.environ.get("USER_PIPELINE_WAREHOUSE_URL", f"sqlite:///{data_dir}/warehouse.sqlite"),
        "circuit_failures": int(os.environ.get("USER_PIPELINE_CIRCUIT_FAILURES", "5")),
        "circuit_cooldown": int(os.environ.get("USER_PIPELINE_CIRCUIT_COOLDOWN_SECONDS", "300")),
        "max_row_drop_fraction": float(os.environ.get("USER_PIPELINE_MAX_ROW_DROP_FRACTION", "0.2")),
    }


def run(days: list[str]) -> dict[str, int]:
    s = settings()
    warehouse = open_warehouse(s["warehouse_url"])
    rows = {}
    for day in days:
        raw_path = s["data_dir"] / "raw_users" / f"{day}.jsonl"
        csv_path = s["data_dir"] / "normalized_users" / f"{day}.csv"
        # raw_users: a client (one HTTP session) and a circuit breaker per day, as RandomUserApi makes.
        client = UsersApiClient(
            base_url=s["api_url"],
            page_size=s["page_size"],
            nationalities=s["nationalities"],
            timeout_seconds=s["timeout"],
            retry=RetrySettings(max_attempts=s["max_attempts"]),
            breaker=CircuitBreaker(
                s["data_dir"] / "state" / "users_api_circuit.json",
                failure_threshold=s["circuit_failures"],
                cooldown_seconds=s["circuit_cooldown"],
            ),
        )
        with client:
            write_raw_users(client.iter_pages(seed=day, users=s["users"]), raw_path)
        # normalized_users: its receipt against the previous CSV, then its checks.
        previous = row_fingerprints(read_normalized_csv(csv_path, chunk_rows=LOAD_CHUNK_ROWS)) if csv_path.exists() else None
        receipts = []

        def check_row_drop(written: Path, day=day, previous=previous, receipts=receipts) -> None:
            receipts.append(make_receipt(previous, row_fingerprints(read_normalized_csv(written, chunk_rows=LOAD_CHUNK_ROWS))))
            if receipts[0].row_drop_fraction > s["max_row_drop_fraction"]:
                raise SystemExit(f"{day}: {receipts[0].row_drop_fraction:.0%} fewer rows than the previous CSV")

        summary = write_normalized_csv(read_raw_users(raw_path), csv_path, day, before_commit=check_row_drop)
        audit = audit_normalized_csv(csv_path)
        if audit.missing_emails or audit.duplicate_emails or audit.plaintext_password_columns or audit.repeated_user_ids:
            raise SystemExit(f"{day}: normalized CSV fails its checks: {audit}")
        if audit.rows + summary.duplicates_dropped != count_raw_users(raw_path):
            raise SystemExit(f"{day}: CSV rows do not match the raw users")
        # users_table: the day replaced and read back in one transaction (content hash), its receipt, its checks.
        load = warehouse.replace_partition_verified(day, read_normalized_csv(csv_path, chunk_rows=LOAD_CHUNK_ROWS), LOAD_CHUNK_ROWS)
        make_receipt(load.previous, load.stored)
        stored = warehouse.count_rows(day)
        if stored != audit_normalized_csv(csv_path).rows:
            raise SystemExit(f"{day}: table rows do not match the CSV")
        rows[day] = stored
    warehouse.count_rows()
    return rows


def main(argv: list[str] | None = None) -> int:
    days = list(sys.argv[1:] if argv is None else argv)
    if not days:
        print("usage: python -m benchmarks.bare DAY [DAY ...]", file=sys.stderr)
        return 2
    print(json.dumps({"rows": run(days)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
