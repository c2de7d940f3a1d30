"""The user registry (depends_on_past): day D is day D-1's registry plus day D's users, never out of order."""

import dagster as dg
import pandas as pd

from user_pipeline.users.assets import daily_users, user_registry
from user_pipeline.users.normalize import read_normalized_csv
from user_pipeline.users.registry import empty_registry, read_registry, update_registry, write_registry
from user_pipeline.users.resources import UserRegistrySettings
from user_pipeline_tests.runs import users_resources


def day_users(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"email": [email for email, _ in pairs], "user_id": [uid for _, uid in pairs]})


def test_the_registry_tracks_first_last_and_days_seen_per_email_key():
    day1 = update_registry(empty_registry(), day_users(("b@x.com", "b1"), ("a@x.com", "a1")), "2026-11-01")
    day2 = update_registry(day1, day_users((" B@X.com", "b2"), ("c@x.com", "c2")), "2026-11-02")
    assert day2.to_dict("records") == [
        {
            "email_key": "a@x.com",
            "email": "a@x.com",
            "user_id": "a1",
            "first_seen": "2026-11-01",
            "last_seen": "2026-11-01",
            "days_seen": 1,
        },
        {
            "email_key": "b@x.com",
            "email": " B@X.com",
            "user_id": "b2",
            "first_seen": "2026-11-01",
            "last_seen": "2026-11-02",
            "days_seen": 2,
        },
        {
            "email_key": "c@x.com",
            "email": "c@x.com",
            "user_id": "c2",
            "first_seen": "2026-11-02",
            "last_seen": "2026-11-02",
            "days_seen": 1,
        },
    ]


def test_the_registry_file_round_trips_hostile_emails_and_reads_the_older_format(tmp_path):
    registry = update_registry(
        empty_registry(), day_users(("Stra\u00dfe@X.com", "s1"), ("a\r\nb@x.com", "a1")), "2026-11-01"
    )
    assert list(registry["email_key"]) == ["a\r\nb@x.com", "strasse@x.com"]
    write_registry(registry, tmp_path / "registry.csv")
    pd.testing.assert_frame_equal(read_registry(tmp_path / "registry.csv"), registry)
    (tmp_path / "older.csv").write_text(
        "email,user_id,first_seen,last_seen,days_seen\na@x.com,a1,2026-11-01,2026-11-01,1\n"
    )
    assert read_registry(tmp_path / "older.csv").to_dict("records") == [
        {
            "email_key": "a@x.com",
            "email": "a@x.com",
            "user_id": "a1",
            "first_seen": "2026-11-01",
            "last_seen": "2026-11-01",
            "days_seen": 1,
        }
    ]


def materialize_registry(base_url: str, data_dir, day: str, first_day: str = "2026-01-01") -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [daily_users, user_registry],
        selection=["raw_users", "normalized_users", "user_registry"],
        partition_key=day,
        resources={
            **users_resources(base_url, data_dir, users_per_partition=50),
            "registry_settings": UserRegistrySettings(first_day=first_day),
        },
        raise_on_error=False,
    )


def test_days_in_order_accumulate_and_a_gap_is_refused_naming_the_missing_day(users_api_server, tmp_path):
    assert materialize_registry(users_api_server.base_url, tmp_path, "2026-01-01").success  # the first partition
    assert materialize_registry(users_api_server.base_url, tmp_path, "2026-01-02").success
    registry = read_registry(tmp_path / "user_registry" / "2026-01-02.csv")
    assert len(registry) == registry["email"].nunique()
    assert set(registry["last_seen"]) <= {"2026-01-01", "2026-01-02"}
    assert (registry["last_seen"] == "2026-01-02").sum() == len(
        read_normalized_csv(tmp_path / "normalized_users" / "2026-01-02.csv")
    )

    refused = materialize_registry(users_api_server.base_url, tmp_path, "2026-01-04")
    assert not refused.success
    [failure] = refused.get_step_failure_events()
    assert failure.step_key == "user_registry"
    assert (
        "user_registry 2026-01-04 needs user_registry 2026-01-03, which is not materialized"
        in failure.step_failure_data.error.message
    )
    assert not (tmp_path / "user_registry" / "2026-01-04.csv").exists()


def test_the_registry_starts_empty_on_its_configured_first_day_and_refuses_earlier_days(users_api_server, tmp_path):
    assert materialize_registry(users_api_server.base_url, tmp_path, "2026-11-10", first_day="2026-11-10").success
    earlier = materialize_registry(users_api_server.base_url, tmp_path, "2026-11-09", first_day="2026-11-10")
    assert not earlier.success
    assert "user_registry starts on 2026-11-10" in earlier.get_step_failure_events()[0].step_failure_data.error.message
