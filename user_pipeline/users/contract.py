"""The declared contract for one user of the Random User API 1.4: every field the pipeline reads.

Plain pydantic v2, no Dagster. A page of users is validated in one call (`check_page`), and every
violation is reported with the user's position, the dotted field, the reason and the offending
value (shortened; `login.password` is never shown).

What the contract holds, from the recorded real answers (../shared/fixtures/randomuser) and
`_SOURCE_FIELDS` in normalize.py:

- nested objects must be objects (`location.street` as a string, the API's older shape, is refused);
- text fields are strings, never null unless said so (`id.value` may be null, `id.name` empty);
  no text holds U+0000, which PostgreSQL text cannot store;
- `login.uuid` is a UUID, `email` looks like an address, `dob.date` / `registered.date` are ISO
  8601 timestamps, ages and the street number are integers (not booleans);
- coordinates are numbers or numeric text within [-90, 90] / [-180, 180], the text in ASCII
  decimal notation and stored as the same number (`stored_float`, which normalization reads them
  with); every format of digits (timestamps, `location.timezone.offset` as ±H:MM) takes ASCII
  digits only;
- `location.postcode` is an integer or text (the API sends both 48687 and "V0V 4U7"): kept as text
  downstream;
- fields the pipeline does not read (md5, sha1, picture.medium, ...) and extra fields are allowed
  and kept in raw_users as sent;
- no key of any object at any depth, read or not, holds "." (`_dotted_keys`): the API never sends
  one, and flattened, `location["street.name"]` and `location.street.name` are one column, so one
  of the two values would be silently lost.

Pydantic rather than pandera: the input is nested JSON objects, not a table, and pydantic's Rust
core validates a whole page of them in one call with exact per-field locations; pandera would need
the page flattened into a DataFrame first, which is the step that lost the nesting in the first place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict, get_type_hints, is_typeddict

MAX_VALUE_CHARS = 60
DOTTED_KEY_REASON = "key {key!r} holds '.', the separator of flattened field names ({flat} would name two values)"
NUL_REASON = "holds U+0000 (NUL), which PostgreSQL text cannot store"
HIDDEN_FIELDS = frozenset({"login.password"})

_NO_NUL = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(strict=True, pattern=_NO_NUL)]
NonEmptyText = Annotated[str, StringConstraints(strict=True, min_length=1, pattern=_NO_NUL)]
Uuid = Annotated[
    str,
    StringConstraints(
        strict=True, pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
]
Email = Annotated[str, StringConstraints(strict=True, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")]
HexDigest = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{64}$")]
Nationality = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{2}$")]
# [0-9], never \d: pydantic's Rust regex reads \d as any script's decimal digit.
UtcOffset = Annotated[str, StringConstraints(strict=True, pattern=r"^[+-]?[0-9]{1,2}:[0-9]{2}$")]
Count = Annotated[int, Field(strict=True, ge=0)]


def _iso_timestamp(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 timestamp such as 1991-10-01T07:08:32.394Z") from None
    return value


Timestamp = Annotated[
    str,
    StringConstraints(
        strict=True,
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
    ),
    AfterValidator(_iso_timestamp),
]


# ASCII decimal notation, as in JSON numbers. Python's float() reads more: any script's decimal
# digits ("٤٥.٥", "４５.５"), "_" between digits and surrounding whitespace.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
COORDINATE_FORMAT = "a coordinate must be a number or numeric text in ASCII digits such as -65.9485"


def stored_float(value: str | int | float) -> float:
    """The 64-bit float a number or numeric text is stored as: normalization reads coordinates
    with it, so what the contract accepts is what is stored.

    Text is read only in ASCII decimal notation (`_DECIMAL_TEXT`), correctly rounded (Python's
    float(); pandas' own parser rounds some 17-digit texts to a neighbouring float). Raises
    ValueError when `value` is not a number or such text, or when the finite float is not the
    number sent (more digits than a float keeps, or an underflow to 0)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(COORDINATE_FORMAT)
    if isinstance(value, float):
        return value
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError(COORDINATE_FORMAT)
    number = float(value)
    # The shortest text of the float (repr) is what the CSV and the table read back; text that is
    # that text already (as the API sends coordinates) is the same number without a Decimal.
    if math.isfinite(number) and value != repr(number) and Decimal(value) != Decimal(repr(number)):
        raise ValueError(f"has more digits than the stored 64-bit float keeps: it would be stored as {number!r}")
    return number


def _coordinate(limit: float):
    def check(value: Any) -> Any:
        number = stored_float(value)
        if not math.isfinite(number) or abs(number) > limit:
            raise ValueError(f"a coordinate must be a finite number within [-{limit:g}, {limit:g}]")
        return value

    return check


# Numbers or numeric text: the API sends "71.2731"; the value itself is kept as sent.
Latitude = Annotated[Any, AfterValidator(_coordinate(90))]
Longitude = Annotated[Any, AfterValidator(_coordinate(180))]


def _postcode(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise ValueError("a postcode must be an integer or non-empty text")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(NUL_REASON)
    return value


# An integer or text, kept as sent here; normalization turns both into text without a float detour.
Postcode = Annotated[Any, AfterValidator(_postcode)]


class _Part(TypedDict):
    # Extra fields are allowed (kept in raw_users); values are never coerced. TypedDicts rather
    # than BaseModels: validated the same way, 2-3x faster, since no model instance is built.
    __pydantic_config__ = ConfigDict(extra="allow", strict=True)  # type: ignore[misc]


class Name(_Part):
    title: Text
    first: NonEmptyText
    last: NonEmptyText


class Street(_Part):
    number: Annotated[int, Field(strict=True)]
    name: NonEmptyText


class Coordinates(_Part):
    latitude: Latitude
    longitude: Longitude


class Timezone(_Part):
    offset: UtcOffset
    description: Text


class Location(_Part):
    street: Street
    city: NonEmptyText
    state: Text
    country: NonEmptyText
    postcode: Postcode
    coordinates: Coordinates
    timezone: Timezone


class Login(_Part):
    uuid: Uuid
    username: NonEmptyText
    salt: NonEmptyText
    sha256: HexDigest


class DateAndAge(_Part):
    date: Timestamp
    age: Count


class Identity(_Part):
    name: Text
    value: Text | None


class Picture(_Part):
    large: NonEmptyText


class ApiUser(_Part):
    """One user as the Random User API 1.4 sends it, limited to the fields the pipeline reads."""

    gender: NonEmptyText
    name: Name
    location: Location
    email: Email
    login: Login
    dob: DateAndAge
    registered: DateAndAge
    phone: Text
    cell: Text
    id: Identity
    picture: Picture
    nat: Nationality


_PAGE = TypeAdapter(list[ApiUser])


def _declared_tree(part: type) -> dict[str, dict | None]:
    """The declared fields of `part`: name -> the tree of a declared object, None for a leaf."""
    return {
        name: _declared_tree(annotation) if is_typeddict(annotation) else None
        for name, annotation in get_type_hints(part).items()
    }


_DECLARED = _declared_tree(ApiUser)
_UNSET = object()


@dataclass(frozen=True)
class Violation:
    """One field of one user that breaks the contract.

    `index` is the user's position on its page (results[index]); `user_number` its number across
    the seed's pages, (page - 1) * page_size + index, both from 0."""

    seed: str
    page: int
    index: int
    user_number: int
    field: str
    reason: str
    value: str

    def describe(self) -> str:
        return (
            f"seed {self.seed!r} page {self.page} results[{self.index}] (user {self.user_number} of the seed): "
            f"{self.field}: {self.reason} (got {self.value})"
        )

    def as_record(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "value": self.value}


class ContractViolation(ValueError):
    """Users that break the contract; the message names the first one's seed, page, index, field and value."""

    def __init__(self, violations: list[Violation]):
        first = violations[0]
        others = len({v.user_number for v in violations}) - 1
        more = f"; {others} more user(s) break the contract too" if others else ""
        super().__init__(f"users API answer breaks the user contract: {first.describe()}{more}")
        self.violations = violations


@dataclass(frozen=True)
class CheckedPage:
    valid: list[dict]
    # user position on the page -> (user, its violations)
    rejected: dict[int, tuple[dict, list[Violation]]]


def check_page(users: list[Any], *, seed: str, page: int, page_size: int) -> CheckedPage:
    """Validates a page of users against `ApiUser` in one call.

    Returns the users that keep to the contract (the same dict objects, untouched, in order) and
    those that do not, each with every violation found."""
    by_user: dict[int, list[Violation]] = {}

    def add(index: int, field: str, reason: str, value: str) -> None:
        by_user.setdefault(index, []).append(
            Violation(seed, page, index, (page - 1) * page_size + index, field=field, reason=reason, value=value)
        )

    try:
        _PAGE.validate_python(users)
    except ValidationError as error:
        for detail in error.errors(include_url=False):
            location = detail["loc"]
            index = location[0] if location and isinstance(location[0], int) else 0
            dotted = ".".join(str(part) for part in location[1:]) or "(the user)"
            add(index, dotted, _reason(detail), _shown_value(dotted, detail.get("input", _UNSET), detail["type"]))
    # Users that failed `_PAGE` may hold anything where a field is declared: no shortcut then.
    objects = [user for user in users if type(user) is dict] if by_user else users
    for index, user in enumerate(users if _any_dotted_key(objects, None if by_user else _DECLARED) else ()):
        if type(user) is dict and _has_dotted_key(user):
            for path, key, value in _dotted_keys(user, ()):
                flat = ".".join(map(str, (*path, key)))
                reason = DOTTED_KEY_REASON.format(key=key, flat=flat)
                add(index, ".".join(map(str, path)) or "(the user)", reason, _shown_value(flat, value, ""))
    if not by_user:
        return CheckedPage(valid=list(users), rejected={})
    rejected = {index: (users[index], found) for index, found in sorted(by_user.items())}
    return CheckedPage(valid=[user for i, user in enumerate(users) if i not in rejected], rejected=rejected)


def _any_dotted_key(objects: list[dict], declared: dict | None = None) -> bool:
    """Whether a key holding "." is in any of `objects` at any depth: the objects of a page walked
    level by level, key by key, each step over every object at once in C (`set().union`,
    `map(itemgetter)`), some 5x faster than walking user by user, which then finds the users.

    `declared` (`_DECLARED`'s tree at the objects' level) is given only for users that passed
    `_PAGE`: a declared field is then in every object, a declared object holds objects, and a
    declared leaf holds text, a number or null, so only what is not declared has its values'
    types looked at."""
    keys = set().union(*objects)
    if any(type(key) is str and "." in key for key in keys):
        return True
    for key in keys:
        if declared is not None and key in declared:
            if declared[key] is not None and _any_dotted_key(list(map(itemgetter(key), objects)), declared[key]):
                return True
            continue
        try:
            values = list(map(itemgetter(key), objects))
        except KeyError:
            values = [node[key] for node in objects if key in node]
        types = set(map(type, values))
        if dict not in types and list not in types:
            continue
        nested = values if types == {dict} else [value for value in values if type(value) is dict]
        if list in types:
            nested = [*nested, *_objects_in([value for value in values if type(value) is list])]
        if nested and _any_dotted_key(nested):
            return True
    return False


def _has_dotted_key(node: dict) -> bool:
    # The common case, no dotted key, as fast as Python walks a user (about 5 us): pydantic's
    # TypedDicts cannot constrain the names of extra keys, and a recursive pydantic type for the
    # whole user was about 3x slower than this.
    if "." in "".join(key for key in node if type(key) is str):
        return True
    for value in node.values():
        if type(value) is dict:
            if _has_dotted_key(value):
                return True
        elif type(value) is list and any(_has_dotted_key(item) for item in _objects_in(value)):
            return True
    return False


def _objects_in(items: list) -> Iterator[dict]:
    for item in items:
        if type(item) is dict:
            yield item
        elif type(item) is list:
            yield from _objects_in(item)


def _dotted_keys(node: Any, path: tuple) -> Iterator[tuple[tuple, str, Any]]:
    """(path of the object, key, value) of every key holding "." in `node`, depth first, in order."""
    if type(node) is dict:
        for key, value in node.items():
            if type(key) is str and "." in key:
                yield path, key, value
            yield from _dotted_keys(value, (*path, key))
    elif type(node) is list:
        for position, item in enumerate(node):
            yield from _dotted_keys(item, (*path, position))


def validate_user(user: Any) -> list[Violation]:
    """Every violation of one user (empty when it keeps to the contract); for tests and tools."""
    checked = check_page([user], seed="", page=1, page_size=1)
    return checked.rejected[0][1] if checked.rejected else []


def _reason(detail: dict) -> str:
    if detail["type"] == "string_pattern_mismatch" and detail.get("ctx", {}).get("pattern") == _NO_NUL:
        return NUL_REASON
    if detail["type"] == "missing":
        return "missing"
    return detail["msg"].removeprefix("Value error, ")


def _shown_value(field: str, value: Any, error_type: str) -> str:
    if error_type == "missing" or value is _UNSET:
        return "nothing"
    if field in HIDDEN_FIELDS or field.startswith("login.password"):
        return "***"
    text = repr(_without_passwords(value))
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _without_passwords(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: "***" if key == "password" else _without_passwords(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_passwords(item) for item in value]
    return value


def contract_fields(part: type = ApiUser, prefix: str = "") -> list[str]:
    """The dotted names of every declared field, leaves only (e.g. 'location.street.name')."""
    fields = []
    for name, annotation in get_type_hints(part).items():
        if is_typeddict(annotation):
            fields.extend(contract_fields(annotation, f"{prefix}{name}."))
        else:
            fields.append(f"{prefix}{name}")
    return fields
