"""Resources of the users pipeline: where users come from, where files go, which warehouse."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import dagster as dg

from user_pipeline.users.api_client import (
    InvalidSettingError,
    RetrySettings,
    UsersApiClient,
    UsersPage,
    validate_users_per_partition,
)
from user_pipeline.users.circuit_breaker import CircuitBreaker
from user_pipeline.users.warehouse import Warehouse, open_warehouse


class UsersApi(dg.ConfigurableResource, ABC):
    """A source of one day's users, keyed by the day (the seed)."""

    users_per_partition: int = 100

    @abstractmethod
    def iter_pages(self, seed: str, on_retry: Callable[[str], None] | None = None) -> Iterator[UsersPage]:
        """The pages holding `users_per_partition` users of `seed`; bad settings raise at once."""

    @property
    @abstractmethod
    def source(self) -> str:
        """Where the users come from, for metadata."""

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when the source can serve users now, otherwise why it cannot."""

    def expected_users(self) -> int:
        return validate_users_per_partition(self.users_per_partition)

    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker guarding the source, if it has one."""
        return None


class RandomUserApi(UsersApi):
    """The Random User Generator HTTP API (randomuser.me or a compatible server)."""

    base_url: str = "https://randomuser.me/api/"
    page_size: int = 5000
    nationalities: str = ""
    timeout_seconds: int = 30
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    circuit_state_path: str = ""
    circuit_failure_threshold: int = 5
    circuit_cooldown_seconds: int = 300

    @property
    def source(self) -> str:
        return self.base_url

    def breaker(self) -> CircuitBreaker | None:
        if not self.circuit_state_path:
            return None
        return CircuitBreaker(
            Path(self.circuit_state_path),
            source=self.base_url,
            failure_threshold=self.circuit_failure_threshold,
            cooldown_seconds=self.circuit_cooldown_seconds,
        )

    def unavailable_reason(self) -> str | None:
        with self.client() as client:
            return client.probe()

    def client(self, on_retry: Callable[[str], None] | None = None) -> UsersApiClient:
        return UsersApiClient(
            base_url=self.base_url,
            page_size=self.page_size,
            nationalities=self.nationalities,
            timeout_seconds=self.timeout_seconds,
            retry=RetrySettings(
                max_attempts=self.max_attempts,
                backoff_seconds=self.backoff_seconds,
                max_backoff_seconds=self.max_backoff_seconds,
            ),
            on_retry=on_retry,
            breaker=self.breaker(),
        )

    def iter_pages(self, seed: str, on_retry: Callable[[str], None] | None = None) -> Iterator[UsersPage]:
        # Settings are checked here, not on first iteration, so a bad one fails before any file is opened.
        users = self.expected_users()
        client = self.client(on_retry)
        return _close_after(client, client.iter_pages(seed=seed, users=users))


def _close_after(client: UsersApiClient, pages: Iterator[UsersPage]) -> Iterator[UsersPage]:
    with client:
        yield from pages


class PartitionFiles(dg.ConfigurableResource):
    """The local folder holding one file per partition and asset."""

    data_dir: str = "data"

    def raw_users(self, partition_key: str) -> Path:
        return Path(self.data_dir) / "raw_users" / f"{partition_key}.jsonl"

    def normalized_users(self, partition_key: str) -> Path:
        return self.normalized_users_dir() / f"{partition_key}.csv"

    def normalized_users_dir(self) -> Path:
        return Path(self.data_dir) / "normalized_users"

    def spark_output_dir(self) -> Path:
        """Root of the Parquet datasets `users` and `users_by_country_age_band`."""
        return Path(self.data_dir) / "parquet"

    def user_registry(self, partition_key: str) -> Path:
        return Path(self.data_dir) / "user_registry" / f"{partition_key}.csv"


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse: sqlite:///path or postgresql://user@host:port/database.

    Keep a PostgreSQL password out of the URL: PGPASSWORD or ~/.pgpass supply it.
    """

    url: str
    lock_timeout_seconds: int = 30

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Parsing the URL here fails a run with a bad one before any step fetches or writes.
        self.open()

    def open(self) -> Warehouse:
        return open_warehouse(self.url, self.lock_timeout_seconds)


class UserRegistrySettings(dg.ConfigurableResource):
    """The user registry's first day (YYYY-MM-DD): it starts empty there, and every later day
    needs the day before."""

    first_day: str

    def validated_first_day(self) -> str:
        try:
            return date.fromisoformat(self.first_day).isoformat()
        except ValueError:
            raise InvalidSettingError("registry first_day", self.first_day, "a date YYYY-MM-DD") from None
