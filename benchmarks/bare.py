"""The daily users work without an orchestrator: the per-day functions `daily_users` calls
(user_pipeline/users/days.py: fetch_day, normalize_day, load_day), for the given days, in this one
process.

    USER_PIPELINE_API_URL=... USER_PIPELINE_USERS_PER_PARTITION=5000 USER_PIPELINE_DATA_DIR=... \\
    USER_PIPELINE_WAREHOUSE_URL=sqlite:///.../warehouse.sqlite python -m benchmarks.bare 2026-02-01 2026-02-02

Same settings (environment variables, defaults) and the same files as the assets; the same
functions, so nothing here mirrors the assets' work, and the same staging of days ahead
(user_pipeline/users/days_ahead.py, USER_PIPELINE_DAYS_AHEAD). What is left out is Dagster itself:
definitions, run and event storage, resources, the run's staging and commit of a day's files,
metadata and the asset checks' bookkeeping. A day refused by a blocking check stops the script
(exit status 1) as it stops the run. Prints one JSON line: rows per day.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from user_pipeline.users.api_client import RetrySettings, UsersApiClient, UsersPage
from user_pipeline.users.circuit_breaker import CircuitBreaker
from user_pipeline.users.circuit_store import circuit_store_for
from user_pipeline.users.days import (
    CheckResults,
    RowDropRefused,
    load_checks,
    load_day,
    normalize_checks,
    refusing_checks,
)
from user_pipeline.users.days_ahead import DayPlan, DaysAhead
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
        "days_ahead": setting_value("USER_PIPELINE_DAYS_AHEAD"),
    }


def run(days: list[str]) -> dict[str, int]:
    s = settings()
    warehouse = open_warehouse(s["warehouse_url"])

    def pages(day: str, on_retry) -> Iterator[UsersPage]:
        # A client (one HTTP session) and a circuit breaker per day, as RandomUserApi makes.
        client = UsersApiClient(
            base_url=s["api_url"],
            page_size=s["page_size"],
            nationalities=s["nationalities"],
            timeout_seconds=s["timeout"],
            retry=RetrySettings(max_attempts=s["max_attempts"]),
            on_retry=on_retry,
            breaker=CircuitBreaker(
                circuit_store_for(warehouse),
                source=s["api_url"],
                failure_threshold=s["circuit_failures"],
                cooldown_seconds=s["circuit_cooldown"],
            ),
        )
        with client:
            yield from client.iter_pages(seed=day, users=s["users"])

    def plan(day: str) -> DayPlan:
        # No staging: the script writes the committed files (a refused day stops it all the same).
        csv_path = s["data_dir"] / "normalized_users" / f"{day}.csv"
        return DayPlan(
            day,
            raw_path=s["data_dir"] / "raw_users" / f"{day}.jsonl",
            rejects_path=None,
            # The CSV is written in the same pass as the raw file, as daily_users does when it runs both.
            csv_path=csv_path,
            previous_csv=csv_path,
            max_rejected_fraction=0.0,
            max_row_drop_fraction=s["max_row_drop_fraction"],
        )

    rows = {}
    # The same staging of days as daily_users': later days fetched and normalized ahead in worker
    # processes (USER_PIPELINE_DAYS_AHEAD), each day loaded here in date order.
    with DaysAhead(days, plan, pages, days_ahead=s["days_ahead"], on_message=log) as days_ahead:
        for day in days:
            staged = days_ahead.take(day)
            fetched = staged.fetched_or_raise()
            try:
                normalized = staged.normalized_or_raise()
            except RowDropRefused as refused:
                raise SystemExit(str(refused)) from None
            refuse(day, "normalized_users", normalize_checks(normalized, fetched.raw.users, s["max_row_drop_fraction"]))
            loaded = load_day(warehouse, day, normalized.path, expected_hash=normalized.receipt.content_hash)
            refuse(day, "users_table", load_checks(loaded, normalized))
            rows[day] = loaded.rows_stored
    warehouse.count_rows()
    return rows


def log(message: str) -> None:
    print(message, file=sys.stderr)


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
