"""Protects API behaviour the pipeline relies on: determinism, paging, parameters, versions, realistic data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from user_pipeline_tools.randomuser_server.generator import NATIONALITIES
from user_pipeline_tools.randomuser_server.launcher import RandomUserServer


@pytest.fixture(scope="module")
def api() -> Iterator[RandomUserServer]:
    with RandomUserServer() as server:
        yield server


def get(api: RandomUserServer, path: str = "", **params: Any) -> requests.Response:
    return requests.get(api.root_url + "/api/" + path if path else api.base_url, params=params, timeout=30)


def users(api: RandomUserServer, **params: Any) -> list[dict[str, Any]]:
    resp = get(api, **params)
    assert resp.status_code == 200
    return resp.json()["results"]


def test_same_request_is_byte_identical(api: RandomUserServer) -> None:
    a = get(api, results=200, seed="det", page=3)
    b = get(api, results=200, seed="det", page=3)
    assert a.content == b.content
    assert get(api, results=200, seed="other", page=3).content != a.content


def test_paging_walks_one_stream_per_seed(api: RandomUserServer) -> None:
    hundred = users(api, results=100, seed="stream")
    assert users(api, results=1, seed="stream") == hundred[:1]
    assert users(api, results=50, seed="stream", page=2) == hundred[50:]
    page2 = users(api, results=100, seed="stream", page=2)
    assert {u["login"]["uuid"] for u in page2}.isdisjoint(u["login"]["uuid"] for u in hundred)


@pytest.mark.parametrize("results", ["0", "5001", "-3", "abc", "2.5", ""])
def test_results_out_of_range_or_not_int_gives_one_user(api: RandomUserServer, results: str) -> None:
    body = get(api, results=results, seed="one").json()
    assert len(body["results"]) == 1
    assert body["info"]["results"] == 1


@pytest.mark.parametrize("page", ["0", "-1", "x"])
def test_bad_page_means_page_one(api: RandomUserServer, page: str) -> None:
    body = get(api, results=5, seed="pg", page=page).json()
    assert body["info"]["page"] == 1
    assert body["results"] == users(api, results=5, seed="pg", page=1)


def test_missing_seed_gets_random_hex_seed_and_format_is_always_json(api: RandomUserServer) -> None:
    body = get(api, results=2, format="csv").json()
    assert re.fullmatch(r"[0-9a-f]{16}", body["info"]["seed"])
    assert body["info"] == {"seed": body["info"]["seed"], "results": 2, "page": 1, "version": "1.4"}


def test_5000_users_with_realistic_duplicate_emails(api: RandomUserServer) -> None:
    big = users(api, results=5000, seed="dupes")
    assert len(big) == 5000
    emails = Counter(u["email"] for u in big)
    repeats = sum(n - 1 for n in emails.values() if n > 1)
    assert 10 <= repeats <= 120
    assert all(e.isascii() for e in emails)
    assert {u["nat"] for u in big} == set(NATIONALITIES)


def test_duplicate_emails_across_pages(api: RandomUserServer) -> None:
    p1 = {u["email"] for u in users(api, results=1000, seed="fixture", page=1)}
    p2 = {u["email"] for u in users(api, results=1000, seed="fixture", page=2)}
    assert p1 & p2


def test_data_is_not_latin1_only_and_postcodes_vary_in_type(api: RandomUserServer) -> None:
    batch = users(api, results=1000, seed="realism")
    names = [u["name"]["first"] + u["name"]["last"] for u in batch]
    assert any(ord(c) > 0xFF for n in names for c in n)
    assert {type(u["location"]["postcode"]) for u in batch} == {int, str}
    assert any(u["id"]["value"] is None for u in batch)
    persian = [u for u in batch if u["nat"] == "IR"]
    assert persian and all(re.fullmatch(r"[a-z]+\.[a-z]+@example\.com", u["email"]) for u in persian)


def test_nat_filter(api: RandomUserServer) -> None:
    assert {u["nat"] for u in users(api, results=200, seed="n", nat="us,GB")} == {"US", "GB"}
    assert {u["nat"] for u in users(api, results=50, seed="n", nat="Us,xx")} == {"US"}
    assert len({u["nat"] for u in users(api, results=200, seed="n", nat="xx,yy")}) > 10


def test_inc_and_exc(api: RandomUserServer) -> None:
    full = users(api, results=3, seed="fields")
    excluded = users(api, results=3, seed="fields", exc="login,picture")
    assert [list(u) for u in excluded] == [[k for k in u if k not in ("login", "picture")] for u in full]
    included = users(api, results=3, seed="fields", inc="email,name", exc="email")
    assert included == [{"name": u["name"], "email": u["email"]} for u in full]


@pytest.mark.parametrize("path", ["", "api", "api/1.4/", "api/1.4"])
def test_version_paths_serve_users(api: RandomUserServer, path: str) -> None:
    url = f"{api.root_url}/{path}" if path else api.base_url
    resp = requests.get(url, params={"results": 3, "seed": "v"}, timeout=10)
    assert resp.status_code == 200
    assert resp.content == get(api, results=3, seed="v").content


@pytest.mark.parametrize("path", ["api/1.3/", "api/1.0", "nope", "api/1.4/x"])
def test_unknown_paths_are_404_json(api: RandomUserServer, path: str) -> None:
    resp = requests.get(f"{api.root_url}/{path}", timeout=10)
    assert resp.status_code == 404
    assert "error" in resp.json()


def test_keep_alive(api: RandomUserServer) -> None:
    with requests.Session() as s:
        for _ in range(3):
            resp = s.get(api.base_url, params={"results": 2, "seed": "ka"}, timeout=10)
            assert resp.raw.version == 11
            assert resp.headers.get("Connection", "").lower() != "close"


def test_cli_prints_url_and_exits_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "user_pipeline_tools.randomuser_server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"randomuser-compatible server listening on (http://127\.0\.0\.1:(\d+)/api/)", line)
        assert m, line
        assert requests.get(m.group(1), params={"seed": "cli"}, timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""  # quiet: no per-request logging without --verbose
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_and_restart_on_same_port() -> None:
    with RandomUserServer() as server:
        url = server.base_url
        server.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
        server.start()
        assert server.base_url == url
        assert requests.get(url, params={"seed": "back"}, timeout=10).status_code == 200
