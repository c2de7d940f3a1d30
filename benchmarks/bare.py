"""The daily users work without an orchestrator: the per-day functions `daily_users` calls
(user_pipeline/users/days.py: fetch_day, normalize_day, load_day), for the given days, in this one
process.

    USER_PIPELINE_API_URL=... USER_PIPELINE_USERS_PER_PARTITION=5000 USER_PIPELINE_DATA_DIR=... \\
    USER_PIPELINE_WAREHOUSE_URL=sqlite:///.../warehouse.sqlite python -m benchmarks.bare 2026-02-01 2026-02-02

Same settings (environment variables, defaults) and the same files as the assets; the same
functions, so nothing here mirrors the assets' work. What is left out is Dagster itself:
definitions, run and event storage, resources, the run's staging and commit of a day's files,
metadata and the asset checks' bookkeeping. A day refused by a blocking check stops the script
(exit status 1) as it stops the run. Prints one JSON line: rows per day.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from user_pipeline.users.api_client import RetrySettings, UsersApiClient
from user_pipeline.users.circuit_breaker import CircuitBreaker
from user_pipeline.users.circuit_store import circuit_store_for
from user_pipeline.users.days import (
    CheckResults,
    RowDropRefused,
    SamePassCsv,
    fetch_day,
    load_checks,
    load_day,
    normalize_checks,
    normalize_day,
    refusing_checks,
)
from user_pipeline.users.setting_models import users_setting
from user_pipeline.users.warehouse import open_warehouse


def setting_value(env_var: str) -> object:
    """The value the environment sets (the declared default when unset); a bad one stops the
    script with the line a run would fail with, naming the variable and its bounds."""
    setting = users_setting(env_var)
    if problem := setting.problem(os.environ):
        raise SystemExit(problem)
    return setting.value(os.environ)


def settings() -> dict:
    """The settings the assets would get, read from the environment by the product's own
    declarations (user_pipeline/users/setting_models.py: the same variables, defaults and bounds,
    which user_pipeline/settings.py binds for the definitions), without importing Dagster."""
    data_dir = Path(setting_value("USER_PIPELINE_DATA_DIR")).resolve()
    return {
        "api_url": setting_value("USER_PIPELINE_API_URL"),
        "users": setting_value("USER_PIPELINE_USERS_PER_PARTITION"),
        "page_size": setting_value("USER_PIPELINE_PAGE_SIZE"),
        "nationalities": setting_value("USER_PIPELINE_NATIONALITIES"),
        "timeout": setting_value("USER_PIPELINE_API_TIMEOUT_SECONDS"),
        "max_attempts": setting_value("USER_PIPELINE_API_MAX_ATTEMPTS"),
        "data_dir": data_dir,
        "warehouse_url": setting_value("USER_PIPELINE_WAREHOUSE_URL") or f"sqlite:///{data_dir}/warehouse.sqlite",
        "circuit_failures": setting_value("USER_PIPELINE_CIRCUIT_FAILURES"),
        "circuit_cooldown": setting_value("USER_PIPELINE_CIRCUIT_COOLDOWN_SECONDS"),
        "max_row_drop_fraction": setting_value("USER_PIPELINE_MAX_ROW_DROP_FRACTION"),
    }


def run(days: list[str]) -> dict[str, int]:
    s = settings()
    warehouse = open_warehouse(s["warehouse_url"])
    rows = {}
    for day in days:
        raw_path = s["data_dir"] / "raw_users" / f"{day}.jsonl"
        csv_path = s["data_dir"] / "normalized_users" / f"{day}.csv"
        # A client (one HTTP session) and a circuit breaker per day, as RandomUserApi makes.
        client = UsersApiClient(
            base_url=s["api_url"],
            page_size=s["page_size"],
            nationalities=s["nationalities"],
            timeout_seconds=s["timeout"],
            retry=RetrySettings(max_attempts=s["max_attempts"]),
            breaker=CircuitBreaker(
                circuit_store_for(warehouse),
                source=s["api_url"],
                failure_threshold=s["circuit_failures"],
                cooldown_seconds=s["circuit_cooldown"],
            ),
        )
        # The CSV is written in the same pass as the raw file, as daily_users does when it runs both.
        same_pass = SamePassCsv(day, csv_path)
        with client:
            fetched = fetch_day(day, client.iter_pages(seed=day, users=s["users"]), raw_path, same_pass=same_pass)
        try:
            normalized = normalize_day(
                day,
                raw_path,
                csv_path,
                previous_csv=csv_path,
                max_row_drop_fraction=s["max_row_drop_fraction"],
                same_pass=same_pass,
            )
        except RowDropRefused as refused:
            raise SystemExit(str(refused)) from None
        refuse(day, "normalized_users", normalize_checks(normalized, fetched.raw.users, s["max_row_drop_fraction"]))
        loaded = load_day(warehouse, day, csv_path, expected_hash=normalized.receipt.content_hash)
        refuse(day, "users_table", load_checks(loaded, normalized))
        rows[day] = loaded.rows_stored
    warehouse.count_rows()
    return rows


def refuse(day: str, asset: str, results: CheckResults) -> None:
    """Stops the script, as the run stops, when a blocking check of the day failed."""
    if failed := refusing_checks(asset, results):
        raise SystemExit(f"{day}: {asset} fails " + "; ".join(f"{name} {results[name][1]}" for name in failed))


def main(argv: list[str] | None = None) -> int:
    days = list(sys.argv[1:] if argv is None else argv)
    if not days:
        print("usage: python -m benchmarks.bare DAY [DAY ...]", file=sys.stderr)
        return 2
    print(json.dumps({"rows": run(days)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
