"""HTTP server speaking the Random User Generator API 1.4 (stdlib only).

Routes:
  GET /api, /api/, /api/1.4, /api/1.4/   users (see ``build_api_response``)
  GET /api/<other version>/              404 with a JSON error body
  POST|GET|DELETE /_control/faults       add / list / clear injected faults
  GET|DELETE /_control/stats             API request counts / reset them
  GET|DELETE /_control/concurrency       API requests in flight and their maximum / reset it

An answer built without a fault is kept, serialized, in an LRU page cache (`--cache-mb`): the
same request is answered again byte for byte without generating its users (benchmarks/run.py
asks each mode's pages once before timing it).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .faults import ERROR_MESSAGE, RATE_LIMIT_MESSAGE, FaultRegistry, InFlight, RequestStats
from .generator import generate_page, pools, select_fields

API_VERSION = "1.4"
MAX_RESULTS = 5000
API_PATHS = frozenset({"/api", "/api/", f"/api/{API_VERSION}", f"/api/{API_VERSION}/"})
_OTHER_VERSION = re.compile(r"/api/[^/]+/?")
JSON_TYPE = "application/json; charset=utf-8"
# Pages answered without a fault are kept, serialized, up to this many bytes (least recently
# used first out): the benchmark asks its days' pages once untimed, then times the pipeline, not
# the generator (about 0.1 ms per user here, as much as the pipeline's own work per user).
DEFAULT_CACHE_BYTES = 512 * 2**20


def dumps(obj: Any) -> bytes:
    """Serialize exactly like the real API: compact, UTF-8, non-ASCII kept."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dumps_users_page(obj: Any) -> bytes:
    """`dumps` of a generated page (no float anywhere: the generator writes coordinates as text),
    by orjson, which writes the same bytes for strings, integers, null and booleans, 15x faster."""
    return orjson.dumps(obj)


class PageCache:
    """Serialized answers by request, least recently used dropped past `max_bytes`; thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._bodies: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: tuple, body: bytes) -> None:
        with self._lock:
            if key in self._bodies or len(body) > self.max_bytes:
                return
            self._bodies[key] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, dropped = self._bodies.popitem(last=False)
                self._bytes -= len(dropped)


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _int_param(raw: str | None, lo: int, hi: int | None, default: int) -> int:
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return value if value >= lo and (hi is None or value <= hi) else default


def _csv(raw: str | None) -> list[str]:
    return [v.strip() for v in (raw or "").split(",") if v.strip()]


def parse_api_query(query: str) -> dict[str, Any]:
    """Query string -> normalized request parameters (lenient like the real API)."""
    params = parse_qs(query, keep_blank_values=True)
    return {
        # Out of range or not an integer: silently one user.
        "results": _int_param(_first(params, "results"), 1, MAX_RESULTS, 1),
        "seed": _first(params, "seed") or secrets.token_hex(8),
        "page": _int_param(_first(params, "page"), 1, None, 1),
        "nat": _csv(_first(params, "nat")) or None,  # unknown codes are dropped by the generator
        "inc": _csv(_first(params, "inc")) or None,
        "exc": _csv(_first(params, "exc")) or None,
        # "format": only JSON is served; csv/yaml/xml requests also get JSON.
    }


def _drop_path(user: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = user
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def _set_path(user: dict[str, Any], dotted: str, value: Any) -> None:
    """Sets a dotted field, replacing whatever stands on the way (a string street becomes an object)."""
    *parents, leaf = dotted.split(".")
    node = user
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


def alter_users(users: list[dict[str, Any]], fault: dict[str, Any], first_user: int) -> None:
    """Applies an ``alter_users`` fault to a page whose first user is number ``first_user``."""
    chosen = set(fault["users"])
    for index, user in enumerate(users):
        if first_user + index in chosen:
            for dotted in fault["unset"]:
                _drop_path(user, dotted)
            for dotted, value in fault["set"].items():
                _set_path(user, dotted, value)


def build_api_response(
    req: dict[str, Any],
    fault: dict[str, Any] | None,
    cache: PageCache | None = None,
    delay: Callable[[float], None] = time.sleep,
) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, extra headers) for an API request, with an optional fault applied (a `slow`
    fault waits with `delay`); without one, the body comes from `cache` when it holds the same
    request's."""
    if fault is None:
        key = (req["seed"], req["page"], req["results"], *(tuple(req[name] or ()) for name in ("nat", "inc", "exc")))
        body = cache.get(key) if cache is not None else None
        if body is None:
            info = {"seed": req["seed"], "results": req["results"], "page": req["page"], "version": API_VERSION}
            users = generate_page(req["seed"], req["page"], req["results"], req["nat"])
            users = [select_fields(u, req["inc"], req["exc"]) for u in users]
            body = dumps_users_page({"results": users, "info": info})
            if cache is not None:
                cache.put(key, body)
        return 200, body, {}
    kind = fault["kind"]
    if kind in ("error_body", "server_error"):
        return fault["status"], dumps({"error": ERROR_MESSAGE}), {}
    if kind == "rate_limit":
        headers = {}
        if fault["retry_after"] is not None:
            ra = fault["retry_after"]
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        return 429, dumps({"error": RATE_LIMIT_MESSAGE}), headers
    if kind == "slow":
        delay(max(0.0, float(fault["delay_seconds"])))

    info = {"seed": req["seed"], "results": req["results"], "page": req["page"], "version": API_VERSION}
    if kind == "missing_results":
        return 200, dumps({"info": info}), {}
    users: list[dict[str, Any]] = []
    if kind != "empty_results":
        count = req["results"]
        if kind == "short_results":
            count = min(count, fault["count"] if fault["count"] is not None else count // 2)
        users = generate_page(req["seed"], req["page"], req["results"], req["nat"])[:count]
        users = [select_fields(u, req["inc"], req["exc"]) for u in users]
    if kind == "missing_field":
        for u in users:
            _drop_path(u, fault["field"])
    elif kind == "extra_field":
        for u in users:
            u[fault["field"]] = fault["value"]
    elif kind == "alter_users":
        alter_users(users, fault, (req["page"] - 1) * req["results"])
    elif kind == "changed_users":
        # The same users (same uuids), every Nth living elsewhere: "the API's answer changed".
        for u in users[:: fault["every"]]:
            if "location" in u:
                u["location"]["city"] = "Changed " + u["location"]["city"]
    body = dumps({"results": users, "info": info})
    if kind == "truncated":
        body = body[: len(body) // 2]
    elif kind == "invalid_utf8":
        marker = b'"first":"' if b'"first":"' in body else b'"seed":"'
        at = body.index(marker) + len(marker)
        body = body[:at] + b"\xff" + body[at:]
    return 200, body, {}


class RandomUserHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], *, verbose: bool = False, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.verbose = verbose
        self.pages = PageCache(cache_bytes)
        self.faults = FaultRegistry()
        self.stats = RequestStats()
        self.in_flight = InFlight()
        super().__init__(address, RandomUserHandler)


class RandomUserHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "randomuser-compatible/" + API_VERSION
    server: RandomUserHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # -- plumbing ---------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, dumps(obj))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- methods ----------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        self._read_body()
        if url.path in API_PATHS:
            req = parse_api_query(url.query)
            self.server.stats.record(req["seed"])
            # Counted while the answer is built (delays included), not while it is written: a
            # client holding its answer must already see the request as finished.
            with self.server.in_flight.request():
                answer = build_api_response(
                    req, self.server.faults.take(req["seed"]), self.server.pages, self.server.faults.delay
                )
            self._send(*answer)
        elif _OTHER_VERSION.fullmatch(url.path):
            self._send_json(404, {"error": f"Unknown API version; this server implements {API_VERSION}"})
        elif url.path == "/_control/faults":
            self._send_json(200, {"faults": self.server.faults.list()})
        elif url.path == "/_control/stats":
            self._send_json(200, self.server.stats.snapshot())
        elif url.path == "/_control/concurrency":
            self._send_json(200, self.server.in_flight.snapshot())
        else:
            self._send_json(404, {"error": "Not found"})

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        body = self._read_body()
        if path != "/_control/faults":
            self._send_json(404, {"error": "Not found"})
            return
        try:
            fault = self.server.faults.add(json.loads(body or b"null"))
        except (ValueError, UnicodeDecodeError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(201, {"added": fault, "faults": self.server.faults.list()})

    def do_DELETE(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        self._read_body()
        if path == "/_control/faults":
            self.server.faults.clear()
            self._send_json(200, {"faults": []})
        elif path == "/_control/stats":
            self.server.stats.reset()
            self._send_json(200, self.server.stats.snapshot())
        elif path == "/_control/concurrency":
            self.server.in_flight.reset()
            self._send_json(200, self.server.in_flight.snapshot())
        else:
            self._send_json(404, {"error": "Not found"})


def make_server(
    host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> RandomUserHTTPServer:
    pools()  # load the value pools before the first request
    return RandomUserHTTPServer((host, port), verbose=verbose, cache_bytes=cache_bytes)
