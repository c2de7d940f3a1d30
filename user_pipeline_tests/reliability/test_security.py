"""Security: no plaintext password anywhere downstream of the API, SQL always parameterised,
and the warehouse password never in logs or metadata."""

import json
import sqlite3

import dagster as dg
import pandas as pd
import requests

from user_pipeline.users.assets import daily_users
from user_pipeline.users.normalize import normalize_users
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.conftest import FIXTURES_DIR
from user_pipeline_tests.runs import materializations

DAY = "2026-09-28"
USERS = 500


def event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every event of the run as the instance stores it: messages, metadata, errors."""
    return "\n".join(json.dumps(dg.serialize_value(entry)) for entry in instance.all_logs(run_id))


def run_day(base_url: str, data_dir, warehouse_url: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [daily_users],
        partition_key=DAY,
        instance=instance,
        resources={
            "users_api": RandomUserApi(base_url=base_url, users_per_partition=USERS),
            "files": PartitionFiles(data_dir=str(data_dir)),
            "warehouse": WarehouseResource(url=warehouse_url),
            "day_limits": DayLimits(),
        },
    )


def test_no_plaintext_password_in_any_file_table_or_log(users_api_server, tmp_path):
    answer = requests.get(users_api_server.base_url, params={"results": USERS, "seed": DAY}, timeout=30).json()
    passwords = {user["login"].pop("password") for user in answer["results"]}
    # Only passwords that cannot occur by chance elsewhere (a name, a phone number, an English word
    # in Dagster's own log text such as "pointer") are searched: long ones or ones with a digit.
    distinctive = {
        password
        for password in passwords
        if (len(password) >= 8 or (len(password) >= 6 and any(c.isdigit() for c in password)))
        and password not in json.dumps(answer)
    }
    assert len(distinctive) > USERS // 10

    warehouse_url = f"sqlite:///{tmp_path}/warehouse.sqlite"
    with dg.instance_for_test() as instance:
        result = run_day(users_api_server.base_url, tmp_path, warehouse_url, instance)
        assert result.success
        haystacks = {"event log": event_log_text(instance, result.run_id)}
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.name.startswith("warehouse.sqlite"):
            haystacks[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    with sqlite3.connect(tmp_path / "warehouse.sqlite") as connection:
        haystacks["users table"] = "\n".join(map(repr, connection.execute("SELECT * FROM users")))
        columns = [row[1] for row in connection.execute("PRAGMA table_info(users)")]
    assert len(haystacks["users table"]) > 0
    for where, text in haystacks.items():
        leaked = [password for password in distinctive if password in text]
        assert not leaked, f"plaintext passwords in {where}: {leaked[:5]}"
    assert '"password"' not in (tmp_path / "raw_users" / f"{DAY}.jsonl").read_text(encoding="utf-8")
    assert not [column for column in columns if column in ("password", "login_password")]


def test_names_that_look_like_sql_are_stored_verbatim_by_the_table_asset(tmp_path):
    users = json.loads((FIXTURES_DIR / "seed-2026-11-23_results-3_inc.json").read_text(encoding="utf-8"))["results"]
    for user in users:
        user.update(
            gender="female",
            dob={"date": "1990-01-01T00:00:00.000Z", "age": 36},
            phone="1",
            cell="2",
            registered={"date": "2010-01-01T00:00:00.000Z", "age": 16},
            id={"name": "", "value": None},
            picture={"large": "x"},
            nat="IE",
        )
    users[0]["name"]["last"] = "O'Brien"
    users[1]["name"]["last"] = "Robert'); DROP TABLE users;--"
    csv_dir = tmp_path / "normalized_users"
    csv_dir.mkdir()
    normalize_users(users, DAY).to_csv(csv_dir / f"{DAY}.csv", index=False)
    warehouse_url = f"sqlite:///{tmp_path}/warehouse.sqlite"
    assert dg.materialize(
        [daily_users],
        selection=["users_table"],
        partition_key=DAY,
        resources={
            "users_api": RandomUserApi(),  # not called: only the table step runs
            "files": PartitionFiles(data_dir=str(tmp_path)),
            "warehouse": WarehouseResource(url=warehouse_url),
            "day_limits": DayLimits(),
        },
    ).success
    stored = open_warehouse(warehouse_url).read_partition(DAY)
    assert "O'Brien" in set(stored["last_name"])
    assert "Robert'); DROP TABLE users;--" in set(stored["last_name"])
    assert open_warehouse(warehouse_url).count_rows() == 3


def test_the_postgres_password_never_reaches_logs_or_metadata(users_api_server, tmp_path, postgres, postgres_url):
    # Even a password put in the URL by mistake is redacted wherever the URL is shown.
    url_with_password = postgres_url.replace("pipeline@", f"pipeline:{postgres.password}@")
    with dg.instance_for_test() as instance:
        result = run_day(users_api_server.base_url, tmp_path, url_with_password, instance)
        assert result.success
        log = event_log_text(instance, result.run_id)
    assert postgres.password not in log
    [table] = materializations(result, "users_table")
    assert table.metadata["warehouse"].value == postgres_url.replace("pipeline@", "pipeline:***@")
    assert open_warehouse(postgres_url).count_rows(DAY) == len(
        pd.read_csv(tmp_path / "normalized_users" / f"{DAY}.csv")
    )
