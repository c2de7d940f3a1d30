"""Fakes for unit tests: the recorded API answers served without a network."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from user_pipeline.users.api_client import UsersPage, check_results_list
from user_pipeline.users.resources import UsersApi


class RecordedUsersApi(UsersApi):
    """Serves `seed-{seed}_results-{users_per_partition}.json` from the recorded fixtures."""

    fixtures_dir: str

    @property
    def source(self) -> str:
        return f"recorded:{self.fixtures_dir}"

    def unavailable_reason(self) -> str | None:
        return None if Path(self.fixtures_dir).is_dir() else f"no recordings at {self.fixtures_dir}"

    def iter_pages(self, seed: str, on_retry: Callable[[str], None] | None = None) -> Iterator[UsersPage]:
        path = Path(self.fixtures_dir) / f"seed-{seed}_results-{self.expected_users()}.json"
        users = json.loads(path.read_text(encoding="utf-8"))["results"]
        return iter([UsersPage(seed=seed, page=1, users=check_results_list(users, seed=seed, page=1))])
