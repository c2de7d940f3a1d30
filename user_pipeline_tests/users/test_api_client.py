"""The API client against a real server on loopback: paging, retries, and every error it names."""

import json
import socket
import threading

import pytest

from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.users.api_client import (
    RetrySettings,
    TransientUsersApiError,
    UsersApiClient,
    UsersApiError,
)
from user_pipeline_tools.randomuser_server.launcher import free_port

SEED = "2026-11-20"


def make_client(base_url: str, *, sleeps: list[float] | None = None, **overrides) -> UsersApiClient:
    settings = {"timeout_seconds": 5.0, "retry": RetrySettings(max_attempts=3, backoff_seconds=0.01)}
    settings.update(overrides)
    return UsersApiClient(
        base_url=base_url, sleep=(sleeps.append if sleeps is not None else lambda _: None), **settings
    )


def fetch_all(client: UsersApiClient, users: int) -> list[dict]:
    return [user for page in client.iter_pages(seed=SEED, users=users) for user in page.users]


def test_a_partition_is_the_users_of_its_seed_in_pages(users_api_server):
    with make_client(users_api_server.base_url, page_size=40) as client:
        paged = fetch_all(client, 100)
    with make_client(users_api_server.base_url, page_size=100) as client:
        one_page = fetch_all(client, 100)
    assert len(paged) == 100
    assert len({user["login"]["uuid"] for user in paged}) == 100
    assert users_api_server.stats()["api_requests"] == 4  # 3 pages of 40, then 1 page of 100
    with make_client(users_api_server.base_url, page_size=100) as client:
        assert fetch_all(client, 100) == one_page


def test_an_error_body_with_http_200_fails_at_once_naming_the_api_error(users_api_server):
    users_api_server.add_fault("error_body", times=1)
    with make_client(users_api_server.base_url) as client, pytest.raises(UsersApiError) as raised:
        fetch_all(client, 10)
    assert "HTTP 200 with an error" in str(raised.value)
    assert "Uh oh, something has gone wrong" in str(raised.value)
    assert not isinstance(raised.value, TransientUsersApiError)
    assert users_api_server.stats()["api_requests"] == 1


def test_rate_limiting_is_retried_after_the_servers_retry_after(users_api_server):
    users_api_server.add_fault("rate_limit", times=1, retry_after=2)
    sleeps: list[float] = []
    with make_client(users_api_server.base_url, sleeps=sleeps) as client:
        assert len(fetch_all(client, 10)) == 10
    assert sleeps == [2.0]


def test_each_retry_warning_names_seed_and_page(users_api_server):
    # With days staged ahead, a later day's retries are logged among an earlier day's lines.
    users_api_server.add_fault("rate_limit", times=1, retry_after=2)
    warnings: list[str] = []
    with make_client(users_api_server.base_url, on_retry=warnings.append) as client:
        assert len(fetch_all(client, 10)) == 10
    [warning] = warnings
    assert warning.startswith(f"seed={SEED!r} page=1: HTTP 429: ")
    assert warning.endswith("; attempt 1 of 3, retrying in 2.00s")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_with_capped_backoff(users_api_server, status):
    users_api_server.add_fault("server_error", times=2, status=status)
    sleeps: list[float] = []
    with make_client(users_api_server.base_url, sleeps=sleeps) as client:
        assert len(fetch_all(client, 10)) == 10
    assert len(sleeps) == 2
    assert all(0 <= delay <= 0.02 for delay in sleeps)


def test_transient_errors_on_every_attempt_name_the_status_and_attempts(users_api_server):
    users_api_server.add_fault("server_error", status=503)
    with make_client(users_api_server.base_url) as client, pytest.raises(TransientUsersApiError) as raised:
        fetch_all(client, 10)
    assert "after 3 attempts" in str(raised.value)
    assert "HTTP 503" in str(raised.value)


def test_a_refused_connection_is_transient():
    with make_client(f"http://127.0.0.1:{free_port()}/api/") as client, pytest.raises(TransientUsersApiError) as raised:
        fetch_all(client, 10)
    assert "connection failed" in str(raised.value)


def test_a_slow_answer_past_the_timeout_is_retried(users_api_server):
    users_api_server.add_fault("slow", times=1, delay_seconds=2)
    sleeps: list[float] = []
    with make_client(users_api_server.base_url, sleeps=sleeps, timeout_seconds=0.5) as client:
        assert len(fetch_all(client, 5)) == 5
    assert len(sleeps) == 1


def test_a_truncated_body_is_retried(users_api_server):
    users_api_server.add_fault("truncated", times=1)
    sleeps: list[float] = []
    with make_client(users_api_server.base_url, sleeps=sleeps) as client:
        assert len(fetch_all(client, 5)) == 5
    assert len(sleeps) == 1


class CutShortServer:
    """An HTTP server on loopback whose first `cuts` answers stop halfway through the body their
    Content-Length announces and close the connection (the network dropping mid-answer); later
    answers are whole. Counts the connections it accepted."""

    def __init__(self, body: bytes, cuts: int):
        self.body, self.cuts, self.connections = body, cuts, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/api/"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as requests_in:
            while requests_in.readline().strip():  # one request per answer, headers until the blank line
                while requests_in.readline().strip():
                    pass
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n\r\n"
                if self.cuts > 0:
                    self.cuts -= 1
                    connection.sendall(head.encode() + self.body[: len(self.body) // 2])
                    return
                connection.sendall(head.encode() + self.body)

    def close(self) -> None:
        self.listener.close()


def test_an_answer_cut_short_by_the_network_is_retried_and_connections_are_kept_alive():
    # Before: the body was read through requests, whose ChunkedEncodingError was no API error at
    # all, so the day failed as an unexpected error, not retried.
    users = [{"login": {"uuid": f"u{i}"}} for i in range(3)]
    server = CutShortServer(json.dumps({"results": users}).encode(), cuts=1)
    sleeps: list[float] = []
    try:
        with make_client(server.base_url, sleeps=sleeps) as client:
            assert [page.users for page in client.iter_pages(seed=SEED, users=3)] == [users]
            assert [page.users for page in client.iter_pages(seed=SEED, users=3)] == [users]
    finally:
        server.close()
    assert len(sleeps) == 1
    # The cut connection, then one kept alive for both whole answers.
    assert server.connections == 2


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("missing_results", {}, "has no 'results' field"),
        ("empty_results", {}, "returned 0 users for seed='2026-11-20' page=1, asked for 5"),
        ("short_results", {"count": 3}, "returned 3 users for seed='2026-11-20' page=1, asked for 5"),
        ("invalid_utf8", {}, "is not UTF-8"),
    ],
)
def test_answers_of_the_wrong_shape_fail_at_once_naming_what_is_wrong(users_api_server, kind, options, message):
    # Each user's fields are the contract's business (test_raw_files.py, test_contract.py).
    users_api_server.add_fault(kind, times=1, **options)
    with make_client(users_api_server.base_url) as client, pytest.raises(UsersApiError) as raised:
        fetch_all(client, 5)
    assert message in str(raised.value)
    assert not isinstance(raised.value, TransientUsersApiError)


def test_an_extra_field_is_tolerated(users_api_server):
    users_api_server.add_fault("extra_field", times=1)
    with make_client(users_api_server.base_url) as client:
        users = fetch_all(client, 5)
    assert [user["extra"] for user in users] == ["x"] * 5


def test_nationalities_are_passed_to_the_api(users_api_server):
    with make_client(users_api_server.base_url, nationalities="ir, ua") as client:
        assert {user["nat"] for user in fetch_all(client, 50)} == {"IR", "UA"}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"base_url": "not a url"}, "base_url"),
        ({"base_url": "ftp://example.com/api/"}, "base_url"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 5001}, "page_size"),
        ({"page_size": -1}, "page_size"),
        ({"page_size": "abc"}, "page_size"),
        ({"nationalities": "US,XX"}, "nationalities"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(settings, named):
    arguments = {"base_url": "http://127.0.0.1:1/api/", **settings}
    with pytest.raises(InvalidSettingError) as raised:
        UsersApiClient(**arguments)
    assert raised.value.setting == named
    assert f"invalid {named}=" in str(raised.value)


@pytest.mark.parametrize("users", [0, -1, "abc", 1_000_001])
def test_a_bad_user_count_is_refused_before_any_request(users_api_server, users):
    with (
        make_client(users_api_server.base_url) as client,
        pytest.raises(InvalidSettingError, match="users_per_partition"),
    ):
        fetch_all(client, users)
    assert users_api_server.stats()["api_requests"] == 0


def test_backoff_honours_retry_after_up_to_the_cap():
    retry = RetrySettings(max_attempts=5, backoff_seconds=1.0, max_backoff_seconds=10.0)
    assert retry.delay(1, retry_after=4.0) == 4.0
    assert retry.delay(1, retry_after=120.0) == 10.0
    assert all(0 <= retry.delay(attempt, None) <= min(10.0, 2 ** (attempt - 1)) for attempt in range(1, 8))
