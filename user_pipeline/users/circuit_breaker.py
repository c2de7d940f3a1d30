"""One health state of the users API, shared by the sensor, the fetches and backfills on every node.

Closed: calls go through; `failure_threshold` transient failures in a row open it. Open: no
call is made until `cooldown_seconds` have passed; then one trial call is let through
(half-open): success closes the circuit, failure opens it again. Days whose runs were refused
while open are remembered, so the sensor can backfill them once the API is back.

The state is kept by a `CircuitStore` that every process on every node reaches (circuit_store.py:
a table of the warehouse database), each change read, decided and written back under one lock,
so that every failure counts once and one trial call at a time goes out, whichever node makes it.
It is kept per source (the API base URL): failures of one API (an offline CLI run against the
public randomuser.me) never open the circuit of another (the bundled server the UI's runs use).
Times are the callers' clocks (seconds since the epoch): the nodes' clocks are assumed in step
(NTP), a skew of a few seconds only moving the next trial call by as much.
Plain Python, no Dagster.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from user_pipeline.users.api_errors import CircuitOpenError

STATES = ("closed", "open", "half_open")


@dataclass
class CircuitState:
    state: str = "closed"  # closed | open | half_open
    consecutive_failures: int = 0
    opened_at: float | None = None
    trial_started_at: float | None = None
    last_error: str = ""
    skipped_days: list[str] = field(default_factory=list)

    def copy(self) -> CircuitState:
        return replace(self, skipped_days=list(self.skipped_days))


def source_key(source: str) -> str:
    """The key of a source's state: its base URL without a trailing slash, lower-cased, hashed
    (16 hex digits, whatever the URL holds)."""
    return hashlib.sha256(source.rstrip("/").lower().encode()).hexdigest()[:16]


class CircuitStore(ABC):
    """Where circuit states live, one per source key."""

    @abstractmethod
    def locked(self, key: str, source: str) -> AbstractContextManager[CircuitState]:
        """The state of `key` (a closed circuit if there is none yet), held under a lock that every
        process of every node respects until the block ends; the state as the block left it is
        written back then, and nothing is written if the block raises. `source` is the readable
        name the store keeps beside the key. Raises warehouse.WarehouseUnavailableError when the
        store cannot be reached or locked in time."""


class CircuitBreaker:
    """The circuit of `source` (the API base URL), kept in `store`."""

    def __init__(
        self,
        store: CircuitStore,
        *,
        source: str,
        failure_threshold: int = 5,
        cooldown_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.source = source
        self.key = source_key(source)
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock

    @contextmanager
    def _state(self) -> Iterator[CircuitState]:
        with self.store.locked(self.key, self.source) as state:
            yield state

    def before_call(self) -> None:
        """Raises CircuitOpenError unless a call may go out now."""
        now = self._clock()
        with self._state() as state:
            if state.state == "closed":
                return
            # One trial at a time; a trial whose process died frees its slot after a cool-down.
            last = state.trial_started_at if state.state == "half_open" else state.opened_at
            if now - (last or 0) < self.cooldown_seconds:
                raise CircuitOpenError(self._describe(state))
            state.state, state.trial_started_at = "half_open", now

    def record_success(self) -> None:
        with self._state() as state:
            state.state, state.consecutive_failures, state.opened_at, state.trial_started_at = "closed", 0, None, None

    def record_failure(self, reason: str) -> None:
        now = self._clock()
        with self._state() as state:
            state.consecutive_failures += 1
            state.last_error = reason
            if state.state == "half_open" or state.consecutive_failures >= self.failure_threshold:
                state.state, state.opened_at, state.trial_started_at = "open", now, None

    def record_skipped_day(self, day: str) -> None:
        with self._state() as state:
            state.skipped_days = sorted(set(state.skipped_days) | {day})

    def take_skipped_days(self) -> list[str]:
        """The days refused while open, forgotten once taken (the caller backfills them)."""
        with self._state() as state:
            days, state.skipped_days = state.skipped_days, []
        return days

    def describe(self) -> str:
        with self._state() as state:
            return self._describe(state)

    def _describe(self, state: CircuitState) -> str:
        if state.state == "closed":
            return "circuit closed"
        since = datetime.fromtimestamp(state.opened_at or state.trial_started_at or 0, UTC).strftime("%H:%M:%S UTC")
        retry_at = datetime.fromtimestamp((state.opened_at or state.trial_started_at or 0) + self.cooldown_seconds, UTC)
        return (
            f"circuit {state.state.replace('_', '-')} since {since} after {state.consecutive_failures} failures "
            f"(last: {state.last_error}); next trial call after {retry_at.strftime('%H:%M:%S UTC')}"
        )
