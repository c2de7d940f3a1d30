"""Resources of the users pipeline: where users come from, where files go, which warehouse.

Each setting is a field whose default and bounds are declared once, on the plain model a resource
is built on (users/setting_models.py, readable without Dagster); user_pipeline/settings.py binds
them to their environment variables.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from user_pipeline.shared.settings_fields import SettingsResource
from user_pipeline.users.api_client import RetrySettings, UsersApiClient, UsersPage
from user_pipeline.users.circuit_breaker import CircuitBreaker
from user_pipeline.users.circuit_store import circuit_store_for
from user_pipeline.users.day_commit import RunStaging, finish_interrupted_commits, remove_stale_staging
from user_pipeline.users.receipts import fingerprints_path
from user_pipeline.users.setting_models import (
    DayLimitsFields,
    PartitionFilesFields,
    RandomUserApiFields,
    UserRegistryFields,
    UsersApiFields,
    WarehouseFields,
    check_day,
    validate_contract_violations,
)
from user_pipeline.users.warehouse import Warehouse, open_warehouse

RAW_USERS, NORMALIZED_USERS, REJECTS = "raw_users.jsonl", "normalized_users.csv", "rejects.jsonl"
# The CSV's row fingerprints, kept beside it for the day's next receipt (users/receipts.py).
NORMALIZED_FINGERPRINTS = "normalized_users.fingerprints.arrow"


class WarehouseResource(SettingsResource, WarehouseFields):
    """The SQL warehouse: sqlite:///path or postgresql://user@host:port/database. Its database
    also keeps the users API circuit breaker's state (circuit_store.py; with SQLite, in a file
    beside the warehouse file).

    Keep a PostgreSQL password out of the URL: PGPASSWORD or ~/.pgpass supply it.
    """

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Parsing the URL here fails a run with a bad one before any step fetches or writes.
        self.open()

    def open(self) -> Warehouse:
        return open_warehouse(self.url, self.lock_timeout_seconds)


class UsersApi(SettingsResource, UsersApiFields, ABC):
    """A source of one day's users, keyed by the day (the seed)."""

    def quarantines(self) -> bool:
        """True when users that break the contract are quarantined, False when they fail the day."""
        return validate_contract_violations(self.contract_violations) == "quarantine"

    def validated_max_rejected_fraction(self) -> float:
        """The largest share of a day's users that quarantine may leave out, 0..1."""
        return self.max_rejected_fraction

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
        return self.users_per_partition

    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker guarding the source, if it has one."""
        return None


class RandomUserApi(UsersApi, RandomUserApiFields):
    """The Random User Generator HTTP API (randomuser.me or a compatible server)."""

    # A resource, not a setting: the definitions give the warehouse (every node reaches it).
    circuit_store: WarehouseResource | None = Field(
        default=None,
        description="The warehouse whose database keeps the circuit breaker's state (circuit_store.py); none: no "
        "breaker.",
    )

    @property
    def source(self) -> str:
        return self.base_url

    def breaker(self) -> CircuitBreaker | None:
        if self.circuit_store is None:
            return None
        return CircuitBreaker(
            circuit_store_for(self.circuit_store.open()),
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


class PartitionFiles(SettingsResource, PartitionFilesFields):
    """The local folder holding one file per partition and asset.

    Inside a run, a day's raw users, normalized CSV and rejects are staged (`staged_*`) and only
    committed together once the day passed every step of the run (`commit_day`, see day_commit.py).
    `raw_users(day)` and `normalized_users(day)` are the versions a step of the run reads: what
    this run staged for the day, else the committed file. Outside a run they are the committed files.
    """

    _staging: RunStaging | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        if run is None:
            return
        staging_root = Path(self.data_dir) / "staging"
        self._staging = RunStaging(staging_root, run.root_run_id or run.run_id)
        if staging_root.exists():
            finish_interrupted_commits(staging_root)
            remove_stale_staging(staging_root, keep=self._staging.run_key)

    def raw_users(self, partition_key: str) -> Path:
        return self._current(partition_key, RAW_USERS, self.committed_raw_users(partition_key))

    def normalized_users(self, partition_key: str) -> Path:
        return self._current(partition_key, NORMALIZED_USERS, self.committed_normalized_users(partition_key))

    def committed_raw_users(self, partition_key: str) -> Path:
        return Path(self.data_dir) / "raw_users" / f"{partition_key}.jsonl"

    def committed_normalized_users(self, partition_key: str) -> Path:
        return self.committed_normalized_users_dir() / f"{partition_key}.csv"

    def rejects(self, partition_key: str) -> Path:
        """The users the contract refused for the day (quarantine), one JSON object per line."""
        return Path(self.data_dir) / "rejects" / f"{partition_key}.jsonl"

    def staged_raw_users(self, partition_key: str) -> Path:
        return self._run_staging().path(partition_key, RAW_USERS)

    def staged_normalized_users(self, partition_key: str) -> Path:
        return self._run_staging().path(partition_key, NORMALIZED_USERS)

    def staged_rejects(self, partition_key: str) -> Path:
        return self._run_staging().path(partition_key, REJECTS)

    def reserve_day(self, partition_key: str) -> Path:
        """Keeps this run's staging while a worker stages the day (day_commit.RunStaging.reserve)."""
        return self._run_staging().reserve(partition_key)

    def stage_no_rejects(self, partition_key: str) -> None:
        self._run_staging().stage_absence(partition_key, REJECTS)

    def commit_day(self, partition_key: str) -> list[Path]:
        """Replaces the day's committed files by the ones this run staged, together."""
        return self._run_staging().commit(
            partition_key,
            {
                RAW_USERS: self.committed_raw_users(partition_key),
                REJECTS: self.rejects(partition_key),
                NORMALIZED_USERS: self.committed_normalized_users(partition_key),
                NORMALIZED_FINGERPRINTS: fingerprints_path(self.committed_normalized_users(partition_key)),
            },
        )

    def discard_day(self, partition_key: str) -> None:
        """Drops what this run staged for the day: the committed files stay the previous good run's."""
        self._run_staging().discard(partition_key)

    def _current(self, partition_key: str, name: str, committed: Path) -> Path:
        staged = self._staging.staged(partition_key, name) if self._staging else None
        return staged or committed

    def _run_staging(self) -> RunStaging:
        if self._staging is None:
            # Outside a run (a plain script or test): a staging of its own, under this process's id.
            self._staging = RunStaging(Path(self.data_dir) / "staging", f"process-{os.getpid()}")
        return self._staging

    def normalized_users_dir(self) -> Path:
        """The folder of the day CSVs a step of the run reads: this run's staged ones while it has
        some (they are the run's days, not committed yet), else the committed folder."""
        staged = self._staging.asset_folder(NORMALIZED_USERS) if self._staging else None
        if staged is not None and any(staged.glob("*.csv")):
            return staged
        return self.committed_normalized_users_dir()

    def committed_normalized_users_dir(self) -> Path:
        return Path(self.data_dir) / "normalized_users"

    def spark_output_dir(self) -> Path:
        """Root of the Parquet datasets `users` and `users_by_country_age_band`."""
        return Path(self.data_dir) / "parquet"

    def user_registry(self, partition_key: str) -> Path:
        return Path(self.data_dir) / "user_registry" / f"{partition_key}.csv"


class UserRegistrySettings(SettingsResource, UserRegistryFields):
    """The user registry's first day (YYYY-MM-DD): it starts empty there, and every later day
    needs the day before."""

    def validated_first_day(self) -> str:
        return check_day(self.first_day)


class DayLimits(SettingsResource, DayLimitsFields):
    """Limits a day's new data must keep to before it replaces the day's previous version, and how
    many worker processes stage a range run's later days while it commits one (users/days_ahead.py)."""
