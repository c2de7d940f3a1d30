"""A real HTTP webhook receiver on loopback that records every JSON body it accepts.

`script` makes it misbehave first: each POST takes the next entry, an HTTP status to answer
(e.g. 503, not accepted) or "hang" (answers nothing for `hang_seconds`, not accepted); once the
script is used up it accepts (204). `attempts` records every POST, `payloads` the accepted ones.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self, script: list[int | str] | None = None, hang_seconds: float = 30.0) -> None:
        self.payloads: list[dict] = []
        self.attempts: list[tuple[str, dict]] = []
        self.script = list(script or [])
        received, attempts, script_left, lock = self.payloads, self.attempts, self.script, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with lock:
                    behaviour = script_left.pop(0) if script_left else 204
                    attempts.append((str(behaviour), body))
                if behaviour == "hang":
                    time.sleep(hang_seconds)
                    return
                if behaviour == 204:
                    received.append(body)
                self.send_response(int(behaviour))
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
