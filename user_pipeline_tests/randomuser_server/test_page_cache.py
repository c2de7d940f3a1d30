"""The server's page cache answers exactly what generating the page answers, never a faulted
page, and keeps to its bound; orjson's bytes are json.dumps' for generated pages."""

from __future__ import annotations

import json

from user_pipeline_tools.randomuser_server.faults import validate_fault
from user_pipeline_tools.randomuser_server.generator import generate_page, select_fields
from user_pipeline_tools.randomuser_server.server import PageCache, build_api_response, dumps, parse_api_query


def request(query: str) -> dict:
    return parse_api_query(query)


def test_a_cached_page_is_the_generated_page_byte_for_byte():
    cache = PageCache()
    for query in ("results=300&seed=s&page=2", "results=50&seed=s&nat=fr,ir", "results=20&seed=x&inc=name,email"):
        req = request(query)
        first = build_api_response(req, None, cache)
        again = build_api_response(req, None, cache)
        uncached = build_api_response(req, None, None)
        assert first == again == uncached
        info = {"seed": req["seed"], "results": req["results"], "page": req["page"], "version": "1.4"}
        users = [
            select_fields(u, req["inc"], req["exc"])
            for u in generate_page(req["seed"], req["page"], req["results"], req["nat"])
        ]
        assert (
            first[1]
            == dumps({"results": users, "info": info})
            == json.dumps({"results": users, "info": info}, ensure_ascii=False, separators=(",", ":")).encode()
        )


def test_a_faulted_answer_is_neither_cached_nor_served_from_the_cache():
    cache = PageCache()
    req = request("results=10&seed=changed")
    clean = build_api_response(req, None, cache)
    fault = validate_fault({"kind": "changed_users", "every": 1})
    changed = build_api_response(req, fault, cache)
    assert changed[1] != clean[1] and b"Changed " in changed[1]
    assert build_api_response(req, None, cache) == clean


def test_the_cache_drops_the_least_recently_used_pages_past_its_bound():
    cache = PageCache(max_bytes=100)
    cache.put(("a",), b"x" * 40)
    cache.put(("b",), b"x" * 40)
    assert cache.get(("a",)) is not None  # a is now the most recently used
    cache.put(("c",), b"x" * 40)
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None and cache.get(("c",)) is not None
    cache.put(("huge",), b"x" * 101)
    assert cache.get(("huge",)) is None
