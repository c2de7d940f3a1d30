"""Protects the wire contract: the stand-in server answers with the same shape as the recorded real API."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

import pytest
import requests

from user_pipeline_tests.conftest import FIXTURES_DIR, skip_or_fail
from user_pipeline_tools.randomuser_server.generator import REFERENCE_DATE
from user_pipeline_tools.randomuser_server.launcher import RandomUserServer

# fixture file -> the request it recorded (see README.md there)
RECORDED = {
    "seed-2026-11-23_results-1.json": {"results": 1, "seed": "2026-11-23"},
    "seed-2026-11-23_results-100.json": {"results": 100, "seed": "2026-11-23"},
    "seed-2026-11-23_results-3_inc.json": {"results": 3, "seed": "2026-11-23", "inc": "name,email,login,location"},
    "seed-fixture_results-1000_page-1.json": {"results": 1000, "seed": "fixture", "page": 1},
    "seed-fixture_results-1000_page-2.json": {"results": 1000, "seed": "fixture", "page": 2},
}

# Leaves whose JSON type legitimately varies between users.
ALLOWED_TYPES = {
    ("results", "location", "postcode"): {int, str},
    ("results", "id", "value"): {str, type(None)},
}


@pytest.fixture
def api(users_api_server: RandomUserServer) -> RandomUserServer:
    return users_api_server


def _load(name: str) -> dict[str, Any]:
    path = FIXTURES_DIR / name
    if not path.exists():
        skip_or_fail(f"recorded fixture {path} is not available (../shared beside the checkout)")
    return json.loads(path.read_text(encoding="utf-8"))


def _compare(ours: Any, real: Any, path: tuple[str, ...]) -> None:
    allowed = ALLOWED_TYPES.get(tuple(p for p in path if not p.isdigit()))
    if allowed:
        assert type(ours) in allowed and type(real) in allowed, f"{'.'.join(path)}: {ours!r} vs {real!r}"
        return
    assert type(ours) is type(real), f"{'.'.join(path)}: {type(ours).__name__} vs {type(real).__name__}"
    if isinstance(real, dict):
        assert list(ours) == list(real), f"{'.'.join(path)}: keys {list(ours)} vs {list(real)}"
        for key in real:
            _compare(ours[key], real[key], (*path, key))
    elif isinstance(real, list) and path[-1:] == ("results",):
        assert len(ours) == len(real), f"{'.'.join(path)}: {len(ours)} users vs {len(real)}"
        for i, (o, r) in enumerate(zip(ours, real, strict=True)):
            _compare(o, r, (*path, str(i)))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_same_shape_as_recorded_response(api: RandomUserServer, name: str) -> None:
    real = _load(name)
    resp = requests.get(api.base_url, params=RECORDED[name], timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    ours = resp.json()
    _compare(ours, real, ())
    assert ours["info"] == real["info"]
    # Serialized like the real API: compact separators, UTF-8 kept as-is.
    assert resp.content == json.dumps(ours, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert int(resp.headers["Content-Length"]) == len(resp.content)


def _age(iso: str) -> int:
    d = dt.date.fromisoformat(iso[:10])
    ref = REFERENCE_DATE
    return ref.year - d.year - ((ref.month, ref.day) < (d.month, d.day))


def test_field_values_look_like_the_real_api(api: RandomUserServer) -> None:
    users = requests.get(api.base_url, params={"results": 500, "seed": "values"}, timeout=30).json()["results"]
    date_re = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    uuid_re = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    for u in users:
        login = u["login"]
        salted = (login["password"] + login["salt"]).encode()
        assert login["md5"] == hashlib.md5(salted).hexdigest()
        assert login["sha1"] == hashlib.sha1(salted).hexdigest()
        assert login["sha256"] == hashlib.sha256(salted).hexdigest()
        assert uuid_re.fullmatch(login["uuid"])
        assert re.fullmatch(r"[A-Za-z0-9]{8}", login["salt"])
        for key in ("dob", "registered"):
            assert date_re.fullmatch(u[key]["date"])
            assert u[key]["age"] == _age(u[key]["date"])
        assert u["gender"] in ("male", "female")
        assert u["picture"]["large"].startswith(
            "https://randomuser.me/api/portraits/" + ("men/" if u["gender"] == "male" else "women/")
        )
        assert re.fullmatch(r"-?\d+\.\d{4}", u["location"]["coordinates"]["latitude"])
        assert re.fullmatch(r"[a-z0-9'._-]+\.[a-z0-9'._-]+@example\.com", u["email"]), u["email"]
