"""The warehouse table on real SQLite and PostgreSQL: partition replace, the latest view, safe SQL."""

import json

import pandas as pd
import pytest

from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.users.normalize import normalize_users
from user_pipeline.users.warehouse import open_warehouse, redact_url
from user_pipeline_tests.conftest import FIXTURES_DIR

DAY = "2026-11-23"


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request, tmp_path):
    if request.param == "sqlite":
        return open_warehouse(f"sqlite:///{tmp_path}/warehouse.sqlite")
    return open_warehouse(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def recorded_frame() -> pd.DataFrame:
    users = json.loads((FIXTURES_DIR / "seed-2026-11-23_results-100.json").read_text(encoding="utf-8"))["results"]
    return normalize_users(users, DAY)


def for_day(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame.assign(partition_date=day).astype({"partition_date": "string"})


def by_email(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("email").reset_index(drop=True)


def test_a_partition_round_trips_exactly(warehouse, recorded_frame):
    assert warehouse.replace_partition(DAY, [recorded_frame[:60], recorded_frame[60:]]) == 100
    pd.testing.assert_frame_equal(warehouse.read_partition(DAY), by_email(recorded_frame))


def test_replacing_a_partition_twice_leaves_one_runs_rows(warehouse, recorded_frame):
    warehouse.replace_partition(DAY, [recorded_frame])
    first = warehouse.read_partition(DAY)
    warehouse.replace_partition(DAY, [recorded_frame])
    pd.testing.assert_frame_equal(warehouse.read_partition(DAY), first)
    assert warehouse.count_rows() == 100


def test_replacing_one_day_leaves_the_other_days_alone(warehouse, recorded_frame):
    warehouse.replace_partition("2026-11-22", [for_day(recorded_frame, "2026-11-22")])
    warehouse.replace_partition(DAY, [recorded_frame])
    warehouse.replace_partition(DAY, [recorded_frame[:10]])
    assert warehouse.count_rows("2026-11-22") == 100
    assert warehouse.count_rows(DAY) == 10


def test_a_load_failing_mid_way_leaves_the_previous_rows(warehouse, recorded_frame):
    warehouse.replace_partition(DAY, [recorded_frame])
    before = warehouse.read_partition(DAY)

    def chunks_then_crash():
        yield recorded_frame[:30]
        raise OSError("disk vanished while reading the CSV")

    with pytest.raises(OSError, match="disk vanished"):
        warehouse.replace_partition(DAY, chunks_then_crash())
    pd.testing.assert_frame_equal(warehouse.read_partition(DAY), before)


def test_rows_of_another_day_are_refused(warehouse, recorded_frame):
    with pytest.raises(ValueError, match="rows for 2026-11-23 include partition_date '2026-11-22'"):
        warehouse.replace_partition(DAY, [for_day(recorded_frame, "2026-11-22")])
    assert warehouse.count_rows() == 0


def test_hostile_names_are_stored_verbatim(warehouse, recorded_frame):
    hostile = recorded_frame[:2].copy()
    hostile["last_name"] = ["O'Brien", "Robert'); DROP TABLE users;--"]
    warehouse.replace_partition(DAY, [hostile])
    assert sorted(warehouse.read_partition(DAY)["last_name"]) == ["O'Brien", "Robert'); DROP TABLE users;--"]


def test_the_latest_view_has_one_row_per_email_from_the_latest_day(warehouse, recorded_frame):
    older = for_day(recorded_frame, "2026-11-22").assign(city="Older")
    warehouse.replace_partition("2026-11-22", [older])
    warehouse.replace_partition(DAY, [recorded_frame[:40]])
    latest = warehouse.read_latest()
    assert len(latest) == 100
    assert latest["email"].is_unique
    from_latest_day = latest[latest["email"].isin(recorded_frame[:40]["email"])]
    assert set(from_latest_day["partition_date"]) == {DAY}
    assert "Older" not in set(from_latest_day["city"])
    assert set(latest[~latest["email"].isin(recorded_frame[:40]["email"])]["city"]) == {"Older"}


def test_an_unknown_scheme_is_refused_with_the_password_redacted():
    with pytest.raises(InvalidSettingError) as raised:
        open_warehouse("mysql://user:hunter2@db:3306/users")
    assert "warehouse_url" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_redact_url_hides_only_the_password():
    assert redact_url("postgresql://app:s3cret@db:5432/users") == "postgresql://app:***@db:5432/users"
    assert redact_url("postgresql://app@db/users") == "postgresql://app@db/users"


def test_a_table_made_before_email_key_gets_the_column_the_keys_and_the_unique_index(warehouse, recorded_frame):
    """Upgrading: rows loaded by the previous schema (key: partition_date + email) keep working."""
    older = [name for name in recorded_frame.columns if name != "email_key"]
    date_type = "TEXT" if warehouse.url.startswith("sqlite") else "DATE"
    columns = ", ".join(f"{name} {date_type if name == 'partition_date' else 'TEXT'}" for name in older)
    warehouse._schema_ready = True  # write the older schema by hand, as the previous release did
    with warehouse._transaction(write=True) as cursor:
        cursor.execute(f"CREATE TABLE users ({columns}, PRIMARY KEY (partition_date, email))")
        cursor.execute(
            f"INSERT INTO users (partition_date, user_id, email) VALUES ({warehouse._param}, {warehouse._param}, {warehouse._param})",
            ("2026-11-01", "old-1", " Old.User@Example.com"),
        )
    upgraded = open_warehouse(warehouse.url)
    latest = upgraded.read_latest()
    assert latest[["user_id", "email", "email_key"]].values.tolist() == [
        ["old-1", " Old.User@Example.com", "old.user@example.com"]
    ]
    upgraded.replace_partition(DAY, [recorded_frame])
    assert len(upgraded.read_latest()) == 101
    duplicate = recorded_frame[:2].assign(email_key=recorded_frame["email_key"].iloc[0])
    with pytest.raises(Exception, match="(?i)unique"):
        upgraded.replace_partition(DAY, [duplicate])
