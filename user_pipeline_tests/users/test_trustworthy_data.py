"""Issue #12 on real runs (alter_users): CR in text, "" not NULL, one email identity, repeated user_ids."""

import sqlite3

import dagster as dg
import pandas as pd
import pytest
import requests

from user_pipeline.users.normalize import read_normalized_csv
from user_pipeline.users.registry import read_registry
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.runs import materializations, materialize_users

DAY, NEXT_DAY = "2026-11-20", "2026-11-21"


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.sqlite"
    return request.getfixturevalue("postgres_url")


def sent_users(server, day: str, results: int = 10) -> list[dict]:
    return requests.get(server.base_url, params={"seed": day, "results": results}, timeout=30).json()["results"]


def check(result: dg.ExecuteInProcessResult, name: str):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_a_carriage_return_and_an_empty_id_name_reach_the_table_exactly(users_api_server, tmp_path, warehouse_url):
    hostile_last = 'a\r\nb \u2028 \\N "q" \x0b\t \U0001f600'
    users_api_server.add_fault(
        "alter_users",
        seeds=[DAY],
        users=[4, 5],
        set={
            "name.first": "Zoe\rAnn",
            "name.last": hostile_last,
            "id.name": "",
            "location.street.name": "Parliament St",
        },
    )
    result = materialize_users(
        users_api_server.base_url, tmp_path, DAY, warehouse_url=warehouse_url, users_per_partition=10
    )
    assert result.success
    sent = sent_users(users_api_server, DAY)
    table = open_warehouse(warehouse_url).read_partition(DAY).set_index("user_id")
    for user in sent[4:6]:
        row = table.loc[user["login"]["uuid"]]
        assert (row["first_name"], row["last_name"], row["id_name"], row["street_name"]) == (
            "Zoe\rAnn",
            hostile_last,
            "",
            "Parliament St",
        )
    assert not table["id_name"].isna().any()
    assert check(result, "table_matches_normalized_users").passed


def test_one_email_identity_in_dedup_registry_and_users_latest(users_api_server, tmp_path, warehouse_url):
    from user_pipeline.users.assets import daily_users, user_registry
    from user_pipeline.users.resources import (
        DayLimits,
        PartitionFiles,
        RandomUserApi,
        UserRegistrySettings,
        WarehouseResource,
    )

    users_api_server.add_fault("alter_users", seeds=[DAY], users=[0], set={"email": "Case.Test@Example.com"})
    users_api_server.add_fault("alter_users", seeds=[NEXT_DAY], users=[0], set={"email": "case.test@example.com"})
    for day in (DAY, NEXT_DAY):
        result = dg.materialize(
            [daily_users, user_registry],
            partition_key=day,
            resources={
                "users_api": RandomUserApi(base_url=users_api_server.base_url, users_per_partition=10),
                "files": PartitionFiles(data_dir=str(tmp_path)),
                "warehouse": WarehouseResource(url=warehouse_url),
                "day_limits": DayLimits(),
                "registry_settings": UserRegistrySettings(first_day=DAY),
            },
            raise_on_error=False,
        )
        assert result.success
    first_day = read_normalized_csv(tmp_path / "normalized_users" / f"{DAY}.csv")
    assert first_day.loc[first_day["email"] == "Case.Test@Example.com", "email_key"].tolist() == [
        "case.test@example.com"
    ]
    registry = read_registry(tmp_path / "user_registry" / f"{NEXT_DAY}.csv").set_index("email_key")
    entry = registry.loc["case.test@example.com"]
    assert (entry["email"], entry["days_seen"], entry["first_seen"], entry["last_seen"]) == (
        "case.test@example.com",
        2,
        DAY,
        NEXT_DAY,
    )
    latest = open_warehouse(warehouse_url).read_latest()
    case_rows = latest[latest["email_key"] == "case.test@example.com"]
    assert case_rows[["partition_date", "email"]].values.tolist() == [[NEXT_DAY, "case.test@example.com"]]
    assert latest["email_key"].is_unique


def test_the_unique_index_refuses_two_rows_of_one_email_key(tmp_path, warehouse_url):
    from user_pipeline_tests.hostile import hostile_frame

    rows = hostile_frame(DAY)[:2].copy()
    rows["email"] = ["A@x.com", "a@X.com"]
    rows["email_key"] = "a@x.com"
    store = open_warehouse(warehouse_url)
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        store.replace_partition(DAY, [rows])
    assert store.count_rows(DAY) == 0


def test_a_repeated_user_id_fails_the_blocking_check_naming_it_and_a_rerun_without_it_works(users_api_server, tmp_path):
    sent = sent_users(users_api_server, DAY)
    repeated = sent[2]["login"]["uuid"]
    users_api_server.add_fault("alter_users", seeds=[DAY], users=[7], set={"login.uuid": repeated})
    result = materialize_users(users_api_server.base_url, tmp_path, DAY, users_per_partition=10)
    assert not result.success
    unique = check(result, "user_ids_unique")
    assert not unique.passed
    assert unique.metadata["repeated_user_ids"].value == repeated
    assert unique.description == (
        f"{DAY}: repeated_user_ids={repeated}, repeated_user_id_count=1; the previous raw file, CSV and table rows were kept"
    )
    assert all(materializations(result, asset) == [] for asset in ("raw_users", "normalized_users", "users_table"))

    # The refused day was not committed (#12: a day is all-or-nothing), so no layer holds the
    # repeat; once the API stops repeating it, the re-run is the day's first load.
    assert (
        not (tmp_path / "normalized_users" / f"{DAY}.csv").exists()
        and not (tmp_path / "raw_users" / f"{DAY}.jsonl").exists()
    )
    users_api_server.clear_faults()
    rerun = materialize_users(users_api_server.base_url, tmp_path, DAY, users_per_partition=10)
    assert rerun.success, [event.message for event in rerun.all_events if event.is_failure]
    [event] = materializations(rerun, "normalized_users")
    assert (event.metadata["receipt/rows_added"].value, event.metadata["receipt/rows_removed"].value) == (10, 0)
    assert event.metadata["receipt/rows_changed"].value == 0
    assert check(rerun, "user_ids_unique").passed


def test_u0000_is_never_truncated_it_arrives_whole_or_the_run_names_the_field(
    users_api_server, tmp_path, warehouse_url
):
    """Finding 1's second half: "Null\\u0000Byte" used to reach both tables as "Null"."""
    users_api_server.add_fault("alter_users", seeds=[DAY], users=[3], set={"name.last": "Null\u0000Byte"})
    result = materialize_users(
        users_api_server.base_url, tmp_path, DAY, warehouse_url=warehouse_url, users_per_partition=10
    )
    uuid = sent_users(users_api_server, DAY)[3]["login"]["uuid"]
    stored = open_warehouse(warehouse_url).read_partition(DAY).set_index("user_id")
    if result.success:
        assert stored.loc[uuid, "last_name"] == "Null\u0000Byte"
    else:
        message = "\n".join(event.step_failure_data.error.message for event in result.get_step_failure_events())
        assert "U+0000" in message and ("last_name" in message or "name.last" in message), message
        assert uuid not in stored.index  # nothing truncated was stored


def test_a_store_that_changes_a_value_fails_the_blocking_check_and_keeps_the_previous_rows(users_api_server, tmp_path):
    """table_matches_normalized_users on a real run: a trigger truncates last names on insert."""
    assert materialize_users(users_api_server.base_url, tmp_path, DAY, users_per_partition=10).success
    warehouse_url = f"sqlite:///{tmp_path}/warehouse.sqlite"
    before = open_warehouse(warehouse_url).read_partition(DAY)
    with sqlite3.connect(tmp_path / "warehouse.sqlite") as connection:
        connection.execute(
            "CREATE TRIGGER truncate_last_name AFTER INSERT ON users "
            "BEGIN UPDATE users SET last_name = substr(last_name, 1, 2) WHERE rowid = NEW.rowid; END"
        )
    result = materialize_users(users_api_server.base_url, tmp_path, DAY, users_per_partition=10)
    assert not result.success
    mismatch = check(result, "table_matches_normalized_users")
    assert not mismatch.passed
    assert mismatch.description.startswith(f"users {DAY}: the rows read back (10 rows, content hash ")
    assert mismatch.description.endswith("the load was rolled back")
    assert materializations(result, "users_table") == []
    pd.testing.assert_frame_equal(open_warehouse(warehouse_url).read_partition(DAY), before)
