"""The cumulative user registry: every email seen up to a day, with when it was first and last seen.

Day D is day D-1's registry updated with day D's normalized users (Airflow's depends_on_past):
plain pandas, no Dagster.
"""

from pathlib import Path

import pandas as pd

from user_pipeline.users.atomic_files import atomic_write

REGISTRY_COLUMNS: dict[str, str] = {
    "email": "string",
    "user_id": "string",
    "first_seen": "string",
    "last_seen": "string",
    "days_seen": "Int64",
}


def empty_registry() -> pd.DataFrame:
    return pd.DataFrame(columns=list(REGISTRY_COLUMNS)).astype(REGISTRY_COLUMNS)


def read_registry(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=REGISTRY_COLUMNS, keep_default_na=False, na_values=[""], encoding="utf-8")


def update_registry(previous: pd.DataFrame, day_users: pd.DataFrame, day: str) -> pd.DataFrame:
    """Registry as of `day`: emails of the day get last_seen=day (first_seen=day if new), +1 day seen.

    The user_id is the latest day's; rows are ordered by email so a re-run writes the same bytes.
    """
    today = pd.DataFrame(
        {"email": day_users["email"].str.strip().str.lower(), "user_id": day_users["user_id"]}
    ).drop_duplicates("email")
    merged = previous.merge(today, on="email", how="outer", suffixes=("", "_today"), indicator=True)
    seen_today = merged["_merge"] != "left_only"
    merged["user_id"] = merged["user_id_today"].where(seen_today, merged["user_id"])
    merged["first_seen"] = merged["first_seen"].fillna(day)
    merged["last_seen"] = merged["last_seen"].where(~seen_today, day)
    merged["days_seen"] = merged["days_seen"].fillna(0) + seen_today.astype("Int64")
    registry = merged[list(REGISTRY_COLUMNS)].astype(REGISTRY_COLUMNS)
    return registry.sort_values("email", kind="stable").reset_index(drop=True)


def write_registry(registry: pd.DataFrame, path: Path) -> None:
    with atomic_write(path, encoding="utf-8") as handle:
        registry.to_csv(handle, index=False, lineterminator="\n")
