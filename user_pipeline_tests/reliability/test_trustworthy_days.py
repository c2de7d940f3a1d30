"""Issue #12 on real runs against the bundled server: users that break the contract fail the day (or
are quarantined), permanent errors are never retried, and a refused day leaves raw file, CSV and
table exactly as the previous good run left them; multi-day runs record exactly the committed days."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from user_pipeline.users.assets import daily_users
from user_pipeline.users.contract import COORDINATE_FORMAT
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.runs import (
    USERS_ASSETS,
    materializations,
    materialize_command,
    materialize_users,
    users_resources,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-10-05"
USERS = 300
PAGE = 100


def run_day(base_url: str, data_dir: Path, day: str = DAY, **settings) -> dg.ExecuteInProcessResult:
    settings = {"users_per_partition": USERS, "page_size": PAGE, "backoff_seconds": 0.05, "max_attempts": 2, **settings}
    return materialize_users(base_url, data_dir, day, **settings)


def snapshot(data_dir: Path, days=(DAY,)) -> tuple[dict[str, bytes], list[pd.DataFrame]]:
    """Every committed file (staging excluded: it is never data) and the days' table rows."""
    files = {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
        and not path.name.startswith("warehouse.sqlite")
        and "staging" not in path.relative_to(data_dir).parts
    }
    warehouse = open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite")
    return files, [warehouse.read_partition(day) for day in days]


def assert_same(data_dir: Path, reference: Path, days=(DAY,)) -> None:
    files, rows = snapshot(data_dir, days)
    reference_files, reference_rows = snapshot(reference, days)
    assert sorted(files) == sorted(reference_files)
    assert files == reference_files
    for got, expected in zip(rows, reference_rows, strict=True):
        pd.testing.assert_frame_equal(got, expected)
    assert not list((data_dir / "staging").glob("*/*/*")), "a refused day's staged files are dropped"


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(event.step_failure_data.error.message for event in result.get_step_failure_events())


def retried_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return [event.step_key for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


@pytest.fixture(scope="module")
def good_day(api_server, tmp_path_factory) -> Path:
    api_server.start()
    api_server.clear_faults()
    data_dir = tmp_path_factory.mktemp("good_day")
    assert run_day(api_server.base_url, data_dir).success
    return data_dir


@pytest.fixture
def data_dir(good_day, tmp_path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(good_day, copy)
    return copy


# Finding 2 and its siblings: one user (number 104: page 2, results[4]) altered at one field.
VIOLATIONS = {
    "street_as_text_older_api_shape": (
        {"set": {"location.street": "Parliament St"}},
        "location.street",
        "'Parliament St'",
    ),
    "null_uuid": ({"set": {"login.uuid": None}}, "login.uuid", "None"),
    "uuid_not_a_uuid": ({"set": {"login.uuid": "not-a-uuid"}}, "login.uuid", "'not-a-uuid'"),
    "nul_in_last_name": ({"set": {"name.last": "Null\u0000Byte"}}, "name.last", "'Null\\x00Byte'"),
    "email_not_an_address": ({"set": {"email": "nobody"}}, "email", "'nobody'"),
    "email_a_number": ({"set": {"email": 42}}, "email", "42"),
    "latitude_not_numeric": (
        {"set": {"location.coordinates.latitude": "north"}},
        "location.coordinates.latitude",
        "'north'",
    ),
    "postcode_a_float": ({"set": {"location.postcode": 4868.7}}, "location.postcode", "4868.7"),
    "birth_date_not_iso": ({"set": {"dob.date": "14/09/1967"}}, "dob.date", "'14/09/1967'"),
    "age_as_text": ({"set": {"dob.age": "59"}}, "dob.age", "'59'"),
    "street_number_null": ({"set": {"location.street.number": None}}, "location.street.number", "None"),
    "no_id_object": ({"unset": ["id"]}, "id", "nothing"),
    "no_timezone_offset": ({"unset": ["location.timezone.offset"]}, "location.timezone.offset", "nothing"),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_a_contract_violation_fails_the_day_at_once_and_replaces_nothing(users_api_server, good_day, data_dir, case):
    alteration, field, shown = VIOLATIONS[case]
    users_api_server.add_fault("alter_users", seeds=[DAY], users=[104], **alteration)
    started = time.monotonic()
    result = run_day(users_api_server.base_url, data_dir)
    assert not result.success
    message = failure_text(result)
    assert (
        f"raw_users {DAY}: users API answer breaks the user contract: seed '{DAY}' page 2 results[4] (user 104 of the seed): {field}: "
        in message
    )
    assert f"(got {shown}); the previous raw file was kept" in message
    assert retried_steps(result) == [] and users_api_server.stats()["by_seed"][DAY] == 2, "not retried"
    assert time.monotonic() - started < 20
    assert_same(data_dir, good_day)


# Values that flattening or normalization would change: a key holding "." beside the nested field
# of the same flattened name (one of the two values was silently kept), and numeric text in
# another script's digits (float() reads it, normalization could not).
def not_storable(user: dict, case: str) -> tuple[dict, str, str]:
    """(alter_users' set, the violation's field, the rest of its line) for user 104 as sent."""
    return {
        "dotted_key_beside_its_nested_field": (
            {"location": {**user["location"], "street.name": "Other St"}},
            "location",
            "key 'street.name' holds '.', the separator of flattened field names "
            "(location.street.name would name two values) (got 'Other St')",
        ),
        "latitude_in_arabic_indic_digits": (
            {"location.coordinates.latitude": "٤٥.٥"},
            "location.coordinates.latitude",
            f"{COORDINATE_FORMAT} (got '٤٥.٥')",
        ),
    }[case]


@pytest.mark.parametrize("case", ["dotted_key_beside_its_nested_field", "latitude_in_arabic_indic_digits"])
def test_a_value_that_would_be_changed_fails_the_day_naming_key_or_field_or_is_quarantined(
    users_api_server, good_day, data_dir, case
):
    sent = json.loads((good_day / "raw_users" / f"{DAY}.jsonl").read_text(encoding="utf-8").splitlines()[104])
    alteration, field, rest = not_storable(sent, case)
    users_api_server.add_fault("alter_users", seeds=[DAY], users=[104], set=alteration)
    result = run_day(users_api_server.base_url, data_dir)
    assert not result.success
    assert (
        f"raw_users {DAY}: users API answer breaks the user contract: seed '{DAY}' page 2 results[4] "
        f"(user 104 of the seed): {field}: {rest}; the previous raw file was kept"
    ) in failure_text(result)
    assert retried_steps(result) == []
    assert_same(data_dir, good_day)

    quarantined = run_day(
        users_api_server.base_url, data_dir, contract_violations="quarantine", max_rejected_fraction=0.01
    )
    assert quarantined.success, failure_text(quarantined)
    [reject] = [json.loads(line) for line in (data_dir / "rejects" / f"{DAY}.jsonl").read_text("utf-8").splitlines()]
    [violation] = reject["violations"]
    assert (reject["user_number"], violation["field"]) == (104, field)
    assert f"{violation['reason']} (got {violation['value']})" == rest
    table = open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").read_partition(DAY)
    assert sent["login"]["uuid"] not in set(table["user_id"]) and len(table) == USERS - 1


def test_quarantine_leaves_violating_users_out_counts_them_and_writes_their_reasons(
    users_api_server, good_day, data_dir
):
    users_api_server.add_fault(
        "alter_users",
        seeds=[DAY],
        users=[4, 250],
        set={"location.street": "Parliament St", "name.last": "Null\u0000Byte", "login.password": "hunter2"},
    )
    result = run_day(users_api_server.base_url, data_dir, contract_violations="quarantine", max_rejected_fraction=0.01)
    assert result.success, failure_text(result)
    [materialization] = materializations(result, "raw_users")
    assert materialization.metadata["users_received"].value == USERS
    assert materialization.metadata["users_rejected"].value == 2
    assert materialization.metadata["rejected_by_field"].value == {"location.street": 2, "name.last": 2}
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "rejected_share_within_limit"]
    assert check.passed and check.metadata["rejected_fraction"].value == round(2 / USERS, 6)

    raw_lines = (data_dir / "raw_users" / f"{DAY}.jsonl").read_text(encoding="utf-8").splitlines()
    good_lines = (good_day / "raw_users" / f"{DAY}.jsonl").read_text(encoding="utf-8").splitlines()
    assert raw_lines == good_lines[:4] + good_lines[5:250] + good_lines[251:]
    rejects_text = (data_dir / "rejects" / f"{DAY}.jsonl").read_text(encoding="utf-8")
    rejects = [json.loads(line) for line in rejects_text.splitlines()]
    assert [(r["page"], r["index"], r["user_number"]) for r in rejects] == [(1, 4, 4), (3, 50, 250)]
    assert [v["field"] for v in rejects[0]["violations"]] == ["name.last", "location.street"]
    assert "hunter2" not in rejects_text and "password" not in rejects[0]["user"]["login"]
    table = open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").read_partition(DAY)
    good_table = open_warehouse(f"sqlite:///{good_day}/warehouse.sqlite").read_partition(DAY)
    rejected_ids = {json.loads(good_lines[k])["login"]["uuid"] for k in (4, 250)}
    assert set(good_table["user_id"]) - set(table["user_id"]) == rejected_ids
    assert "Null" not in set(table["last_name"])

    # A later run with nothing to reject removes the day's rejects file with the day's other files.
    users_api_server.clear_faults()
    assert run_day(users_api_server.base_url, data_dir, contract_violations="quarantine").success
    assert not (data_dir / "rejects" / f"{DAY}.jsonl").exists()
    assert_same(data_dir, good_day)


def test_quarantine_past_the_limit_fails_its_check_and_keeps_the_good_day(users_api_server, good_day, data_dir):
    users_api_server.add_fault("alter_users", seeds=[DAY], users=list(range(0, 300, 10)), set={"login.uuid": None})
    result = run_day(users_api_server.base_url, data_dir, contract_violations="quarantine", max_rejected_fraction=0.05)
    assert not result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "rejected_share_within_limit"]
    assert not check.passed
    assert (
        check.description
        == f"{DAY}: 30 of 300 users break the contract (10.00% > 5.00%); the previous raw file was kept"
    )
    assert materializations(result, "raw_users") == []
    assert_same(data_dir, good_day)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"contract_violations": "maybe"},
            "contract_violations\n  Value error, invalid value='maybe': expected 'fail' or 'quarantine'",
        ),
        ({"max_rejected_fraction": 1.5}, "max_rejected_fraction\n  Input should be less than or equal to 1"),
        ({"max_rejected_fraction": -0.01}, "max_rejected_fraction\n  Input should be greater than or equal to 0"),
    ],
)
def test_a_bad_contract_setting_fails_before_any_request(users_api_server, good_day, data_dir, setting, message):
    """Set in the run's config (the launchpad's resources section): refused as the run sets up
    the resource, before any step, request or file."""
    result = materialize_users(
        users_api_server.base_url,
        data_dir,
        DAY,
        users_per_partition=USERS,
        page_size=PAGE,
        run_config={"resources": {"users_api": {"config": setting}}},
    )
    [failure] = [event for event in result.all_events if event.event_type == dg.DagsterEventType.RUN_FAILURE]
    assert message in failure.event_specific_data.error.cause.message
    assert retried_steps(result) == [] and users_api_server.stats()["api_requests"] == 0
    assert_same(data_dir, good_day)


def test_a_contract_setting_that_is_not_a_number_is_refused_by_the_run_config_check(
    users_api_server, good_day, data_dir
):
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_rejected_fraction"):
        materialize_users(
            users_api_server.base_url,
            data_dir,
            DAY,
            run_config={"resources": {"users_api": {"config": {"max_rejected_fraction": "five percent"}}}},
        )
    assert users_api_server.stats()["api_requests"] == 0
    assert_same(data_dir, good_day)


# Finding 5: a refused day leaves its layers agreeing.
def test_a_re_run_refused_by_row_drop_keeps_raw_file_csv_and_table(users_api_server, good_day, data_dir):
    result = run_day(users_api_server.base_url, data_dir, users_per_partition=1)
    assert not result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "row_drop_within_limit"]
    assert not check.passed
    assert check.metadata["day"].value == DAY and DAY in check.description
    # One step for the day's chain: nothing of the refused day was recorded, for any of its assets.
    assert all(materializations(result, asset) == [] for asset in USERS_ASSETS)
    assert_same(data_dir, good_day)


def refuse_changed_cities(data_dir: Path) -> None:
    """A real constraint of the warehouse that the day's changed rows break (SQLite: a trigger
    raising ABORT is how a CHECK is added to an existing table)."""
    with sqlite3.connect(data_dir / "warehouse.sqlite") as connection:
        connection.execute(
            "CREATE TRIGGER no_changed_city BEFORE INSERT ON users WHEN NEW.city LIKE 'Changed %' "
            "BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: users.city'); END"
        )


def test_a_load_refused_by_the_warehouse_keeps_raw_file_and_csv_and_is_not_retried(
    users_api_server, good_day, data_dir
):
    refuse_changed_cities(data_dir)
    users_api_server.add_fault("changed_users", seeds=[DAY], every=10)
    started = time.monotonic()
    result = run_day(users_api_server.base_url, data_dir)
    assert not result.success
    assert failure_text(result).endswith(
        f"users_table {DAY}: the warehouse refused the day's rows: CHECK constraint failed: users.city "
        "(column users.city); the previous rows were kept (a permanent error, not retried)\n"
    )
    assert retried_steps(result) == []
    assert time.monotonic() - started < 20
    with sqlite3.connect(data_dir / "warehouse.sqlite") as connection:
        connection.execute("DROP TRIGGER no_changed_city")
    assert_same(data_dir, good_day)


def test_not_null_in_the_warehouse_fails_at_once_naming_day_and_column(users_api_server, good_day, data_dir):
    # The old shape of finding 2: a CSV row without user_id reached the table and was retried 3 times.
    csv_path = data_dir / "normalized_users" / f"{DAY}.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    header, first = lines[0].rstrip("\n").split(","), lines[1].split(",")
    first[header.index("user_id")] = ""
    csv_path.write_text("".join([lines[0], ",".join(first), *lines[2:]]), encoding="utf-8")
    started = time.monotonic()
    result = run_day(users_api_server.base_url, data_dir, assets=[USERS_ASSETS[2]])
    assert not result.success
    assert (
        f"users_table {DAY}: the warehouse refused the day's rows: NOT NULL constraint failed: users.user_id (column users.user_id)"
        in failure_text(result)
    )
    assert retried_steps(result) == []
    assert time.monotonic() - started < 15
    pd.testing.assert_frame_equal(
        open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").read_partition(DAY),
        open_warehouse(f"sqlite:///{good_day}/warehouse.sqlite").read_partition(DAY),
    )


# Multi-day runs: exactly the committed days are recorded.
DAYS = ["2026-10-10", "2026-10-11", "2026-10-12"]


def run_days(
    base_url: str, data_dir: Path, assets=USERS_ASSETS, instance=None, **settings
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [daily_users],
        selection=list(assets),
        instance=instance,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
        resources=users_resources(base_url, data_dir, users_per_partition=50, page_size=50, **settings),
        raise_on_error=False,
    )


def materialized_days(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


def committed_days(data_dir: Path) -> dict[str, set[str]]:
    table = open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite")
    return {
        "raw_users": {p.stem for p in (data_dir / "raw_users").glob("*.jsonl")},
        "normalized_users": {p.stem for p in (data_dir / "normalized_users").glob("*.csv")},
        "users_table": {day for day in DAYS if table.count_rows(day)},
    }


def test_a_multi_day_run_refused_by_the_table_on_day_n_commits_and_records_the_days_before(users_api_server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").count_rows()  # creates the table
    refuse_changed_cities(data_dir)
    users_api_server.add_fault("changed_users", seeds=[DAYS[2]], every=10)
    instance = dg.DagsterInstance.ephemeral()
    result = run_days(users_api_server.base_url, data_dir, instance=instance)
    assert not result.success
    assert f"users_table {DAYS[2]}: the warehouse refused the day's rows" in failure_text(result)
    assert committed_days(data_dir) == {
        asset: set(DAYS[:2]) for asset in ("raw_users", "normalized_users", "users_table")
    }
    assert materialized_days(instance, "users_table") == set(DAYS[:2])
    assert not list((data_dir / "staging").glob("*/*/*"))


def test_a_multi_day_run_refused_by_the_contract_on_day_n_commits_and_records_the_days_before(
    users_api_server, tmp_path
):
    data_dir = tmp_path / "data"
    users_api_server.add_fault("alter_users", seeds=[DAYS[1]], users=[3], set={"login.uuid": None})
    instance = dg.DagsterInstance.ephemeral()
    result = run_days(users_api_server.base_url, data_dir, instance=instance)
    assert not result.success
    assert f"raw_users {DAYS[1]}: users API answer breaks the user contract" in failure_text(result)
    # The run goes day by day through the whole chain: day 1 was fetched, normalized, loaded,
    # committed and recorded before day 2 was refused; nothing of day 2 or 3 was.
    assert committed_days(data_dir) == {"raw_users": {DAYS[0]}, "normalized_users": {DAYS[0]}, "users_table": {DAYS[0]}}
    assert all(materialized_days(instance, asset) == {DAYS[0]} for asset in USERS_ASSETS)


def test_a_multi_day_raw_users_run_records_the_days_committed_before_the_refused_one(users_api_server, tmp_path):
    data_dir = tmp_path / "data"
    users_api_server.add_fault("alter_users", seeds=[DAYS[1]], users=[3], set={"login.uuid": None})
    instance = dg.DagsterInstance.ephemeral()
    result = run_days(users_api_server.base_url, data_dir, assets=USERS_ASSETS[:1], instance=instance)
    assert not result.success
    assert committed_days(data_dir)["raw_users"] == {DAYS[0]}
    assert materialized_days(instance, "raw_users") == {DAYS[0]}


def test_quarantine_from_the_documented_environment_variables(users_api_server, tmp_path):
    data_dir = tmp_path / "data"
    (tmp_path / "dagster_home").mkdir()
    users_api_server.add_fault("alter_users", seeds=[DAY], users=[7], set={"location.street": "Parliament St"})
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "USER_PIPELINE_API_URL": users_api_server.base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": "200",
        "USER_PIPELINE_DATA_DIR": str(data_dir),
        "USER_PIPELINE_WAREHOUSE_URL": f"sqlite:///{data_dir}/warehouse.sqlite",
        "USER_PIPELINE_CONTRACT_VIOLATIONS": "quarantine",
        "USER_PIPELINE_MAX_REJECTED_FRACTION": "0.01",
    }
    process = subprocess.run(
        materialize_command(DAY),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    [reject] = [
        json.loads(line) for line in (data_dir / "rejects" / f"{DAY}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert (reject["user_number"], reject["violations"][0]["field"]) == (7, "location.street")
    assert len((data_dir / "raw_users" / f"{DAY}.jsonl").read_text(encoding="utf-8").splitlines()) == 199


def test_not_null_in_postgresql_fails_at_once_naming_day_and_column(users_api_server, postgres_url, tmp_path):
    data_dir = tmp_path / "data"
    assert run_day(users_api_server.base_url, data_dir, warehouse_url=postgres_url).success
    good_rows = open_warehouse(postgres_url).read_partition(DAY)
    csv_path = data_dir / "normalized_users" / f"{DAY}.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    header, first = lines[0].rstrip("\n").split(","), lines[1].split(",")
    first[header.index("user_id")] = ""
    csv_path.write_text("".join([lines[0], ",".join(first), *lines[2:]]), encoding="utf-8")
    result = run_day(users_api_server.base_url, data_dir, warehouse_url=postgres_url, assets=[USERS_ASSETS[2]])
    assert not result.success
    message = failure_text(result)
    assert f'users_table {DAY}: the warehouse refused the day\'s rows: null value in column "user_id"' in message
    assert "(column user_id); the previous rows were kept (a permanent error, not retried)" in message
    assert retried_steps(result) == []
    pd.testing.assert_frame_equal(open_warehouse(postgres_url).read_partition(DAY), good_rows)


def test_a_row_drop_refusal_keeps_the_raw_file_when_only_raw_users_and_normalized_users_run(
    users_api_server, good_day, data_dir
):
    result = run_day(users_api_server.base_url, data_dir, users_per_partition=1, assets=USERS_ASSETS[:2])
    assert not result.success
    assert_same(data_dir, good_day)


def test_a_load_refusal_keeps_the_csv_when_only_normalized_users_and_users_table_run(
    users_api_server, good_day, data_dir
):
    users_api_server.add_fault("changed_users", seeds=[DAY], every=10)
    assert run_day(users_api_server.base_url, data_dir, assets=USERS_ASSETS[:1]).success, (
        "raw_users alone commits its day"
    )
    changed_raw = (data_dir / "raw_users" / f"{DAY}.jsonl").read_bytes()
    assert changed_raw != (good_day / "raw_users" / f"{DAY}.jsonl").read_bytes()
    refuse_changed_cities(data_dir)
    result = run_day(users_api_server.base_url, data_dir, assets=USERS_ASSETS[1:])
    assert not result.success
    assert "the warehouse refused the day's rows: CHECK constraint failed: users.city" in failure_text(result)
    assert (data_dir / "normalized_users" / f"{DAY}.csv").read_bytes() == (
        good_day / "normalized_users" / f"{DAY}.csv"
    ).read_bytes()
    assert (data_dir / "raw_users" / f"{DAY}.jsonl").read_bytes() == changed_raw
    assert not list((data_dir / "staging").glob("*/*/*"))


def test_a_multi_day_run_refused_by_row_drop_on_day_n_records_the_days_committed_before(users_api_server, tmp_path):
    data_dir = tmp_path / "data"
    two_steps = USERS_ASSETS[:2]
    assert run_days(users_api_server.base_url, data_dir, assets=two_steps).success
    good = {day: (data_dir / "normalized_users" / f"{day}.csv").read_bytes() for day in DAYS}
    # The API's answer changes on every day; on the last one, quarantine leaves 40 of 50 users out.
    users_api_server.add_fault("changed_users", seeds=DAYS[:2], every=10)
    users_api_server.add_fault("alter_users", seeds=[DAYS[2]], users=list(range(40)), set={"login.uuid": None})
    instance = dg.DagsterInstance.ephemeral()
    result = run_days(
        users_api_server.base_url,
        data_dir,
        assets=two_steps,
        instance=instance,
        contract_violations="quarantine",
        max_rejected_fraction=1.0,
    )
    assert not result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "row_drop_within_limit"]
    assert not check.passed and check.metadata["day"].value == DAYS[2]
    assert materialized_days(instance, "normalized_users") == set(DAYS[:2])
    for day in DAYS[:2]:
        assert (data_dir / "normalized_users" / f"{day}.csv").read_bytes() != good[day], f"{day} committed"
    assert (data_dir / "normalized_users" / f"{DAYS[2]}.csv").read_bytes() == good[DAYS[2]]
    assert len((data_dir / "raw_users" / f"{DAYS[2]}.jsonl").read_text(encoding="utf-8").splitlines()) == 50
    assert not (data_dir / "rejects" / f"{DAYS[2]}.jsonl").exists()
    assert not list((data_dir / "staging").glob("*/*/*"))


def recorded_days(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """The days each users asset was recorded as materialized by the run."""
    days: dict[str, set[str]] = {"raw_users": set(), "normalized_users": set(), "users_table": set()}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        days[materialization.asset_key.to_user_string()].add(materialization.partition)
    return days


def day_layers(data_dir: Path, day: str) -> dict[str, object]:
    """Every layer of one day: raw file, rejects file, CSV (bytes, or None when absent) and table rows."""

    def read(path: Path) -> bytes | None:
        return path.read_bytes() if path.exists() else None

    return {
        "raw_users": read(data_dir / "raw_users" / f"{day}.jsonl"),
        "rejects": read(data_dir / "rejects" / f"{day}.jsonl"),
        "normalized_users": read(data_dir / "normalized_users" / f"{day}.csv"),
        "users_table": open_warehouse(f"sqlite:///{data_dir}/warehouse.sqlite").read_partition(day).to_dict("records"),
    }


# The day 2 refusals of the #12 gap: each after day 1 was fetched, normalized, loaded and committed.
DAY_2_REFUSALS = {
    # The warehouse refuses day 2's rows: an integrity error, after raw file and CSV were staged.
    "integrity_error": (
        {"changed_users": {"seeds": [DAYS[1]], "every": 10}},
        {},
        "the warehouse refused the day's rows",
    ),
    # Quarantine leaves 40 of day 2's 50 users out: normalized_users refuses the drop.
    "row_drop": (
        {"alter_users": {"seeds": [DAYS[1]], "users": list(range(40)), "set": {"login.uuid": None}}},
        {"contract_violations": "quarantine", "max_rejected_fraction": "1"},
        "row_drop_within_limit",
    ),
}


@pytest.mark.parametrize("refusal", sorted(DAY_2_REFUSALS))
def test_a_multi_day_run_refused_on_day_2_records_day_1_only_and_keeps_days_2_and_3(
    users_api_server, tmp_path, refusal
):
    faults, settings, reason = DAY_2_REFUSALS[refusal]
    data_dir = tmp_path / "data"
    assert run_days(users_api_server.base_url, data_dir).success
    good = {day: day_layers(data_dir, day) for day in DAYS}
    refuse_changed_cities(data_dir)
    # Day 1 changes too (and is accepted), so that its commit shows.
    users_api_server.add_fault("alter_users", seeds=[DAYS[0]], users=[3], set={"name.first": "Renamed"})
    for kind, fault in faults.items():
        users_api_server.add_fault(kind, **fault)
    users_api_server.add_fault("alter_users", seeds=[DAYS[2]], users=[5], set={"name.first": "Never"})
    instance = dg.DagsterInstance.ephemeral()

    result = run_days(users_api_server.base_url, data_dir, instance=instance, **settings)

    assert not result.success
    everything = failure_text(result) + "\n".join(
        f"{c.check_name}: {c.description}" for c in result.get_asset_check_evaluations() if not c.passed
    )
    assert reason in everything and DAYS[1] in everything, everything
    assert recorded_days(instance, result.run_id) == {
        asset: {DAYS[0]} for asset in ("raw_users", "normalized_users", "users_table")
    }
    day_1 = day_layers(data_dir, DAYS[0])
    assert "Renamed" in day_1["raw_users"].decode() and b"Renamed" in day_1["normalized_users"]
    assert "Renamed" in {row["first_name"] for row in day_1["users_table"]}
    for day in DAYS[1:]:
        assert day_layers(data_dir, day) == good[day], f"{day} changed"
    assert not list((data_dir / "staging").glob("*/*/*"))


def test_dg_launch_partition_range_refused_on_day_2_records_day_1_only(users_api_server, tmp_path, monkeypatch):
    """The #12 gap on the README's own command: `dg launch --partition-range` in the CLI's process."""
    data_dir = tmp_path / "data"
    assert run_days(users_api_server.base_url, data_dir).success
    good = {day: day_layers(data_dir, day) for day in DAYS}
    refuse_changed_cities(data_dir)
    users_api_server.add_fault("alter_users", seeds=[DAYS[0]], users=[3], set={"name.first": "Renamed"})
    users_api_server.add_fault("changed_users", seeds=[DAYS[1]], every=10)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "USER_PIPELINE_API_URL": users_api_server.base_url,
        "USER_PIPELINE_USERS_PER_PARTITION": "50",
        "USER_PIPELINE_PAGE_SIZE": "50",
        "USER_PIPELINE_DATA_DIR": str(data_dir),
        "USER_PIPELINE_WAREHOUSE_URL": f"sqlite:///{data_dir}/warehouse.sqlite",
    }
    process = subprocess.run(
        [
            str(Path(sys.executable).parent / "dg"),
            "launch",
            "--assets",
            "raw_users,normalized_users,users_table",
            "--partition-range",
            f"{DAYS[0]}...{DAYS[-1]}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode != 0
    assert f"users_table {DAYS[1]}: the warehouse refused the day's rows" in process.stdout + process.stderr
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert recorded_days(instance, run.run_id) == {asset: {DAYS[0]} for asset in USERS_ASSETS}
    assert b"Renamed" in day_layers(data_dir, DAYS[0])["normalized_users"]
    for day in DAYS[1:]:
        assert day_layers(data_dir, day) == good[day], f"{day} changed"


def test_a_step_retry_does_not_fetch_again_the_days_an_earlier_attempt_committed(users_api_server, tmp_path):
    # Day 2's first request answers 500 and the client does not retry it: the step retries.
    users_api_server.add_fault("server_error", seeds=[DAYS[1]], times=1, status=500)
    instance = dg.DagsterInstance.ephemeral()

    result = run_days(users_api_server.base_url, tmp_path / "data", instance=instance, max_attempts=1)

    assert result.success
    assert retried_steps(result) == ["daily_users"]
    by_seed = users_api_server.stats()["by_seed"]
    assert (by_seed[DAYS[0]], by_seed[DAYS[1]]) == (1, 2), "day 1 fetched once"
    # Day 3 may have been staged ahead (USER_PIPELINE_DAYS_AHEAD) by the first attempt and dropped with it.
    assert by_seed[DAYS[2]] in (1, 2) and set(by_seed) == set(DAYS), by_seed
    assert committed_days(tmp_path / "data") == {asset: set(DAYS) for asset in USERS_ASSETS}
    # Day 1 was recorded when the first attempt stopped; the step's output records every day of
    # its range again (Dagster has no per-partition output), day 1 with the metadata recorded then.
    for asset in USERS_ASSETS:
        events = [
            e.asset_materialization
            for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            if e.asset_materialization.asset_key == dg.AssetKey(asset)
        ]
        assert sorted(event.partition for event in events) == [DAYS[0], DAYS[0], DAYS[1], DAYS[2]]
        first_day = [event.metadata for event in events if event.partition == DAYS[0]]
        assert first_day[0]["dagster/row_count"] == first_day[1]["dagster/row_count"]
