"""Acceptance (#12): hostile values go raw -> CSV -> table (SQLite, PostgreSQL) -> Parquet exactly as sent."""

import json

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests

from user_pipeline.spark.assets import users_parquet
from user_pipeline.spark.resources import SparkSettings
from user_pipeline.users.assets import daily_users
from user_pipeline.users.normalize import USER_COLUMNS, read_normalized_csv
from user_pipeline.users.resources import DayLimits, PartitionFiles, RandomUserApi, WarehouseResource
from user_pipeline.users.warehouse import open_warehouse

DAY = "2026-11-20"
USERS = 20
HOSTILE_USERS = [3, 4, 17]
HOSTILE_FIELDS = {
    "name.first": "Zoe\rAnn",
    "name.last": "crlf\r\nvalue \n",
    "name.title": "",
    "location.street.name": "tab\there \x0b vertical tab",
    "location.city": "line\u2028separator",
    "location.state": 'quote " and "" doubled',
    "location.country": "\\N",
    "location.postcode": "back\\slash\\",
    "id.name": "",
    "id.value": "emoji \U0001f600 \u05e9\u05dc\u05d5\u05dd e\u0301",
    "login.username": "x" * 100_000,
    "phone": " leading and trailing ",
    "cell": "NULL",
    "picture.large": "nan",
}
# API field -> column, for every text column (normalize._SOURCE_FIELDS, spelled out independently).
TEXT_FIELDS = {
    "login.uuid": "user_id",
    "email": "email",
    "login.username": "username",
    "name.title": "title",
    "name.first": "first_name",
    "name.last": "last_name",
    "gender": "gender",
    "dob.date": "date_of_birth",
    "registered.date": "registered_at",
    "phone": "phone",
    "cell": "cell",
    "location.street.name": "street_name",
    "location.city": "city",
    "location.state": "state",
    "location.country": "country",
    "location.postcode": "postcode",
    "location.timezone.offset": "timezone_offset",
    "nat": "nationality",
    "id.name": "id_name",
    "id.value": "id_value",
    "login.salt": "password_salt",
    "login.sha256": "password_sha256",
    "picture.large": "picture_url",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.sqlite"
    return request.getfixturevalue("postgres_url")


def field(user: dict, dotted: str):
    for part in dotted.split("."):
        user = user[part]
    return user


def as_sent(users: list[dict]) -> pd.DataFrame:
    """What the server sent, as the columns should hold it: text exactly, numbers as numbers."""
    rows = []
    for user in users:
        row = {column: field(user, dotted) for dotted, column in TEXT_FIELDS.items()}
        # The API sends some postcodes and id values as JSON numbers; the pipeline keeps them as text.
        row["postcode"], row["id_value"] = (None if v is None else str(v) for v in (row["postcode"], row["id_value"]))
        row["age"], row["street_number"] = user["dob"]["age"], user["location"]["street"]["number"]
        row["latitude"] = float(user["location"]["coordinates"]["latitude"])
        row["longitude"] = float(user["location"]["coordinates"]["longitude"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("user_id").sort_index()


def test_hostile_values_reach_csv_table_and_parquet_exactly(users_api_server, tmp_path, warehouse_url):
    users_api_server.add_fault("alter_users", seeds=[DAY], users=HOSTILE_USERS, set=HOSTILE_FIELDS)
    data_dir = tmp_path / "data dir [v1]"
    # Spark reads the normalized CSV, not the table: one warehouse is enough to follow it into Parquet.
    with_parquet = warehouse_url.startswith("sqlite")
    result = dg.materialize(
        [daily_users, users_parquet] if with_parquet else [daily_users],
        partition_key=DAY,
        resources={
            "users_api": RandomUserApi(base_url=users_api_server.base_url, users_per_partition=USERS),
            "files": PartitionFiles(data_dir=str(data_dir)),
            "warehouse": WarehouseResource(url=warehouse_url),
            "day_limits": DayLimits(),
            "spark": SparkSettings(shuffle_partitions=2),
        },
        raise_on_error=False,
    )
    assert result.success, [event.message for event in result.all_events if event.is_failure]

    sent = requests.get(users_api_server.base_url, params={"seed": DAY, "results": USERS}, timeout=30).json()["results"]
    assert [field(sent[index], "name.first") for index in HOSTILE_USERS] == ["Zoe\rAnn"] * len(HOSTILE_USERS)
    expected = as_sent(sent)
    # One JSON object per "\n" (str.splitlines would also split at the U+2028 inside a value).
    raw_lines = (data_dir / "raw_users" / f"{DAY}.jsonl").read_text(encoding="utf-8").split("\n")
    raw = [json.loads(line) for line in raw_lines if line]
    pd.testing.assert_frame_equal(as_sent(raw), expected)

    layers = {
        "csv": read_normalized_csv(data_dir / "normalized_users" / f"{DAY}.csv"),
        "table": open_warehouse(warehouse_url).read_partition(DAY),
    }
    if with_parquet:
        layers["parquet"] = pq.read_table(data_dir / "parquet" / "users" / f"partition_date={DAY}").to_pandas()
    for layer, frame in layers.items():
        frame = frame.set_index("user_id").sort_index()
        assert len(frame) == USERS, layer
        for column in expected.columns:
            if column in ("date_of_birth", "registered_at") and layer == "parquet":
                # Parquet holds these as timestamps: the same instants.
                assert frame[column].tolist() == pd.to_datetime(expected[column], utc=True).tolist()
                continue
            got = [None if pd.isna(value) else value for value in frame[column]]
            assert got == expected[column].tolist(), f"{layer}.{column}"
        hostile = frame.loc[[sent[index]["login"]["uuid"] for index in HOSTILE_USERS]]
        assert (hostile["id_name"] == "").all() and (hostile["title"] == "").all(), layer
    assert list(layers["csv"].columns) == list(USER_COLUMNS)
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "table_matches_normalized_users"]
    assert check.passed
