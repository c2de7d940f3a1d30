"""Runtime fault injection and request statistics for the stand-in server.

A fault is ``{"kind": K, "times": int | None, "seeds": [str] | None, ...options}``.
Faults are matched in the order added; the first still-active fault whose
``seeds`` match the request's seed (``None`` = any seed) applies and consumes
one of its ``times`` (``None`` = until cleared).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ERROR_MESSAGE = "Uh oh, something has gone wrong. Please tell us on GitHub or try again later."
RATE_LIMIT_MESSAGE = "Uh oh, you've made too many requests. Please slow down and try again later."

# kind -> {option: (accepted types, default)}
KINDS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "error_body": {"status": ((int,), 200)},
    "rate_limit": {"retry_after": ((int, float, type(None)), None)},
    "server_error": {"status": ((int,), 500)},
    "slow": {"delay_seconds": ((int, float), 1.0)},
    "truncated": {},
    "missing_results": {},
    "missing_field": {"field": ((str,), "email")},
    "extra_field": {"field": ((str,), "extra"), "value": ((str, int, float, bool, type(None)), "x")},
    "changed_users": {"every": ((int,), 10)},  # every Nth user of a page gets another city
    "empty_results": {},
    "short_results": {"count": ((int, type(None)), None)},  # None: half of the asked results
    "invalid_utf8": {},
    # Chosen users of a seed get chosen fields replaced (any JSON value, null included) or removed:
    # users are numbered across the seed's pages, k = (page - 1) * results + index on the page.
    "alter_users": {"users": ((list,), None), "set": ((dict,), {}), "unset": ((list,), [])},
}


def validate_fault(spec: Any) -> dict[str, Any]:
    """Return a normalized fault dict (defaults filled in) or raise ValueError."""
    if not isinstance(spec, dict):
        raise ValueError("a fault must be a JSON object")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
    times = spec.get("times")
    if times is not None and (type(times) is not int or times < 1):
        raise ValueError("times must be a positive integer or null")
    seeds = spec.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(s, str) for s in seeds)):
        raise ValueError("seeds must be a list of strings or null")
    options = KINDS[kind]
    unknown = set(spec) - {"kind", "times", "seeds"} - set(options)
    if unknown:
        raise ValueError(f"unknown option(s) for {kind}: {sorted(unknown)}")
    fault: dict[str, Any] = {"kind": kind, "times": times, "seeds": seeds}
    for name, (types, default) in options.items():
        value = spec.get(name, default)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"bad value for {kind}.{name}: {value!r}")
        fault[name] = value
    if kind == "alter_users":
        _validate_alteration(fault)
    return fault


def _validate_alteration(fault: dict[str, Any]) -> None:
    users = fault["users"]
    if users is None or not all(type(k) is int and k >= 0 for k in users):
        raise ValueError("alter_users.users must be a list of user numbers (integers >= 0)")
    paths = [*fault["set"], *fault["unset"]]
    if not paths:
        raise ValueError("alter_users needs 'set' (dotted path -> JSON value) or 'unset' (dotted paths)")
    if not all(isinstance(path, str) and path and "" not in path.split(".") for path in paths):
        raise ValueError(f"alter_users paths must be dotted field names such as 'name.first': {paths!r}")


class FaultRegistry:
    """Thread-safe ordered list of active faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[dict[str, Any]] = []
        self._cleared = threading.Event()

    def add(self, spec: Any) -> dict[str, Any]:
        fault = validate_fault(spec)
        with self._lock:
            self._faults.append(fault)
        return dict(fault)

    def clear(self) -> None:
        """Removes every fault, and ends the delays of `slow` faults still being served."""
        with self._lock:
            self._faults.clear()
            self._cleared.set()
            self._cleared = threading.Event()

    def delay(self, seconds: float) -> None:
        """A `slow` fault's delay: `seconds`, or less if the faults are cleared meanwhile (a hung
        answer does not outlive the test that asked for it)."""
        with self._lock:
            cleared = self._cleared
        cleared.wait(max(0.0, seconds))

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(f) for f in self._faults]

    def take(self, seed: str) -> dict[str, Any] | None:
        """The fault that applies to a request for ``seed`` (consuming one use), if any."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault["seeds"] is not None and seed not in fault["seeds"]:
                    continue
                applied = dict(fault)
                if fault["times"] is not None:
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        del self._faults[i]
                return applied
        return None


class RequestStats:
    """Counts of API requests (faulted ones included), overall and per seed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._by_seed: dict[str, int] = {}

    def record(self, seed: str) -> None:
        with self._lock:
            self._total += 1
            self._by_seed[seed] = self._by_seed.get(seed, 0) + 1

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_seed = {}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"api_requests": self._total, "by_seed": dict(self._by_seed)}


class InFlight:
    """API requests being answered now, and the most at once since the last reset: the figure a
    cap on concurrent calls (a Celery queue's worker concurrency, a pool) must keep down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0
        self._max = 0

    @contextmanager
    def request(self) -> Iterator[None]:
        with self._lock:
            self._now += 1
            self._max = max(self._max, self._now)
        try:
            yield
        finally:
            with self._lock:
                self._now -= 1

    def reset(self) -> None:
        with self._lock:
            self._max = self._now

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"in_flight": self._now, "max_in_flight": self._max}
