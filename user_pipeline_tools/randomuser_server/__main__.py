"""python -m user_pipeline_tools.randomuser_server --host 127.0.0.1 --port 8765 [--fault JSON] [--verbose] [--cache-mb N]"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from .server import DEFAULT_CACHE_BYTES, make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m user_pipeline_tools.randomuser_server",
        description="Random User Generator (API 1.4) compatible HTTP server.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='start with a fault, e.g. \'{"kind": "rate_limit", "times": 2, "retry_after": 1}\' (repeatable)',
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=DEFAULT_CACHE_BYTES // 2**20,
        help="pages answered without a fault are kept, serialized, up to this many MiB (0: none)",
    )
    args = parser.parse_args(argv)

    server = make_server(args.host, args.port, verbose=args.verbose, cache_bytes=args.cache_mb * 2**20)
    try:
        for spec in args.fault:
            server.faults.add(json.loads(spec))
    except ValueError as exc:
        server.server_close()
        parser.error(f"--fault: {exc}")

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    host, port = server.server_address[:2]
    print(f"randomuser-compatible server listening on http://{host}:{port}/api/", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
