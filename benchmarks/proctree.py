"""CPU time and peak memory of a whole process tree, from /proc (Linux), without psutil.

    become_subreaper()                     # once, before starting anything
    with TreeMeter(roots=[...]) as meter:  # roots: pids alive now (e.g. a daemon), may be empty
        proc = subprocess.Popen(...)
        meter.add_root(proc.pid)
        proc.wait()
    meter.cpu_seconds, meter.peak_rss_bytes

CPU: for every process of the tree still present at the end, its user+sys time plus the
user+sys of the children it reaped (utime+stime+cutime+cstime in /proc/PID/stat), minus the
same figure at the start; plus the growth of this process's own RUSAGE_CHILDREN, which holds
the processes it reaped (the subprocesses it waited for). Because this process is a child
subreaper, a descendant orphaned by its parent (e.g. PySpark's JVM after the Python driver
exits) is re-parented here rather than to init, and reaped by `settle()`, so its CPU is counted
too. Nothing is sampled for CPU: the kernel's counters are exact.

Memory: the sum of the resident set sizes of all processes of the tree, sampled every
`interval` seconds by a thread; the peak of that sum. A process counts from its second sample
on, so a child caught between fork and exec (which shows its parent's RSS) is not counted
twice. New descendants are found by listing /proc each sample and reading the stat of new pids
only (a few ms per sample at most).
"""

from __future__ import annotations

import ctypes
import os
import resource
import threading
import time
from collections.abc import Iterable
from typing import Self

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper(on: bool = True) -> bool:
    """Orphaned descendants are re-parented to this process (so their CPU can be accounted);
    `on=False` undoes it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def read_stat(pid: int) -> tuple[int, str, int, int, str] | None:
    """(ppid, state, cpu ticks incl. reaped children, rss pages, command name) of a pid, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state; ppid=4, utime=14, stime=15, cutime=16, cstime=17, rss=24.
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    name = data[data.index(b"(") + 1 : data.rindex(b")")].decode(errors="replace")
    return int(fields[1]), fields[0].decode(), ticks, int(fields[21]), name


def children_of_this_process() -> set[int]:
    me = os.getpid()
    return {pid for pid in _pids() if (stat := read_stat(pid)) is not None and stat[0] == me}


def children_rusage_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


class TreeMeter:
    """Measures a process tree between __enter__ and __exit__ (see the module docstring)."""

    def __init__(self, roots: Iterable[int] = (), *, interval: float = 0.05, protected: Iterable[int] = ()):
        self.interval = interval
        self._roots = set(roots)
        # Children of this process that settle() must never reap (their Popen objects do).
        self._protected = set(protected)
        self._tree: set[int] = set()
        self._outside: set[int] = set()
        self._start_ticks: dict[int, int] = {}
        self._last: dict[int, tuple[int, str, int, int, str]] = {}
        self._previous: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_rss_bytes = 0
        self.peak_processes: list[tuple[int, str, int]] = []  # (pid, name, rss bytes) at the peak
        self.cpu_seconds = 0.0
        self.samples = 0
        self.seen: set[int] = set()  # every pid ever counted in the tree

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._rusage_start = children_rusage_seconds()
        self._sample()
        with self._lock:
            self._start_ticks = {pid: stat[2] for pid, stat in self._last.items()}
        self._thread = threading.Thread(target=self._run, name="tree-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_root(self, pid: int) -> None:
        with self._lock:
            self._roots.add(pid)
            self._tree.add(pid)
            # Forget what was judged outside the tree: a child the root forked before this call
            # may be among it. The next sample reads every pid once more (a few ms).
            self._outside.clear()

    def tree_pids(self) -> set[int]:
        with self._lock:
            return set(self._last)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample()
        with self._lock:
            ticks = sum(max(0, stat[2] - self._start_ticks.get(pid, 0)) for pid, stat in self._last.items())
        self.cpu_seconds = ticks / CLOCK_TICKS + (children_rusage_seconds() - self._rusage_start)

    def extra_processes(self) -> list[tuple[int, str]]:
        """Processes of the tree that were not there at the start."""
        with self._lock:
            return [(pid, stat[4]) for pid, stat in self._last.items() if pid not in self._start_ticks]

    def settle(self, timeout: float = 30.0, quiet: float | None = None) -> list[tuple[int, str]]:
        """Waits until the processes that were not there at the start have exited, reaping the
        orphans re-parented to this process (e.g. a JVM whose Python driver exited, or the
        `tail` of Dagster's compute log capture). With `quiet`, also returns once they have used
        no CPU for that many seconds (e.g. a code server's multiprocessing resource tracker,
        which lives as long as the server). Returns the new processes still there."""
        deadline = time.monotonic() + timeout
        last_ticks, quiet_since = None, time.monotonic()
        while True:
            self._reap_orphans()
            with self._lock:
                extra = {pid: stat for pid, stat in self._last.items() if pid not in self._start_ticks}
            ticks = sum(stat[2] for stat in extra.values())
            now = time.monotonic()
            if ticks != last_ticks:
                last_ticks, quiet_since = ticks, now
            if not extra or (quiet is not None and now - quiet_since >= quiet) or now > deadline:
                return [(pid, stat[4]) for pid, stat in extra.items()]
            time.sleep(self.interval)
            self._sample()

    # -- sampling -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _reap_orphans(self) -> None:
        me = os.getpid()
        with self._lock:
            candidates = [pid for pid, stat in self._last.items() if stat[0] == me and pid not in self._protected]
        for pid in candidates:
            stat = read_stat(pid)
            if stat is not None and stat[1] == "Z":
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
        self._sample()

    def _sample(self) -> None:
        present = _pids()
        with self._lock:
            self._outside &= present
            self._tree = (self._tree & present) | (self._roots & present)
            new = present - self._tree - self._outside
            current: dict[int, tuple[int, str, int, int, str]] = {}
            for pid in self._tree:
                stat = read_stat(pid)
                if stat is not None:
                    current[pid] = stat
            parents: dict[int, tuple[int, str, int, int, str]] = {}
            for pid in new:
                stat = read_stat(pid)
                if stat is not None:
                    parents[pid] = stat
            # A new process belongs to the tree when its parent does (parents may be new too),
            # and so does a child of this process that appeared after the first sample and that
            # no Popen here owns: an orphan of the tree re-parented to this subreaper (its parent
            # may have exited before we saw it).
            me = os.getpid()
            grew = True
            while grew:
                grew = False
                for pid, stat in list(parents.items()):
                    adopted = self.samples > 0 and stat[0] == me and pid not in self._protected
                    if stat[0] in current or pid in self._roots or adopted:
                        current[pid] = stat
                        self._tree.add(pid)
                        del parents[pid]
                        grew = True
            self._outside |= set(parents)
            self._tree &= set(current)
            self._last = current
            self.seen |= set(current)
            # A process first seen in this sample is left out of the memory sum until the next one:
            # a child between vfork/posix_spawn and exec shows its parent's whole RSS.
            counted = {pid: stat for pid, stat in current.items() if pid in self._previous or not self.samples}
            self._previous = set(current)
            rss = sum(stat[3] for stat in counted.values()) * PAGE_SIZE
            if rss > self.peak_rss_bytes:
                self.peak_rss_bytes = rss
                self.peak_processes = [(pid, stat[4], stat[3] * PAGE_SIZE) for pid, stat in counted.items()]
            self.samples += 1


def reap_strays(protected: Iterable[int] = (), timeout: float = 30.0) -> list[int]:
    """Waits for the children of this process outside `protected` (orphans re-parented to this
    subreaper, e.g. the code servers of a stopped dagster-daemon) to exit, and reaps them.
    Returns the pids still alive after `timeout` seconds."""
    me, protected = os.getpid(), set(protected)
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in _pids():
            stat = read_stat(pid)
            if stat is None or stat[0] != me or pid in protected:
                continue
            if stat[1] == "Z":
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            else:
                alive.append(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)
