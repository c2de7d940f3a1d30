"""The declared user contract: every recorded real answer and the bundled server's users keep to it;
every hostile user (wrong type, missing field, null, bad format, NUL) is refused naming the field."""

import copy
import json
import sys
import unicodedata
from decimal import Decimal
from functools import reduce

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from user_pipeline.users.contract import (
    COORDINATE_FORMAT,
    ContractViolation,
    check_page,
    contract_fields,
    validate_user,
)
from user_pipeline.users.normalize import _SOURCE_FIELDS, read_normalized_csv, write_normalized_csv
from user_pipeline_tests.conftest import FIXTURES_DIR, skip_or_fail
from user_pipeline_tools.randomuser_server.generator import generate_user

FULL_FIXTURES = [
    "seed-2026-11-23_results-1.json",
    "seed-2026-11-23_results-100.json",
    "seed-fixture_results-1000_page-1.json",
    "seed-fixture_results-1000_page-2.json",
]


def recorded_users(name: str) -> list[dict]:
    path = FIXTURES_DIR / name
    if not path.exists():
        skip_or_fail(f"recorded API answers not found at {FIXTURES_DIR}")
    return json.loads(path.read_text(encoding="utf-8"))["results"]


@pytest.fixture(scope="module")
def real_user() -> dict:
    return recorded_users("seed-2026-11-23_results-1.json")[0]


@pytest.mark.parametrize("name", FULL_FIXTURES)
def test_every_recorded_real_user_keeps_to_the_contract(name):
    users = recorded_users(name)
    checked = check_page(users, seed="fixture", page=1, page_size=len(users))
    assert checked.rejected == {}
    assert checked.valid == users


def test_the_parts_of_a_partial_recorded_answer_keep_to_their_part_of_the_contract():
    # inc=name,email,login,location: only the fields asked for; each of them keeps to the contract.
    users = recorded_users("seed-2026-11-23_results-3_inc.json")
    for user in users:
        assert {v.field for v in validate_user(user)} == {
            "gender",
            "dob",
            "registered",
            "phone",
            "cell",
            "id",
            "picture",
            "nat",
        }


def test_the_bundled_servers_users_keep_to_the_contract():
    users = [generate_user("2026-11-20", k) for k in range(500)]
    assert check_page(users, seed="2026-11-20", page=1, page_size=500).rejected == {}


def test_the_contract_covers_every_field_normalization_reads():
    assert set(_SOURCE_FIELDS) <= set(contract_fields())


def get_path(user: dict, dotted: str):
    return reduce(lambda node, key: node[key], dotted.split("."), user)


def with_value(user: dict, dotted: str, value) -> dict:
    altered = copy.deepcopy(user)
    *parents, leaf = dotted.split(".")
    reduce(lambda node, key: node[key], parents, altered)[leaf] = value
    return altered


def without(user: dict, dotted: str) -> dict:
    altered = copy.deepcopy(user)
    *parents, leaf = dotted.split(".")
    del reduce(lambda node, key: node[key], parents, altered)[leaf]
    return altered


def test_the_issue_examples_are_refused_naming_field_and_value(real_user):
    street_as_text = with_value(real_user, "location.street", "Parliament St")
    [violation] = validate_user(street_as_text)
    assert (violation.field, violation.value) == ("location.street", "'Parliament St'")
    [violation] = validate_user(with_value(real_user, "login.uuid", None))
    assert (violation.field, violation.value) == ("login.uuid", "None")
    [violation] = validate_user(with_value(real_user, "name.last", "Null\u0000Byte"))
    assert violation.field == "name.last"
    assert "U+0000" in violation.reason


def test_a_violation_names_seed_page_index_user_number_and_shortens_the_value(real_user):
    users = [real_user, with_value(real_user, "location.city", "x" * 500)]
    users[1] = with_value(users[1], "location.city", 12345)
    users.append(with_value(real_user, "location.street.number", "9" * 500))
    checked = check_page(users, seed="2026-11-20", page=3, page_size=100)
    assert checked.valid == [real_user]
    assert sorted(checked.rejected) == [1, 2]
    [long_value] = checked.rejected[2][1]
    assert long_value.describe().startswith(
        "seed '2026-11-20' page 3 results[2] (user 202 of the seed): location.street.number: "
    )
    assert long_value.value == "'" + "9" * 56 + "..."
    error = ContractViolation([v for _, found in checked.rejected.values() for v in found])
    assert str(error) == (
        "users API answer breaks the user contract: seed '2026-11-20' page 3 results[1] (user 201 of the seed): "
        "location.city: Input should be a valid string (got 12345); 1 more user(s) break the contract too"
    )


def test_a_plaintext_password_is_never_shown_in_a_violation(real_user):
    broken = with_value(real_user, "login.uuid", 7)
    broken["login"]["password"] = "hunter2"
    not_an_object = [{"login": {"password": "hunter2"}}]
    shown = [v.value for user in (broken, not_an_object) for v in validate_user(user)]
    assert shown and not any("hunter2" in value for value in shown)
    assert validate_user(with_value(real_user, "login.password", 5)) == [], "the contract does not read the password"
    [whole_user] = validate_user(not_an_object)
    assert whole_user.field == "(the user)"
    assert whole_user.value == "[{'login': {'password': '***'}}]"


def test_accepted_variants_seen_in_real_answers(real_user):
    for dotted, value in [
        ("location.postcode", 48687),
        ("location.postcode", "V0V 4U7"),
        ("id.value", None),
        ("id.name", ""),
        ("location.coordinates.latitude", "-65.9485"),
        ("location.coordinates.longitude", 143.1243),
        ("dob.date", "1991-10-01T07:08:32+02:00"),
        ("extra_field", {"any": ["thing"]}),
    ]:
        assert validate_user(with_value(real_user, dotted, value)) == [], (dotted, value)


# Hostile values: each is wrong for every declared leaf it is tried on (the contract's leaves are
# text, integers or numeric text, none of them accepts these).
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
NULLABLE = {"id.value"}


OBJECTS = [
    "name",
    "location",
    "location.street",
    "location.coordinates",
    "location.timezone",
    "login",
    "dob",
    "registered",
    "id",
    "picture",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(contract_fields() + OBJECTS), value=HOSTILE)
def test_a_wrong_type_or_null_at_any_field_is_refused_naming_it(real_user, field, value):
    if value is None and field in NULLABLE:
        assert validate_user(with_value(real_user, field, value)) == []
        return
    violations = validate_user(with_value(real_user, field, value))
    assert violations, (field, value)
    assert {v.field.split(".")[: len(field.split("."))] == field.split(".") for v in violations} == {True}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(contract_fields() + OBJECTS))
def test_a_missing_field_is_refused_naming_it(real_user, field):
    [violation] = validate_user(without(real_user, field))
    assert (violation.field, violation.reason, violation.value) == (field, "missing", "nothing")


TEXT_FIELDS = [f for f in contract_fields() if isinstance(get_path(generate_user("t", 0), f), str)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(TEXT_FIELDS), before=st.text(max_size=5), after=st.text(max_size=5))
def test_nul_in_any_text_field_is_refused_naming_it(real_user, field, before, after):
    violations = validate_user(with_value(real_user, field, before + "\u0000" + after))
    assert [v.field for v in violations] == [field]


BAD_FORMATS = {
    "login.uuid": st.text(max_size=40).filter(lambda s: len(s) != 36),
    "email": st.text(alphabet="abc .", max_size=20),
    "dob.date": st.sampled_from(
        ["1991-10-01", "01/10/1991", "1991-13-01T00:00:00Z", "1991-02-30T07:08:32.394Z", "yesterday"]
    ),
    "registered.date": st.sampled_from(["2009-06-08 13:21", "", "2009-06-08T25:00:00Z"]),
    "location.coordinates.latitude": st.sampled_from(["north", "", "91", "-90.5", "nan", "inf"]),
    "location.coordinates.longitude": st.sampled_from(["east", "180.01", "1e400"]),
    "location.postcode": st.sampled_from([1.5, "", None, True]),
    "login.sha256": st.text(alphabet="0123456789abcdefXYZ", max_size=70).filter(lambda s: len(s) != 64 or "X" in s),
    "nat": st.sampled_from(["us", "USA", "", "U1"]),
    "dob.age": st.sampled_from([-1, 35.0, "35"]),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), field=st.sampled_from(sorted(BAD_FORMATS)))
def test_a_bad_format_is_refused_naming_the_field(real_user, data, field):
    value = data.draw(BAD_FORMATS[field])
    violations = validate_user(with_value(real_user, field, value))
    assert violations and {v.field for v in violations} == {field}, (field, value)


def valid_users():
    """Users built field by field from the contract's own value space."""
    text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
    non_empty = text.filter(bool)
    number = st.integers(-(10**9), 10**9)
    return st.fixed_dictionaries(
        {
            "gender": non_empty,
            "name": st.fixed_dictionaries({"title": text, "first": non_empty, "last": non_empty}),
            "location": st.fixed_dictionaries(
                {
                    "street": st.fixed_dictionaries({"number": number, "name": non_empty}),
                    "city": non_empty,
                    "state": text,
                    "country": non_empty,
                    "postcode": st.one_of(number, non_empty),
                    "coordinates": st.fixed_dictionaries(
                        {
                            "latitude": st.one_of(st.floats(-90, 90), st.floats(-90, 90).map(str)),
                            "longitude": st.one_of(
                                st.floats(-180, 180), st.floats(-180, 180).map(lambda x: f"{x:.4f}")
                            ),
                        }
                    ),
                    "timezone": st.fixed_dictionaries(
                        {"offset": st.from_regex(r"\A[+-]?[0-9]{1,2}:[0-9]{2}\Z"), "description": text}
                    ),
                }
            ),
            "email": st.emails(),
            "login": st.fixed_dictionaries(
                {
                    "uuid": st.uuids().map(str),
                    "username": non_empty,
                    "salt": non_empty,
                    "sha256": st.text("0123456789abcdef", min_size=64, max_size=64),
                }
            ),
            "dob": st.fixed_dictionaries(
                {
                    "date": st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "Z"),
                    "age": st.integers(0, 150),
                }
            ),
            "registered": st.fixed_dictionaries(
                {"date": st.datetimes().map(lambda d: d.isoformat() + "+00:00"), "age": st.integers(0, 150)}
            ),
            "phone": text,
            "cell": text,
            "id": st.fixed_dictionaries({"name": text, "value": st.one_of(st.none(), text)}),
            "picture": st.fixed_dictionaries({"large": non_empty}),
            "nat": st.from_regex(r"\A[A-Z]{2}\Z"),
        }
    )


@settings(max_examples=300, deadline=None)
@given(users=st.lists(valid_users(), min_size=1, max_size=5))
def test_valid_generated_users_pass_untouched(users):
    before = copy.deepcopy(users)
    checked = check_page(users, seed="s", page=1, page_size=len(users))
    assert checked.rejected == {}, [v.describe() for _, found in checked.rejected.values() for v in found]
    assert checked.valid == before


# A key holding "." (never in the API's shape): flattened, it names the same column as a nested
# field, e.g. location["street.name"] and location.street.name, and one of the two values is lost.
def objects_of(node, path=()):
    """The dotted paths of every object in a user, the user itself as ()."""
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from objects_of(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from objects_of(item, (*path, index))


def with_key(user: dict, path: tuple, key: str, value) -> dict:
    altered = copy.deepcopy(user)
    reduce(lambda node, part: node[part], path, altered)[key] = value
    return altered


@pytest.fixture(scope="module")
def user_with_nested_extras(real_user) -> dict:
    # Fields the pipeline does not read are kept in raw_users as sent: a dotted key there is refused too.
    return with_value(real_user, "extra_field", {"tags": [{"kind": {"a": 1}}, "x"]})


def test_the_issue_examples_of_dotted_keys_are_refused_naming_the_key(real_user):
    beside_nested = with_key(real_user, ("location",), "street.name", "Other St")
    [violation] = validate_user(beside_nested)
    assert (violation.field, violation.value) == ("location", "'Other St'")
    assert violation.reason == (
        "key 'street.name' holds '.', the separator of flattened field names "
        "(location.street.name would name two values)"
    )
    top_level = with_key(real_user, (), "location.street", {"number": 1, "name": "Other St"})
    [violation] = validate_user(top_level)
    assert violation.field == "(the user)"
    assert violation.reason.startswith("key 'location.street' holds '.'")
    checked = check_page([real_user, beside_nested], seed="2026-11-20", page=2, page_size=100)
    assert checked.valid == [real_user] and list(checked.rejected) == [1]
    assert str(ContractViolation(checked.rejected[1][1])) == (
        "users API answer breaks the user contract: seed '2026-11-20' page 2 results[1] (user 101 of the seed): "
        "location: key 'street.name' holds '.', the separator of flattened field names "
        "(location.street.name would name two values) (got 'Other St')"
    )


def test_a_dotted_key_under_login_never_shows_a_password(real_user):
    [violation] = validate_user(with_key(real_user, ("login",), "password.old", "hunter2"))
    assert (violation.field, violation.value) == ("login", "***")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    before=st.text(max_size=4),
    after=st.text(max_size=4),
    value=st.one_of(
        st.none(), st.integers(), st.text(max_size=5), st.dictionaries(st.text("ab", max_size=2), st.integers())
    ),
)
def test_a_key_holding_a_dot_is_refused_at_any_depth_naming_the_object_and_the_key(
    user_with_nested_extras, data, before, after, value
):
    path = data.draw(st.sampled_from(list(objects_of(user_with_nested_extras))))
    key = before + "." + after
    violations = validate_user(with_key(user_with_nested_extras, path, key, value))
    expected_field = ".".join(map(str, path)) or "(the user)"
    assert [(v.field, v.reason.split(" holds ")[0]) for v in violations] == [(expected_field, f"key {key!r}")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    size=st.integers(min_value=1, max_value=6),
    key=st.sampled_from(["a.b", ".", "street.name", "x."]),
    value=st.one_of(
        st.none(), st.integers(), st.text(max_size=3), st.dictionaries(st.sampled_from("ab."), st.integers())
    ),
    break_another=st.booleans(),
)
def test_a_page_finds_exactly_the_users_with_a_dotted_key_among_valid_and_invalid_ones(
    user_with_nested_extras, real_user, data, size, key, value, break_another
):
    # check_page looks for dotted keys over the whole page at once (and, where the page passed the
    # declared shape, only where it is not declared): the users it rejects and why must be what
    # checking each user alone finds, wherever the key is and whatever else is wrong on the page.
    users = [copy.deepcopy(data.draw(st.sampled_from([real_user, user_with_nested_extras]))) for _ in range(size)]
    dotted = data.draw(st.sets(st.integers(min_value=0, max_value=size - 1), max_size=size))
    for index in dotted:
        path = data.draw(st.sampled_from(list(objects_of(users[index]))))
        users[index] = with_key(users[index], path, key, value)
    if break_another:
        users[data.draw(st.integers(min_value=0, max_value=size - 1))]["email"] = 7
    checked = check_page(copy.deepcopy(users), seed="s", page=1, page_size=size)
    alone = {index: validate_user(user) for index, user in enumerate(users)}
    expected = {index: [(v.field, v.reason) for v in found] for index, found in alone.items() if found}
    assert {index: [(v.field, v.reason) for v in found] for index, (_, found) in checked.rejected.items()} == expected
    assert set(dotted) <= set(expected)


# Numeric text: Python's float() and int() read any Unicode decimal digit ("٤٥.٥", "４５"), "_"
# and surrounding whitespace; what normalization stores must be the number sent, or be refused.
NUMERIC_TEXT_FIELDS = [
    "location.coordinates.latitude",
    "location.coordinates.longitude",
    "location.timezone.offset",
    "dob.date",
    "registered.date",
]


# Every decimal digit of every script but ASCII (Unicode category Nd), by its value.
OTHER_DIGITS: dict[int, list[str]] = {value: [] for value in range(10)}
for char in map(chr, range(128, sys.maxunicode + 1)):
    if unicodedata.category(char) == "Nd":
        OTHER_DIGITS[unicodedata.decimal(char)].append(char)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), field=st.sampled_from(NUMERIC_TEXT_FIELDS))
def test_numeric_text_in_other_scripts_digits_is_refused_naming_the_field(real_user, data, field):
    sent = get_path(real_user, field)
    positions = [i for i, char in enumerate(sent) if char.isascii() and char.isdigit()]
    chosen = data.draw(st.sets(st.sampled_from(positions), min_size=1))
    value = "".join(
        data.draw(st.sampled_from(OTHER_DIGITS[int(char)])) if i in chosen else char for i, char in enumerate(sent)
    )
    violations = validate_user(with_value(real_user, field, value))
    assert [v.field for v in violations] == [field], (field, value)


def test_the_issue_examples_of_other_digits_and_their_siblings_are_refused(real_user):
    latitude = "location.coordinates.latitude"
    for value in ["٠", "٤٥.٥", "４５.５", "𝟒𝟓", "4_5", " 45", "45\n", "45.5e", "1e-400", "12.345678901234567891"]:
        [violation] = validate_user(with_value(real_user, latitude, value))
        assert violation.field == latitude, value
    [violation] = validate_user(with_value(real_user, latitude, "٤٥.٥"))
    assert violation.reason == COORDINATE_FORMAT
    [violation] = validate_user(with_value(real_user, latitude, "12.345678901234567891"))
    assert violation.reason == (
        "has more digits than the stored 64-bit float keeps: it would be stored as 12.345678901234567"
    )
    for value in ["+1:00", "-٢:٠٠", "１:００", "-2:0٠"]:
        assert [v.field for v in validate_user(with_value(real_user, "location.timezone.offset", value))] == (
            [] if value == "+1:00" else ["location.timezone.offset"]
        ), value


COORDINATE_TEXT = st.one_of(
    st.text(max_size=8),
    st.from_regex(r"\A[ +-]?[0-9٠-٩０-９]{0,3}(\.[0-9]{0,25})?([eE][+-]?[0-9]{1,3})?\s?\Z"),
    st.floats(-90, 90).map(repr),
    st.decimals(-90, 90, allow_nan=False, allow_infinity=False).map(str),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=COORDINATE_TEXT)
@example(text="0.28836075983867565")  # pandas' parser stored 0.2883607598386756
@example(text="-65.9480")
def test_coordinate_text_the_contract_accepts_is_stored_as_the_same_number(real_user, tmp_path_factory, text):
    user = with_value(real_user, "location.coordinates.latitude", text)
    violations = validate_user(user)
    if violations:
        assert [v.field for v in violations] == ["location.coordinates.latitude"], text
        return
    path = tmp_path_factory.mktemp("csv") / "2026-11-20.csv"
    write_normalized_csv([[user]], path, "2026-11-20")
    [stored] = read_normalized_csv(path)["latitude"].tolist()
    assert Decimal(text) == Decimal(repr(stored)), (text, stored)
