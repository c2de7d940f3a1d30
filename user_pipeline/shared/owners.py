"""Who owns a file being written (or a run's staging folder), and whether that owner may still be
at work, judged right when the data directory is a mount shared by several hosts.

An owner is a process: the host it runs on, its pid and its start time (psutil's
`Process.create_time()`, seconds since the epoch). A pid means something only on its own host,
and only for the process that had it when the owner was recorded:

- an owner on this host is alive while a process with its pid runs AND started when the owner
  did (a pid reused by a later process is a dead owner);
- an owner on another host, or an owner nobody can read, is never judged by pid: it is presumed
  alive until nothing it owns has changed for a lease (the caller's, in seconds), then it is dead.

Records written before hosts were recorded (a bare pid) are read as this host's pid, as they
were then. Plain Python, no Dagster.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass

import psutil

# psutil's create_time adds the kernel's boot time, an integer second that may move by one when
# the clock is stepped; a pid reused within a second of the first process's start is not a case
# a host can produce (the kernel hands out every other pid first).
START_TIME_TOLERANCE_SECONDS = 1.0
MAX_PID = 2**22  # Linux's largest pid_max
_HOST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def host_id(hostname: str) -> str:
    """The host as an owner records it: the hostname when it is a plain one (letters, digits, `.`,
    `_`, `-`, up to 64 characters), else a readable prefix and a hash (so that it fits in a file
    name and never holds the `+` that separates an owner's fields)."""
    if _HOST_ID.fullmatch(hostname):
        return hostname
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", hostname)[:40]
    return f"{readable}~{hashlib.sha256(hostname.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


@functools.cache
def this_host() -> str:
    """This host's id (socket.gethostname(): each node, container or pod has its own)."""
    return host_id(socket.gethostname())


@dataclass(frozen=True)
class Owner:
    """A process: `host` (host_id), `pid`, and `started_at` (its start, seconds since the epoch;
    None for an owner recorded before start times were, which is judged by its pid alone)."""

    host: str
    pid: int
    started_at: float | None = None

    @classmethod
    def current(cls) -> Owner:
        """This process."""
        return _current_owner(os.getpid())

    @property
    def token(self) -> str:
        """`host+pid+start in milliseconds`: the owner in a file name (no `/`, and a host holds no `+`)."""
        started = "" if self.started_at is None else str(round(self.started_at * 1000))
        return f"{self.host}+{self.pid}+{started}"

    @classmethod
    def from_token(cls, token: str) -> Owner | None:
        """The owner a token names; a bare pid is this host's (the old form); None if it names none."""
        if _is_pid(token):
            return cls(this_host(), int(token))
        host, plus, rest = token.partition("+")
        pid, plus_again, started = rest.partition("+")
        if not (plus and plus_again and _is_host_id(host) and _is_pid(pid)):
            return None
        if started == "":
            return cls(host, int(pid))
        if not (started.isascii() and started.isdigit() and len(started) <= 15):
            return None
        return cls(host, int(pid), int(started) / 1000)

    def to_json(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "started_at": self.started_at})

    @classmethod
    def from_json(cls, text: str) -> Owner | None:
        """The owner a record names (to_json's, or a bare pid: the old form); None if it names none."""
        text = text.strip()
        if not text.startswith("{"):
            return cls.from_token(text)
        try:
            record = json.loads(text)
            host, pid, started = record["host"], record["pid"], record["started_at"]
        except (ValueError, KeyError, TypeError):
            return None
        valid = isinstance(host, str) and _is_host_id(host) and type(pid) is int and 0 < pid <= MAX_PID
        if not valid or not (started is None or (type(started) in (int, float) and 0 <= started < 1e12)):
            return None
        return cls(host, pid, None if started is None else float(started))

    def runs_here(self) -> bool:
        """True when this is this host's owner and its process runs: same pid, same start time."""
        if self.host != this_host():
            return False
        if self.started_at is None:
            return psutil.pid_exists(self.pid)
        try:
            started = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True  # a process we may not inspect runs all the same
        return abs(started - self.started_at) <= START_TIME_TOLERANCE_SECONDS


def _is_host_id(text: str) -> bool:
    return bool(_HOST_ID.fullmatch(text.replace("~", "_")))


def _is_pid(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 10 and 0 < int(text) <= MAX_PID


@functools.cache
def _current_owner(pid: int) -> Owner:
    # Keyed by pid: a forked child is another owner.
    return Owner(this_host(), pid, psutil.Process(pid).create_time())


def presumed_alive(owner: Owner | None, *, last_change: float, lease_seconds: float, now: float) -> bool:
    """Whether `owner` may still be at work on what it owns, last changed at `last_change`
    (seconds since the epoch): this host's owner by its process, another host's (or an unknown
    one, None) until `lease_seconds` have passed since that change."""
    if owner is not None and owner.host == this_host():
        return owner.runs_here()
    return now - last_change < lease_seconds
