"""The one pass writes what reading the raw file back wrote: raw lines, CSV bytes, receipt and kept
fingerprints equal, for hostile API users (hypothesis); field-by-field flattening equals json_normalize."""

import copy
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from user_pipeline.users import normalize
from user_pipeline.users.api_client import UsersPage, loads_noting_floats
from user_pipeline.users.contract import check_page
from user_pipeline.users.csv_format import write_csv
from user_pipeline.users.days import SamePassCsv, fetch_day, normalize_day
from user_pipeline.users.normalize import (
    USER_COLUMNS,
    _flatten_declared_shape,
    normalize_users,
    normalize_users_by_json_normalize,
    read_normalized_csv,
)
from user_pipeline.users.raw_files import json_lines, read_raw_users, users_of_lines
from user_pipeline.users.receipts import fingerprints_path, read_fingerprints, row_fingerprints
from user_pipeline_tests.conftest import FIXTURES_DIR
from user_pipeline_tests.hostile import hostile_text

DAY = "2026-11-20"
PROPERTY = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
RECORDED = json.loads((FIXTURES_DIR / "seed-fixture_results-1000_page-1.json").read_text(encoding="utf-8"))["results"]

TEXT_FIELDS = [
    "gender",
    "name.title",
    "name.first",
    "name.last",
    "location.street.name",
    "location.city",
    "location.state",
    "location.country",
    "location.timezone.offset",
    "email",
    "login.username",
    "login.salt",
    "login.sha256",
    "dob.date",
    "registered.date",
    "phone",
    "cell",
    "id.name",
    "picture.large",
    "nat",
]
INT_FIELDS = ["dob.age", "location.street.number"]
COORDINATES = ["location.coordinates.latitude", "location.coordinates.longitude"]

numeric_text = st.from_regex(r"\A[+-]?[0-9]{1,3}(\.[0-9]{1,8})?([eE][+-]?[0-9]{1,2})?\Z")
# Edges where a number could come out changed: signed zeros, exponents, integers past 2**53.
edge_numbers = st.sampled_from([-0.0, 0.0, 1e-7, -1e-05, 1e16, 2**53 + 1, -(2**63), 2**63 - 1, "-0", "-0.0", "1e-7"])
number = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60))
int64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-(2**63), 2**63 - 1, 2**53 + 1, 0]))
# What the contract lets through (contract.py): the shape the field-by-field path reads.
declared_values = {
    **dict.fromkeys(TEXT_FIELDS, hostile_text),
    **dict.fromkeys(INT_FIELDS, int64),
    **dict.fromkeys(COORDINATES, st.one_of(numeric_text, number, edge_numbers)),
    "location.postcode": st.one_of(hostile_text, st.integers(-(2**70), 2**70)),
    "id.value": st.one_of(hostile_text, st.none()),
    "login.uuid": hostile_text,
}
# Anything JSON can hold, in any field: what json_normalize alone decides.
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), number, hostile_text),
    lambda inner: st.dictionaries(st.sampled_from(["a", "b.c", "name", "first"]), inner, max_size=2),
    max_leaves=3,
)
any_values = {name: st.one_of(strategy, json_value) for name, strategy in declared_values.items()}


def set_field(user: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    for parent in parents:
        user = user[parent]
    user[leaf] = value


@st.composite
def api_users(draw, values: dict, *, reshape: bool = False) -> list[dict]:
    """Recorded users with drawn values in drawn fields; `reshape`: also dotted keys, missing
    fields and values where objects stand."""
    users = []
    for index in range(draw(st.integers(min_value=1, max_value=4))):
        user = copy.deepcopy(RECORDED[index])
        for dotted in draw(st.lists(st.sampled_from(sorted(values)), unique=True, max_size=8)):
            set_field(user, dotted, draw(values[dotted]))
        if reshape:
            for dotted in draw(st.lists(st.sampled_from(sorted(values)), unique=True, max_size=2)):
                *parents, leaf = dotted.split(".")
                holder = user
                for parent in parents:
                    holder = holder.get(parent) if isinstance(holder, dict) else None
                if isinstance(holder, dict) and draw(st.booleans()):
                    holder.pop(leaf, None)
            if draw(st.booleans()):
                # A key holding "." next to the nested field it spells: json_normalize's last write wins.
                dotted = draw(st.sampled_from(sorted(values)))
                first, _, rest = dotted.partition(".")
                target = user.get(first) if rest and isinstance(user.get(first), dict) else user
                target[rest if target is not user else dotted] = draw(hostile_text)
        users.append(user)
    return users


def outcome(normalize_function, users: list[dict]):
    try:
        return normalize_function(copy.deepcopy(users), DAY)
    except (ValueError, TypeError, OverflowError) as error:
        return type(error), str(error)


def csv_bytes(frame: pd.DataFrame) -> bytes | str:
    """The frame as the CSV writer writes it (what a signed zero or a rounding would change)."""
    handle = io.BytesIO()
    try:
        write_csv(handle, frame, USER_COLUMNS)
    except ValueError as error:
        return str(error)
    return handle.getvalue()


def assert_same_outcome(users: list[dict]) -> None:
    fast, reference = outcome(normalize_users, users), outcome(normalize_users_by_json_normalize, users)
    if isinstance(reference, pd.DataFrame):
        assert isinstance(fast, pd.DataFrame), fast
        pd.testing.assert_frame_equal(fast, reference, check_exact=True)
        assert csv_bytes(fast) == csv_bytes(reference)
    else:
        assert fast == reference


def takes_the_field_by_field_path(users: list[dict]) -> bool:
    """A frame, or the refusal of a number that would not be stored as sent (2**53 + 1 as a
    coordinate), which json_normalize's path refuses alike (assert_same_outcome)."""
    try:
        return _flatten_declared_shape(copy.deepcopy(users)) is not None
    except ValueError as error:
        return "than the stored 64-bit float keeps" in str(error)


@PROPERTY
@given(users=api_users(declared_values))
def test_users_of_the_declared_shape_are_flattened_field_by_field_as_json_normalize_does(users):
    assert takes_the_field_by_field_path(users), "the declared shape takes the field-by-field path"
    assert_same_outcome(users)


@PROPERTY
@given(users=api_users(declared_values), edges=st.booleans())
def test_users_the_contract_passed_are_flattened_the_same_without_checking_their_shape_again(users, edges):
    # The same pass hands normalize the users check_page passed, and it skips the contract's checks.
    if edges:
        for user, (dotted, values) in zip(users, EDGES.items(), strict=False):
            set_field(user, dotted, values[len(user["email"]) % len(values)])
    valid = check_page(copy.deepcopy(users), seed=DAY, page=1, page_size=len(users)).valid
    assume(valid)
    checked, reference = (
        outcome(lambda users, day: normalize_users(users, day, contract_checked=True), valid),
        outcome(normalize_users, valid),
    )
    if isinstance(reference, pd.DataFrame):
        pd.testing.assert_frame_equal(checked, reference, check_exact=True)
    else:
        assert checked == reference


EDGES = {
    **dict.fromkeys(COORDINATES, [-0.0, "-0", "-0.0", 1e-7, "1e-7", 2**53 + 1, "71.2731"]),
    **dict.fromkeys(INT_FIELDS, [-(2**63), 2**63 - 1, 2**53 + 1, 0]),
    "location.postcode": [2**70, 48687, "048687"],
    "id.value": [None, ""],
}


@pytest.mark.parametrize(("dotted", "value"), [(dotted, value) for dotted, values in EDGES.items() for value in values])
def test_edge_values_come_out_as_json_normalize_gives_them(dotted, value):
    users = copy.deepcopy(RECORDED[:3])
    set_field(users[1], dotted, value)
    assert takes_the_field_by_field_path(users)
    assert_same_outcome(users)


@PROPERTY
@given(users=api_users(any_values, reshape=True))
def test_users_of_any_shape_give_what_json_normalize_gives(users):
    assert_same_outcome(users)


def holds_float(value: object) -> bool:
    if isinstance(value, dict):
        return any(map(holds_float, value.values()))
    if isinstance(value, list):
        return any(map(holds_float, value))
    return isinstance(value, float)


def reference_raw_lines(users: list[dict]) -> bytes:
    return "".join(json.dumps(user, ensure_ascii=False, separators=(",", ":")) + "\n" for user in users).encode()


@PROPERTY
@given(users=api_users(any_values))
def test_raw_lines_are_json_dumps_bytes_whether_or_not_the_page_had_floats(users):
    text = json.dumps({"results": users}, ensure_ascii=False)
    parsed, has_floats = loads_noting_floats(text)
    assert has_floats == holds_float(users)
    assert json_lines(parsed["results"], has_floats=has_floats) == reference_raw_lines(parsed["results"])


@PROPERTY
@given(users=api_users(any_values))
def test_a_pages_raw_lines_read_back_in_one_call_are_the_users_line_by_line(users):
    """users_of_lines (a one-day run's pages, from the worker that fetched them) against json.loads
    of each line as read_raw_users reads a raw file: compared as the JSON text they give (NaN)."""
    parsed, has_floats = loads_noting_floats(json.dumps({"results": users}, ensure_ascii=False))
    lines = json_lines(parsed["results"], has_floats=has_floats)
    by_line = [json.loads(line) for line in lines.split(b"\n")[:-1]]
    assert reference_raw_lines(users_of_lines(lines)) == reference_raw_lines(by_line) == lines


def pages_of(users: list[dict], size: int) -> list[UsersPage]:
    """The API's answer pages for `users`, as the client parses them (floats noted)."""
    pages = []
    for start in range(0, len(users), size):
        payload, has_floats = loads_noting_floats(json.dumps({"results": users[start : start + size]}))
        pages.append(UsersPage(DAY, start // size + 1, payload["results"], has_floats))
    return pages


def read_back_way(raw: Path, csv_path: Path, chunk_rows: int, monkeypatch: pytest.MonkeyPatch):
    """What normalize_day wrote before the one pass: the raw file read back, flattened by json_normalize."""
    with monkeypatch.context() as patched:
        patched.setattr(
            normalize, "normalize_users", lambda users, day, **_: normalize_users_by_json_normalize(users, day)
        )
        return normalize_day(
            DAY, raw, csv_path, previous_csv=csv_path, max_row_drop_fraction=1.0, chunk_rows=chunk_rows
        )


@PROPERTY
@given(
    users=api_users(declared_values),
    page_size=st.integers(min_value=1, max_value=3),
    chunk_rows=st.integers(min_value=1, max_value=5),
)
def test_the_same_pass_writes_the_bytes_and_receipt_of_normalizing_the_raw_file(
    tmp_path_factory, monkeypatch, users, page_size, chunk_rows
):
    folder = tmp_path_factory.mktemp("day")
    # Quarantine: the contract leaves hostile users out the same way for both.
    same_pass = SamePassCsv(DAY, folder / "one_pass.csv", chunk_rows)
    fetched = fetch_day(
        DAY,
        pages_of(users, page_size),
        folder / "raw.jsonl",
        rejects_path=folder / "rejects.jsonl",
        same_pass=same_pass,
    )
    assert (folder / "raw.jsonl").read_bytes() == reference_raw_lines(
        [user for chunk in read_raw_users(folder / "raw.jsonl") for user in chunk]
    )
    try:
        one_pass = normalize_day(
            DAY,
            folder / "raw.jsonl",
            folder / "one_pass.csv",
            previous_csv=folder / "one_pass.csv",
            max_row_drop_fraction=1.0,
            chunk_rows=chunk_rows,
            same_pass=same_pass,
        )
    except ValueError as error:
        with pytest.raises(ValueError) as reference_error:
            read_back_way(folder / "raw.jsonl", folder / "read_back.csv", chunk_rows, monkeypatch)
        assert str(error) == str(reference_error.value)
        assert not (folder / "one_pass.csv").exists() and not list(folder.glob(".*.tmp"))
        return
    read_back = read_back_way(folder / "raw.jsonl", folder / "read_back.csv", chunk_rows, monkeypatch)

    assert (folder / "one_pass.csv").read_bytes() == (folder / "read_back.csv").read_bytes()
    assert one_pass.receipt == read_back.receipt and one_pass.audit == read_back.audit
    assert one_pass.summary.users_read == read_back.summary.users_read == fetched.raw.users
    pd.testing.assert_frame_equal(one_pass.summary.preview, read_back.summary.preview)
    kept = read_fingerprints(fingerprints_path(folder / "one_pass.csv"), folder / "one_pass.csv")
    pd.testing.assert_series_equal(kept, row_fingerprints(read_normalized_csv(folder / "one_pass.csv", chunk_rows=2)))
    assert (fingerprints_path(folder / "one_pass.csv").read_bytes()) == fingerprints_path(
        folder / "read_back.csv"
    ).read_bytes()


def test_a_fetch_that_fails_leaves_no_csv_and_no_temporary_file(tmp_path):
    def pages():
        yield UsersPage(DAY, 1, copy.deepcopy(RECORDED[:3]), False)
        raise ConnectionError("the API went away")

    same_pass = SamePassCsv(DAY, tmp_path / "day.csv", chunk_rows=2)
    with pytest.raises(ConnectionError):
        fetch_day(DAY, pages(), tmp_path / "raw.jsonl", same_pass=same_pass)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("reshape", ["dotted key beside the nested field", "text field holding a number"])
def test_a_raw_file_read_back_is_normalized_as_json_normalize_does_whatever_its_users(tmp_path, reshape):
    # A committed raw file may predate the contract: re-normalizing it (normalized_users alone)
    # must not take the shortcuts the same pass takes for users the contract passed.
    users = copy.deepcopy(RECORDED[:3])
    if reshape.startswith("dotted"):
        users[1]["location"]["street.name"] = "Other St"
    else:
        users[1]["location"]["city"] = 12
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(reference_raw_lines(users))
    csv_path = tmp_path / "day.csv"
    normalize_day(DAY, raw, csv_path, previous_csv=csv_path, max_row_drop_fraction=1.0)
    assert csv_path.read_bytes() == csv_bytes(normalize_users_by_json_normalize(copy.deepcopy(users), DAY))
