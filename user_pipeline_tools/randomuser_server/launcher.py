"""Run the stand-in randomuser server as a subprocess (tests, benchmarks, demo).

with RandomUserServer() as api:
    requests.get(api.base_url, params={"results": 10, "seed": "x"})
    api.add_fault("rate_limit", times=1, retry_after=1)
    api.stop(); api.start()   # take the API down and bring it back on the same port
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RandomUserServer:
    """A ``python -m user_pipeline_tools.randomuser_server`` subprocess on 127.0.0.1."""

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 15.0,
        verbose: bool = False,
        faults: list[dict[str, Any]] | None = None,
        own_session: bool = False,
    ) -> None:
        # own_session: out of the caller's process group, so a terminal's Ctrl-C does not stop it
        # before the caller has finished with it (make ui stops it last).
        self.own_session = own_session
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.verbose = verbose
        self.initial_faults = list(faults or [])
        self._proc: subprocess.Popen | None = None
        self._log: Any = None
        self._session = requests.Session()

    # -- addresses ------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API endpoint, e.g. ``http://127.0.0.1:PORT/api/``."""
        return f"{self.root_url}/api/"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> RandomUserServer:
        """Start (or restart, on the same port) and wait until the server answers."""
        if self.running:
            return self
        cmd = [
            sys.executable,
            "-m",
            "user_pipeline_tools.randomuser_server",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        for fault in self.initial_faults:
            cmd += ["--fault", json.dumps(fault)]
        if self.verbose:
            cmd.append("--verbose")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        if self._log is not None:
            self._log.close()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's log while it runs; stop() closes it
        self._proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=self.own_session
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            rc = self._proc.poll()
            if rc is not None:
                output = self._output()
                self._proc = None
                raise RuntimeError(
                    f"randomuser server exited with code {rc} before answering on port {self.port}:\n{output}"
                )
            try:
                if requests.get(f"{self.root_url}/_control/stats", timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                output = self._output()
                self.stop()
                raise RuntimeError(
                    f"randomuser server did not answer on {self.root_url} within {self.startup_timeout:.0f}s:\n{output}"
                )
            time.sleep(0.05)

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def output(self) -> str:
        """Everything the subprocess printed so far (stdout and stderr)."""
        return self._output()

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the subprocess (kill it if it does not exit in ``timeout`` s)."""
        self._session.close()
        self._session = requests.Session()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    def __enter__(self) -> RandomUserServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- control API ----------------------------------------------------------
    def _control(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self._session.request(method, f"{self.root_url}/_control/{path}", timeout=10, **kwargs)
        resp.raise_for_status()
        return resp.json()

    def add_fault(
        self, kind: str, *, times: int | None = None, seeds: list[str] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Add a fault (see faults.py for kinds and options); returns it with defaults filled in."""
        spec = {"kind": kind, "times": times, "seeds": seeds, **options}
        return self._control("POST", "faults", json=spec)["added"]

    def faults(self) -> list[dict[str, Any]]:
        return self._control("GET", "faults")["faults"]

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def stats(self) -> dict[str, Any]:
        """``{"api_requests": N, "by_seed": {seed: count}}``"""
        return self._control("GET", "stats")

    def reset_stats(self) -> None:
        self._control("DELETE", "stats")

    def concurrency(self) -> dict[str, int]:
        """``{"in_flight": N, "max_in_flight": M}``: API requests being answered, and the most at once."""
        return self._control("GET", "concurrency")

    def reset_concurrency(self) -> None:
        self._control("DELETE", "concurrency")
