"""Protects runtime fault injection and request stats, which the pipeline's resilience tests drive."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from user_pipeline_tools.randomuser_server.faults import ERROR_MESSAGE
from user_pipeline_tools.randomuser_server.launcher import RandomUserServer


@pytest.fixture(scope="module")
def server() -> Iterator[RandomUserServer]:
    with RandomUserServer() as srv:
        yield srv


@pytest.fixture
def api(server: RandomUserServer) -> Iterator[RandomUserServer]:
    server.clear_faults()
    server.reset_stats()
    yield server
    server.clear_faults()


def get(api: RandomUserServer, seed: str = "s", results: int = 10, **params: Any) -> requests.Response:
    return requests.get(api.base_url, params={"seed": seed, "results": results, **params}, timeout=30)


def assert_normal(resp: requests.Response, results: int = 10) -> None:
    assert resp.status_code == 200
    assert len(resp.json()["results"]) == results


@pytest.mark.parametrize(("options", "status"), [({}, 200), ({"status": 503}, 503)])
def test_error_body(api: RandomUserServer, options: dict, status: int) -> None:
    api.add_fault("error_body", times=1, **options)
    resp = get(api)
    assert resp.status_code == status
    assert resp.json() == {"error": ERROR_MESSAGE}
    assert_normal(get(api))


def test_rate_limit_with_and_without_retry_after(api: RandomUserServer) -> None:
    api.add_fault("rate_limit", times=1, retry_after=2)
    api.add_fault("rate_limit", times=1)
    first, second = get(api), get(api)
    assert (first.status_code, first.headers.get("Retry-After")) == (429, "2")
    assert (second.status_code, second.headers.get("Retry-After")) == (429, None)
    assert "error" in first.json() and "results" not in first.json()
    assert_normal(get(api))


@pytest.mark.parametrize(("options", "status"), [({}, 500), ({"status": 502}, 502), ({"status": 503}, 503)])
def test_server_error(api: RandomUserServer, options: dict, status: int) -> None:
    api.add_fault("server_error", times=1, **options)
    resp = get(api)
    assert resp.status_code == status
    assert resp.json() == {"error": ERROR_MESSAGE}


def test_slow(api: RandomUserServer) -> None:
    api.add_fault("slow", times=1, delay_seconds=0.4)
    started = time.monotonic()
    resp = get(api)
    assert time.monotonic() - started >= 0.4
    assert resp.content == get(api).content


def test_clearing_the_faults_ends_a_slow_answer_in_progress(api: RandomUserServer) -> None:
    """A test that hangs a request (a run's timeout) leaves no request being served behind it."""
    api.add_fault("slow", times=1, delay_seconds=600)
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        answer = pool.submit(get, api)
        time.sleep(0.5)
        assert api.concurrency()["in_flight"] == 1
        api.clear_faults()
        assert answer.result(timeout=10).status_code == 200
    assert time.monotonic() - started < 10
    assert api.concurrency()["in_flight"] == 0


def test_truncated(api: RandomUserServer) -> None:
    full = get(api).content
    api.add_fault("truncated", times=1)
    resp = get(api)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(resp.content) == len(full) // 2
    assert full.startswith(resp.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)


def test_missing_results(api: RandomUserServer) -> None:
    api.add_fault("missing_results", times=1)
    body = get(api).json()
    assert "results" not in body
    assert body["info"]["results"] == 10


@pytest.mark.parametrize("field", ["email", "login"])
def test_missing_field(api: RandomUserServer, field: str) -> None:
    api.add_fault("missing_field", times=1, field=field)
    users = get(api).json()["results"]
    assert len(users) == 10 and all(field not in u for u in users)


def test_extra_field(api: RandomUserServer) -> None:
    api.add_fault("extra_field", times=1)
    assert all(u["extra"] == "x" for u in get(api).json()["results"])


def test_empty_and_short_results(api: RandomUserServer) -> None:
    api.add_fault("empty_results", times=1)
    api.add_fault("short_results", times=1, count=3)
    empty, short = get(api).json(), get(api).json()
    assert empty["results"] == [] and empty["info"]["results"] == 10
    assert len(short["results"]) == 3 and short["info"]["results"] == 10
    assert short["results"] == get(api).json()["results"][:3]


def test_invalid_utf8(api: RandomUserServer) -> None:
    api.add_fault("invalid_utf8", times=1)
    resp = get(api)
    assert resp.status_code == 200
    assert b"\xff" in resp.content
    with pytest.raises(UnicodeDecodeError):
        resp.content.decode("utf-8")
    assert json.loads(resp.content.replace(b"\xff", b""))["results"]


def test_times_and_seeds_are_consumed_in_order(api: RandomUserServer) -> None:
    api.add_fault("server_error", times=2, seeds=["bad"])
    api.add_fault("rate_limit", times=1)
    assert get(api, seed="good").status_code == 429  # first fault does not match, second does
    assert_normal(get(api, seed="good"))
    assert [get(api, seed="bad").status_code for _ in range(3)] == [500, 500, 200]
    assert api.faults() == []


def test_times_null_lasts_until_cleared(api: RandomUserServer) -> None:
    api.add_fault("error_body")
    assert all(get(api).json() == {"error": ERROR_MESSAGE} for _ in range(3))
    api.clear_faults()
    assert_normal(get(api))


def test_invalid_fault_is_rejected(api: RandomUserServer) -> None:
    for spec in ({"kind": "nope"}, {"kind": "slow", "times": 0}, {"kind": "truncated", "bogus": 1}, [1]):
        resp = requests.post(f"{api.root_url}/_control/faults", json=spec, timeout=10)
        assert resp.status_code == 400, spec
    assert api.faults() == []


def test_stats_count_api_requests_including_faulted(api: RandomUserServer) -> None:
    api.add_fault("rate_limit", times=1, seeds=["a"])
    get(api, seed="a")
    get(api, seed="a")
    get(api, seed="b")
    requests.get(f"{api.root_url}/nope", timeout=10)
    assert api.stats() == {"api_requests": 3, "by_seed": {"a": 2, "b": 1}}
    api.reset_stats()
    assert api.stats() == {"api_requests": 0, "by_seed": {}}


def test_cli_fault_option() -> None:
    with RandomUserServer(faults=[{"kind": "server_error", "times": 1, "status": 503}]) as srv:
        assert get(srv).status_code == 503
        assert_normal(get(srv))


def test_alter_users_sets_and_removes_fields_of_chosen_users_across_pages(api: RandomUserServer) -> None:
    hostile = "Zoe\rAnn \u2028 \\N \U0001f600"
    api.add_fault(
        "alter_users",
        seeds=["s"],
        users=[1, 12],
        set={"name.first": hostile, "location.street": "Parliament St", "login.uuid": None},
        unset=["id.name"],
    )
    normal_page_1 = requests.get(api.base_url, params={"seed": "other", "results": 10}, timeout=30).json()["results"]
    page_1, page_2 = get(api, results=10).json()["results"], get(api, results=10, page=2).json()["results"]
    altered = [page_1[1], page_2[2]]
    for user in altered:
        assert user["name"]["first"] == hostile
        assert user["location"]["street"] == "Parliament St"
        assert user["login"]["uuid"] is None
        assert "name" not in user["id"]
    untouched = [user for index, user in enumerate(page_1 + page_2) if index not in (1, 12)]
    assert all(isinstance(user["location"]["street"], dict) and "name" in user["id"] for user in untouched)
    assert all("name" in user["id"] for user in normal_page_1)  # another seed is not altered


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "alter_users", "set": {"email": "x"}},
        {"kind": "alter_users", "users": [-1], "set": {"email": "x"}},
        {"kind": "alter_users", "users": [0]},
        {"kind": "alter_users", "users": [0], "set": {"name..first": "x"}},
    ],
)
def test_alter_users_rejects_a_spec_it_cannot_apply(api: RandomUserServer, spec: dict) -> None:
    response = requests.post(f"{api.root_url}/_control/faults", json=spec, timeout=30)
    assert response.status_code == 400, response.text
