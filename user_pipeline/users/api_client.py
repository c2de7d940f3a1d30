"""Client for a Random User Generator compatible API (v1.4): paging, retries, error bodies.

Plain Python, no Dagster: the `users_api` resource builds it, tests and benchmarks use it directly.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3

from user_pipeline.shared.collector import collector_paused
from user_pipeline.shared.errors import InvalidSettingError

# Until users/assets.py takes it from api_errors: the assets catch it with the client's other errors.
from user_pipeline.users.api_errors import (
    CircuitOpenError,  # noqa: F401
    TransientUsersApiError,
    UsersApiError,
)
from user_pipeline.users.circuit_breaker import CircuitBreaker

MAX_PAGE_SIZE = 5000
MAX_USERS_PER_PARTITION = 1_000_000
NATIONALITIES = frozenset(
    [
        "AU",
        "BR",
        "CA",
        "CH",
        "DE",
        "DK",
        "ES",
        "FI",
        "FR",
        "GB",
        "IE",
        "IN",
        "IR",
        "MX",
        "NL",
        "NO",
        "NZ",
        "RS",
        "TR",
        "UA",
        "US",
    ]
)
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class UsersPage:
    seed: str
    page: int
    users: list[dict]
    has_floats: bool = True
    """Whether the answer held a JSON number with a fraction or exponent, or NaN/Infinity (their
    text is what json.dumps writes differently from orjson: raw_files.py); unknown: True."""


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor, the cap a ceiling."""
        jittered = random.uniform(0, self.backoff_seconds * 2 ** (attempt - 1))
        return min(self.max_backoff_seconds, max(retry_after or 0.0, jittered))


def validate_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidSettingError("base_url", base_url, "an http(s) URL such as https://randomuser.me/api/")
    return base_url if base_url.endswith("/") else base_url + "/"


def validate_users_per_partition(users: object) -> int:
    if isinstance(users, bool) or not isinstance(users, int) or not 1 <= users <= MAX_USERS_PER_PARTITION:
        raise InvalidSettingError("users_per_partition", users, f"an integer from 1 to {MAX_USERS_PER_PARTITION}")
    return users


def validate_page_size(page_size: object) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidSettingError("page_size", page_size, f"an integer from 1 to {MAX_PAGE_SIZE} (the API's limit)")
    return page_size


def validate_nationalities(nationalities: str) -> tuple[str, ...]:
    codes = tuple(code.strip().upper() for code in nationalities.split(",") if code.strip())
    unknown = sorted(set(codes) - NATIONALITIES)
    if unknown:
        raise InvalidSettingError(
            "nationalities", nationalities, f"a comma list of {' '.join(sorted(NATIONALITIES))}; unknown: {unknown}"
        )
    return codes


def check_results_list(users: object, *, seed: str, page: int) -> list:
    """Rejects a `results` payload that is not a list; each user is checked by the contract
    (contract.py) when the page is written."""
    if not isinstance(users, list):
        raise UsersApiError(
            f"users API answer for seed={seed!r} page={page}: 'results' is {type(users).__name__}, not a list"
        )
    return users


class UsersApiClient:
    """Fetches the users of one seed page by page over one kept-alive HTTP session."""

    def __init__(
        self,
        *,
        base_url: str,
        page_size: int = MAX_PAGE_SIZE,
        nationalities: str = "",
        timeout_seconds: float = 30.0,
        retry: RetrySettings = RetrySettings(),
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str], None] | None = None,
        breaker: CircuitBreaker | None = None,
    ):
        self.base_url = validate_base_url(base_url)
        self.page_size = validate_page_size(page_size)
        self.nationalities = validate_nationalities(nationalities)
        if timeout_seconds <= 0:
            raise InvalidSettingError("timeout_seconds", timeout_seconds, "a positive number of seconds")
        if retry.max_attempts < 1:
            raise InvalidSettingError("max_attempts", retry.max_attempts, "at least 1")
        self.timeout_seconds = timeout_seconds
        self.retry = retry
        self._sleep = sleep
        self._on_retry = on_retry
        self._breaker = breaker
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> UsersApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def iter_pages(self, *, seed: str, users: int) -> Iterator[UsersPage]:
        """The pages that together hold exactly `users` users of `seed`; a bad count raises at once."""
        validate_users_per_partition(users)
        return self._pages(seed, users)

    def _pages(self, seed: str, users: int) -> Iterator[UsersPage]:
        # Every page is asked at the same size: the API numbers a seed's users by (page, size).
        page_size = min(users, self.page_size)
        pages = -(-users // page_size)
        for page in range(1, pages + 1):
            fetched = self.fetch_page(seed=seed, page=page, results=page_size)
            keep = min(page_size, users - (page - 1) * page_size)
            yield UsersPage(seed=seed, page=page, users=fetched.users[:keep], has_floats=fetched.has_floats)

    def probe(self) -> str | None:
        """None when the API serves a user right now; otherwise why not. One attempt, no retry."""
        try:
            self._attempt({"results": 1, "seed": "health", "format": "json"}, seed="health", page=1, results=1)
        except _Retryable as unavailable:
            return unavailable.reason
        except UsersApiError as error:  # CircuitOpenError included: then no call was made
            return str(error)
        return None

    def fetch_page(self, *, seed: str, page: int, results: int) -> UsersPage:
        params: dict[str, str | int] = {"results": results, "seed": seed, "page": page, "format": "json"}
        if self.nationalities:
            params["nat"] = ",".join(self.nationalities)
        where = f"seed={seed!r} page={page}"
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return self._attempt(params, seed=seed, page=page, results=results)
            except _Retryable as retryable:
                if attempt == self.retry.max_attempts:
                    raise TransientUsersApiError(
                        f"users API unavailable for {where} after {attempt} attempts: {retryable.reason}"
                    ) from None
                delay = self.retry.delay(attempt, retryable.retry_after)
                if self._on_retry:
                    # Named: with days staged ahead, a later day's retries show among an earlier day's lines.
                    self._on_retry(
                        f"{where}: {retryable.reason}; attempt {attempt} of {self.retry.max_attempts}, "
                        f"retrying in {delay:.2f}s"
                    )
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _attempt(self, params: dict, *, seed: str, page: int, results: int) -> UsersPage:
        """One request, through the circuit breaker when there is one: an open circuit raises
        CircuitOpenError without calling, and transient failures and successes are recorded."""
        if self._breaker is None:
            return self._request_page(params, seed=seed, page=page, results=results)
        self._breaker.before_call()
        try:
            page_of_users = self._request_page(params, seed=seed, page=page, results=results)
        except _Retryable as retryable:
            self._breaker.record_failure(retryable.reason)
            raise
        self._breaker.record_success()
        return page_of_users

    def _request_page(self, params: dict, *, seed: str, page: int, results: int) -> UsersPage:
        where = f"seed={seed!r} page={page}"
        try:
            # Streamed, then read whole in one call: requests' `.content` joins 10 KiB reads, some
            # 15 ms of a 5,000-user page against 3 ms.
            response = self._session.get(self.base_url, params=params, timeout=self.timeout_seconds, stream=True)
        except requests.Timeout:
            raise _Retryable(f"no answer within {self.timeout_seconds}s") from None
        except requests.ConnectionError as error:
            raise _Retryable(f"connection failed: {error}") from None
        try:
            body = response.raw.read(decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            response.close()
            raise _Retryable(f"the answer stopped for {self.timeout_seconds}s") from None
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as error:
            # The network dropped the connection mid-answer (fewer bytes than Content-Length).
            response.close()
            raise _Retryable(f"answer cut short: {error}") from None
        # Read to its end: the connection goes back to the session's pool, kept alive.
        response.raw.release_conn()
        if response.status_code in TRANSIENT_STATUSES:
            raise _Retryable(
                f"HTTP {response.status_code}{_error_text(body)}",
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            )
        if response.status_code != 200:
            raise UsersApiError(f"users API answered HTTP {response.status_code} for {where}{_error_text(body)}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UsersApiError(
                f"users API answer for {where} is not UTF-8: bad byte at offset {error.start}"
            ) from None
        try:
            with collector_paused():
                payload, has_floats = loads_noting_floats(text)
        except json.JSONDecodeError as error:
            # A body cut short by the network parses as invalid JSON: worth another attempt.
            raise _Retryable(f"invalid JSON ({len(body)} bytes, {error.msg} at offset {error.pos})") from None
        if not isinstance(payload, dict):
            raise UsersApiError(f"users API answer for {where} is a JSON {type(payload).__name__}, not an object")
        if "error" in payload:
            raise UsersApiError(f"users API answered HTTP 200 with an error for {where}: {payload['error']!r}")
        if "results" not in payload:
            raise UsersApiError(f"users API answer for {where} has no 'results' field")
        users = check_results_list(payload["results"], seed=seed, page=page)
        if len(users) != results:
            raise UsersApiError(f"users API returned {len(users)} users for {where}, asked for {results}")
        return UsersPage(seed=seed, page=page, users=users, has_floats=has_floats)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def loads_noting_floats(text: str) -> tuple[object, bool]:
    """`json.loads(text)`, and whether the text held a number with a fraction or an exponent, or
    NaN/Infinity (UsersPage.has_floats). Raises json.JSONDecodeError."""
    seen: list[str] = []

    def parse(number: str) -> float:
        seen.append(number)
        return float(number)

    return json.loads(text, parse_float=parse, parse_constant=parse), bool(seen)


def _retry_after_seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None  # An HTTP-date Retry-After is rare for this API; backoff covers it.


def _error_text(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {error!r}" if error else ""
