"""raw_users partition files: the API's user objects, one JSON object per line.

Each line is a user exactly as the API sent it (key order and types kept) except
`login.password`, the plaintext password, which is dropped before anything touches disk.
Pages are written as they arrive, so a partition of any size needs one page in memory.

Every page is checked against the user contract (contract.py) before its users are written: by
default the first violation fails the write, so the target file is never replaced; with
`quarantine`, violating users are left out and written with their violations to a rejects file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import orjson

from user_pipeline.shared.atomic_files import atomic_write
from user_pipeline.shared.collector import collector_paused
from user_pipeline.users.api_client import UsersPage
from user_pipeline.users.contract import ContractViolation, Violation, check_page

CHUNK_USERS = 5000


@dataclass(frozen=True)
class RawUsersSummary:
    """`users` written, out of `received`; `rejected` = received - users (quarantine only)."""

    users: int
    pages: int
    bytes: int
    received: int = 0
    rejected: int = 0
    # field -> users rejected for it (a user breaking two fields counts under both)
    rejected_by_field: dict[str, int] | None = None

    @property
    def rejected_fraction(self) -> float:
        return self.rejected / self.received if self.received else 0.0


def without_plaintext_password(user: object) -> object:
    """The user without `login.password`; anything that is not a user object is kept as it is."""
    if not isinstance(user, dict) or not isinstance(user.get("login"), dict) or "password" not in user["login"]:
        return user
    login = dict(user["login"])
    del login["password"]
    return {**user, "login": login}


def _json_line(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


def json_lines(users: list[object], *, has_floats: bool = True) -> bytes:
    """The users as JSON Lines, UTF-8: each exactly `_json_line`'s text (json.dumps, non-ASCII kept).

    orjson writes the same bytes for strings, integers up to 64 bits, true/false/null, lists and
    objects (user_pipeline_tests/users/test_raw_files.py compares them over hostile values), 20x
    faster; not for floats (1e-05 is 0.00001 there) nor NaN: a page with any (`has_floats`) is
    written by json.dumps, and so is a user orjson refuses (a lone surrogate, a larger integer)."""
    if has_floats:
        return "".join(map(_json_line, users)).encode("utf-8")
    lines = []
    for user in users:
        try:
            lines.append(orjson.dumps(user, option=orjson.OPT_APPEND_NEWLINE))
        except TypeError:
            lines.append(_json_line(user).encode("utf-8"))
    return b"".join(lines)


def write_raw_users(
    pages: Iterable[UsersPage],
    path: Path,
    *,
    page_size: int | None = None,
    rejects_path: Path | None = None,
    on_users: Callable[[list[dict]], None] = lambda users: None,
    on_lines: Callable[[bytes], None] = lambda lines: None,
) -> RawUsersSummary:
    """Writes every page's users that keep to the contract to `path`, replacing it only once all
    pages arrived.

    Without `rejects_path`, a violation raises ContractViolation (seed, page, index, field, value)
    and `path` is left as it was. With it (quarantine), violating users are left out and written,
    each with its violations and without `login.password`, to `rejects_path`, replaced whole.
    `page_size` numbers users across pages (defaults to the first page's length). `on_users` sees
    each page's users as written (the same objects, in order), e.g. to normalize them in the same pass;
    `on_lines` the page's bytes as written (JSON Lines, users_of_lines reads them back), e.g. to
    hand the page to another process.

    The pages' valid user objects lose `login.password` in place: the plaintext never reaches a
    file, `on_users` or the caller's page afterwards."""
    received = written = page_count = 0
    rejected_by_field: dict[str, int] = {}
    rejects = []
    with atomic_write(path) as handle:
        for page in pages:
            page_count += 1
            received += len(page.users)
            with collector_paused():
                checked = check_page(page.users, seed=page.seed, page=page.page, page_size=page_size or len(page.users))
            if checked.rejected and rejects_path is None:
                raise ContractViolation([v for _, found in checked.rejected.values() for v in found])
            for user, violations in checked.rejected.values():
                rejects.append(_reject_record(user, violations))
                for field in {v.field for v in violations}:
                    rejected_by_field[field] = rejected_by_field.get(field, 0) + 1
            written += len(checked.valid)
            # In place, in one pass: the page's user objects are the client's fresh parse, and a
            # copy of every user (two dicts each) cost as much as parsing the page (its garbage
            # collections walked the whole page). A valid user's `login` is a dict (contract).
            users = checked.valid
            for user in users:
                user["login"].pop("password", None)
            lines = json_lines(users, has_floats=page.has_floats)
            handle.write(lines)
            on_users(users)
            on_lines(lines)
    if rejects_path is not None:
        with atomic_write(rejects_path, encoding="utf-8") as rejects_file:
            rejects_file.writelines(_json_line(record) for record in rejects)
    return RawUsersSummary(
        users=written,
        pages=page_count,
        bytes=path.stat().st_size,
        received=received,
        rejected=received - written,
        rejected_by_field=dict(sorted(rejected_by_field.items())),
    )


def _reject_record(user: object, violations: list[Violation]) -> dict:
    first = violations[0]
    return {
        "seed": first.seed,
        "page": first.page,
        "index": first.index,
        "user_number": first.user_number,
        "violations": [v.as_record() for v in violations],
        "user": without_plaintext_password(user),
    }


def read_raw_users(path: Path, chunk_users: int = CHUNK_USERS) -> Iterator[list[dict]]:
    """Reads a raw_users file in chunks of at most `chunk_users` users."""
    with path.open(encoding="utf-8") as lines:
        while chunk := list(islice(lines, chunk_users)):
            yield [json.loads(line) for line in chunk]


def users_of_lines(lines: bytes) -> list[dict]:
    """The users of JSON Lines as `json_lines` writes them (UTF-8, one object per line, each line
    ending in a newline), equal to reading each line with json.loads as read_raw_users does, in one
    json.loads call (half the time of one call per line). A newline inside a line is always escaped
    in JSON text, so the newlines are exactly the lines' ends."""
    if not lines:
        return []
    return json.loads(b"[" + lines.rstrip(b"\n").replace(b"\n", b",") + b"]")


def count_raw_users(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)
