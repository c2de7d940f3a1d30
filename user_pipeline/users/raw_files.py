"""raw_users partition files: the API's user objects, one JSON object per line.

Each line is a user exactly as the API sent it (key order and types kept) except
`login.password`, the plaintext password, which is dropped before anything touches disk.
Pages are written as they arrive, so a partition of any size needs one page in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from user_pipeline.users.api_client import UsersPage
from user_pipeline.users.atomic_files import atomic_write

CHUNK_USERS = 5000


@dataclass(frozen=True)
class RawUsersSummary:
    users: int
    pages: int
    bytes: int


def without_plaintext_password(user: dict) -> dict:
    login = {key: value for key, value in user["login"].items() if key != "password"}
    return {**user, "login": login}


def write_raw_users(pages: Iterable[UsersPage], path: Path) -> RawUsersSummary:
    """Writes every page's users to `path`, replacing it only once all pages arrived."""
    users = page_count = 0
    with atomic_write(path, encoding="utf-8") as handle:
        for page in pages:
            page_count += 1
            users += len(page.users)
            handle.writelines(
                json.dumps(without_plaintext_password(user), ensure_ascii=False, separators=(",", ":")) + "\n"
                for user in page.users
            )
    return RawUsersSummary(users=users, pages=page_count, bytes=path.stat().st_size)


def read_raw_users(path: Path, chunk_users: int = CHUNK_USERS) -> Iterator[list[dict]]:
    """Reads a raw_users file in chunks of at most `chunk_users` users."""
    with path.open(encoding="utf-8") as lines:
        while chunk := list(islice(lines, chunk_users)):
            yield [json.loads(line) for line in chunk]


def count_raw_users(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)
