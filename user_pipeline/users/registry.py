"""The cumulative user registry: every email seen up to a day, with when it was first and last seen.

Day D is day D-1's registry updated with day D's normalized users (Airflow's depends_on_past):
plain pandas, no Dagster. Emails are identified by their key (`normalize.email_keys`: trimmed,
case-folded), so `Case.Test@Example.com` one day and `case.test@example.com` the next are one
entry seen on two days; `email` is the address as the latest day sent it. The file is in the
`csv_format` format, like normalized_users.
"""

from pathlib import Path

import pandas as pd

from user_pipeline.shared.atomic_files import atomic_write
from user_pipeline.users.csv_format import read_csv, read_header, write_csv
from user_pipeline.users.normalize import email_keys

REGISTRY_COLUMNS: dict[str, str] = {
    "email_key": "string",
    "email": "string",
    "user_id": "string",
    "first_seen": "string",
    "last_seen": "string",
    "days_seen": "Int64",
}


def empty_registry() -> pd.DataFrame:
    return pd.DataFrame(columns=list(REGISTRY_COLUMNS)).astype(REGISTRY_COLUMNS)


def read_registry(path: Path) -> pd.DataFrame:
    """A registry file; one written before `email_key` existed gets its keys from its emails."""
    if "email_key" in read_header(path):
        return read_csv(path, REGISTRY_COLUMNS)
    older = {name: dtype for name, dtype in REGISTRY_COLUMNS.items() if name != "email_key"}
    registry = read_csv(path, older)
    registry.insert(0, "email_key", email_keys(registry["email"]))
    return registry.astype(REGISTRY_COLUMNS)


def update_registry(previous: pd.DataFrame, day_users: pd.DataFrame, day: str) -> pd.DataFrame:
    """Registry as of `day`: email keys of the day get last_seen=day (first_seen=day if new), +1 day seen.

    The email as sent and the user_id are the latest day's; rows are ordered by email key so a
    re-run writes the same bytes.
    """
    keys = day_users["email_key"] if "email_key" in day_users else email_keys(day_users["email"].astype("string"))
    today = pd.DataFrame(
        {
            "email_key": keys.to_numpy(),
            "email": day_users["email"].to_numpy(),
            "user_id": day_users["user_id"].to_numpy(),
        }
    ).drop_duplicates("email_key")
    merged = previous.merge(today, on="email_key", how="outer", suffixes=("", "_today"), indicator=True)
    seen_today = merged["_merge"] != "left_only"
    merged["email"] = merged["email_today"].where(seen_today, merged["email"])
    merged["user_id"] = merged["user_id_today"].where(seen_today, merged["user_id"])
    merged["first_seen"] = merged["first_seen"].fillna(day)
    merged["last_seen"] = merged["last_seen"].where(~seen_today, day)
    merged["days_seen"] = merged["days_seen"].fillna(0) + seen_today.astype("Int64")
    registry = merged[list(REGISTRY_COLUMNS)].astype(REGISTRY_COLUMNS)
    return registry.sort_values("email_key", kind="stable").reset_index(drop=True)


def write_registry(registry: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as handle:
        write_csv(handle, registry, REGISTRY_COLUMNS)
