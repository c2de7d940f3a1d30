"""Any text survives the CSV format, SQLite and PostgreSQL byte for byte, "" apart from null (hypothesis)."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_pipeline.users.csv_format import CsvWriter
from user_pipeline.users.normalize import USER_COLUMNS, normalize_users, read_normalized_csv, write_normalized_csv
from user_pipeline.users.warehouse import TableMismatchError, open_warehouse
from user_pipeline_tests.hostile import NUL_TEXT, hostile_frame, hostile_text, user_rows

DAY = "2026-11-20"
# Each example is a real write and read (and a real transaction for the warehouse).
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


def by_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("email_key", kind="stable").reset_index(drop=True)


@PROPERTY
@given(frame=user_rows(DAY, allow_nul=True), chunk=st.integers(min_value=1, max_value=4))
def test_the_csv_format_round_trips_any_text_in_every_column(tmp_path_factory, frame, chunk):
    path = tmp_path_factory.mktemp("csv") / f"{DAY}.csv"
    with path.open("wb") as handle:
        writer = CsvWriter(handle, USER_COLUMNS)
        for start in range(0, len(frame), chunk):
            writer.write(frame[start : start + chunk])
        writer.close()
    pd.testing.assert_frame_equal(read_normalized_csv(path), frame.reset_index(drop=True))
    streamed = list(read_normalized_csv(path, chunk_rows=chunk))
    pd.testing.assert_frame_equal(pd.concat([frame[:0], *streamed], ignore_index=True), frame.reset_index(drop=True))


@pytest.mark.parametrize("where", ["first row", "a row across the reader's block boundary"])
def test_a_value_larger_than_the_readers_block_round_trips(tmp_path, where):
    # The reader streams the CSV in blocks (csv_format._BLOCK_SIZE); a row longer than a block, or
    # straddling two, must come back whole.
    from user_pipeline.users.csv_format import _BLOCK_SIZE

    rows = normalize_users([api_user(index, {}) for index in range(3)], DAY)
    big = '\u00e9\n",' * (_BLOCK_SIZE // 2)  # 1.5 block sizes of text with newlines, quotes and commas
    rows.loc[0 if where == "first row" else 2, "city"] = big
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:
        writer = CsvWriter(handle, USER_COLUMNS)
        writer.write(rows)
        writer.close()
    pd.testing.assert_frame_equal(read_normalized_csv(path), rows)
    pd.testing.assert_frame_equal(pd.concat(read_normalized_csv(path, chunk_rows=2), ignore_index=True), rows)


def api_user(index: int, fields: dict) -> dict:
    """One API user object with every normalized field; `fields` overrides dotted fields."""
    user = {
        "gender": "female",
        "email": f"user{index}@example.com",
        "phone": "1",
        "cell": "2",
        "nat": "CA",
        "name": {"title": "Ms", "first": "A", "last": "B"},
        "location": {
            "street": {"number": 1, "name": "S"},
            "city": "C",
            "state": "S",
            "country": "Canada",
            "postcode": "V0V 4U7",
            "coordinates": {"latitude": "-65.9485", "longitude": "1.5"},
            "timezone": {"offset": "+1:00"},
        },
        "login": {"uuid": f"id-{index}", "username": "u", "salt": "s", "sha256": "h"},
        "dob": {"date": "1966-01-01T00:00:00.000Z", "age": 60},
        "registered": {"date": "2010-01-01T00:00:00.000Z"},
        "id": {"name": "SIN", "value": "123"},
        "picture": {"large": "https://x/y.jpg"},
    }
    for dotted, value in fields.items():
        *parents, leaf = dotted.split(".")
        node = user
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return user


TEXT_FIELDS = [
    "name.first",
    "name.last",
    "name.title",
    "location.street.name",
    "location.city",
    "location.state",
    "location.country",
    "location.postcode",
    "id.name",
    "id.value",
    "login.username",
    "phone",
    "cell",
    "picture.large",
]


@PROPERTY
@given(values=st.lists(st.fixed_dictionaries(dict.fromkeys(TEXT_FIELDS, hostile_text)), min_size=1, max_size=5))
def test_api_text_reaches_the_normalized_csv_unchanged(tmp_path_factory, values):
    users = [api_user(index, fields) for index, fields in enumerate(values)]
    path = tmp_path_factory.mktemp("csv") / f"{DAY}.csv"
    write_normalized_csv([users], path, DAY)
    frame = read_normalized_csv(path)
    assert frame["first_name"].tolist() == [fields["name.first"] for fields in values]
    assert frame["id_name"].tolist() == [fields["id.name"] for fields in values]
    pd.testing.assert_frame_equal(frame, normalize_users(users, DAY))


def test_the_examples_of_the_issue_come_back_exactly(tmp_path):
    users = [
        api_user(0, {"name.first": "Zoe\rAnn", "location.street.name": "Parliament St"}),
        api_user(1, {"name.last": NUL_TEXT, "id.name": ""}),
        api_user(2, {"id.name": None}),
    ]
    path = tmp_path / f"{DAY}.csv"
    write_normalized_csv([users], path, DAY)
    frame = read_normalized_csv(path)
    assert frame["first_name"][0] == "Zoe\rAnn"
    assert frame["last_name"][1] == NUL_TEXT
    assert frame["id_name"][1] == ""  # empty is not missing
    assert frame["id_name"].isna().tolist() == [False, False, True]


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.sqlite"
    return request.getfixturevalue("postgres_url")


def test_the_warehouse_round_trips_the_hostile_values(warehouse_url):
    rows = hostile_frame(DAY)
    store = open_warehouse(warehouse_url)
    assert store.replace_partition(DAY, [rows]) == len(rows)
    pd.testing.assert_frame_equal(store.read_partition(DAY), by_key(rows))
    assert (store.read_partition(DAY)["id_name"] == "").sum() == 1  # empty is not missing


@PROPERTY
@given(frame=user_rows(DAY))
def test_sqlite_round_trips_any_text(tmp_path_factory, frame):
    store = open_warehouse(f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/warehouse.sqlite")
    load = store.replace_partition_verified(DAY, [frame])
    assert load.rows_inserted == len(frame)
    pd.testing.assert_frame_equal(store.read_partition(DAY), by_key(frame))


def test_sqlite_keeps_u0000(tmp_path):
    rows = hostile_frame(DAY, with_nul=True)
    store = open_warehouse(f"sqlite:///{tmp_path}/warehouse.sqlite")
    store.replace_partition(DAY, [rows])
    assert NUL_TEXT in store.read_partition(DAY)["last_name"].tolist()
    pd.testing.assert_frame_equal(store.read_partition(DAY), by_key(rows))


@PROPERTY
@given(frame=user_rows(DAY))
def test_postgres_round_trips_any_text(postgres_url, frame):
    store = open_warehouse(postgres_url)
    load = store.replace_partition_verified(DAY, [frame])
    assert load.rows_inserted == len(frame)
    pd.testing.assert_frame_equal(store.read_partition(DAY), by_key(frame))


def test_postgres_refuses_u0000_naming_the_user_and_column_and_keeps_the_day(postgres_url):
    store = open_warehouse(postgres_url)
    good = hostile_frame(DAY)
    store.replace_partition(DAY, [good])
    bad = good.copy()
    bad.loc[1, "last_name"] = NUL_TEXT
    with pytest.raises(ValueError) as refused:
        store.replace_partition(DAY, [bad])
    assert str(refused.value) == (
        f"{DAY} user {bad.loc[1, 'user_id']}: last_name holds U+0000, which PostgreSQL text cannot store"
    )
    pd.testing.assert_frame_equal(store.read_partition(DAY), by_key(good))


def test_a_value_the_store_changes_rolls_the_load_back(tmp_path):
    """SQLite keeps -0.0 as 0: the content hash of the rows read back differs, so the day is refused."""
    store = open_warehouse(f"sqlite:///{tmp_path}/warehouse.sqlite")
    good = hostile_frame(DAY)
    store.replace_partition(DAY, [good])
    changed = good.copy()
    changed.loc[0, "longitude"] = -0.0
    with pytest.raises(
        TableMismatchError, match=f"users {DAY}: the rows read back .* differ from the normalized_users CSV"
    ):
        store.replace_partition(DAY, [changed])
    pd.testing.assert_frame_equal(store.read_partition(DAY), by_key(good))


def test_text_that_is_not_unicode_fails_naming_the_user_and_column(tmp_path):
    """A lone surrogate (JSON "\\ud800") cannot be UTF-8: refused by name, no file written."""
    users = [api_user(0, {}), api_user(1, {"location.city": "bad \ud800 city"})]
    path = tmp_path / f"{DAY}.csv"
    with pytest.raises(
        ValueError, match=r"cannot write CSV: user id-1: city holds 'bad \\ud800 city', which is not string"
    ):
        write_normalized_csv([users], path, DAY)
    assert not path.exists()
