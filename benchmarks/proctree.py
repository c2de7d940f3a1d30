"""CPU time and peak memory of a whole process tree, read with psutil (Linux).

    become_subreaper()                     # once, before starting anything
    with TreeMeter(roots=[...]) as meter:  # roots: pids alive now (e.g. a daemon), may be empty
        proc = subprocess.Popen(...)
        meter.add_root(proc.pid)
        proc.wait()
    meter.cpu_seconds, meter.peak_rss_bytes

CPU: for every process of the tree still present at the end, its user+sys time plus the
user+sys of the children it reaped (psutil's ``cpu_times()``: user, system, children_user,
children_system), minus the same figure at the start; plus the growth of this process's own
RUSAGE_CHILDREN, which holds the processes it reaped (the subprocesses it waited for). A process
that was there at the start and exits is counted whole by whoever reaps it (its parent's
children_* or RUSAGE_CHILDREN), so its figure at the start is then taken off the total: without
that, a run worker started before the window and reaped in it counted its earlier CPU again. Because
this process is a child subreaper, a descendant orphaned by its parent (e.g. PySpark's JVM after
the Python driver exits) is re-parented here rather than to init, and reaped by `settle()`, so
its CPU is counted too. Nothing is sampled for CPU: the kernel's counters are exact.

Memory: the sum of the resident set sizes (``memory_info().rss``) of all processes of the tree,
sampled every `interval` seconds by a thread; the peak of that sum. A process counts from its
second sample on, so a child caught between fork and exec (which shows its parent's RSS) is not
counted twice. New descendants are found by listing the pids each sample and reading the parent
of new pids only (a few ms per sample at most). Pages shared between processes (e.g. forked
workers) are counted once per process, as RSS does.

psutil has no call for PR_SET_CHILD_SUBREAPER, so `become_subreaper` uses prctl(2) through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import threading
import time
from collections.abc import Iterable
from typing import NamedTuple, Self

import psutil

PR_SET_CHILD_SUBREAPER = 36


class ProcStat(NamedTuple):
    ppid: int
    zombie: bool
    cpu_seconds: float  # user+sys, plus the user+sys of the children it reaped
    rss_bytes: int
    name: str


def become_subreaper(on: bool = True) -> bool:
    """Orphaned descendants are re-parented to this process (so their CPU can be accounted);
    `on=False` undoes it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def read_stat(process: psutil.Process) -> ProcStat | None:
    """What the meter needs of one process, or None once it is gone (a zombie still answers)."""
    try:
        with process.oneshot():
            times = process.cpu_times()
            return ProcStat(
                ppid=process.ppid(),
                zombie=process.status() == psutil.STATUS_ZOMBIE,
                cpu_seconds=times.user + times.system + times.children_user + times.children_system,
                rss_bytes=process.memory_info().rss,
                name=process.name(),
            )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def children_of_this_process() -> set[int]:
    return {child.pid for child in psutil.Process().children()}


def children_rusage_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class TreeMeter:
    """Measures a process tree between __enter__ and __exit__ (see the module docstring)."""

    def __init__(self, roots: Iterable[int] = (), *, interval: float = 0.05, protected: Iterable[int] = ()):
        self.interval = interval
        self._roots = set(roots)
        # Children of this process that settle() must never reap (their Popen objects do).
        self._protected = set(protected)
        self._tree: set[int] = set()
        self._outside: set[int] = set()
        self._processes: dict[int, psutil.Process] = {}  # kept, so that each is created once
        self._start_cpu: dict[int, float] = {}
        self._gone_start_cpu = 0.0  # the start figures of processes there at the start and gone since
        self._last: dict[int, ProcStat] = {}
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
            self._start_cpu = {pid: stat.cpu_seconds for pid, stat in self._last.items()}
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
            # may be among it. The next sample reads every pid's parent once more (a few ms).
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
            seconds = sum(
                max(0.0, stat.cpu_seconds - self._start_cpu.get(pid, 0.0)) for pid, stat in self._last.items()
            )
            seconds -= self._gone_start_cpu
        self.cpu_seconds = seconds + (children_rusage_seconds() - self._rusage_start)

    def extra_processes(self) -> list[tuple[int, str]]:
        """Processes of the tree that were not there at the start."""
        with self._lock:
            return [(pid, stat.name) for pid, stat in self._last.items() if pid not in self._start_cpu]

    def settle(self, timeout: float = 30.0, quiet: float | None = None) -> list[tuple[int, str]]:
        """Waits until the processes that were not there at the start have exited, reaping the
        orphans re-parented to this process (e.g. a JVM whose Python driver exited, or the
        `tail` of Dagster's compute log capture). With `quiet`, also returns once they have used
        no CPU for that many seconds (e.g. a code server's multiprocessing resource tracker,
        which lives as long as the server). Returns the new processes still there."""
        deadline = time.monotonic() + timeout
        last_cpu, quiet_since = None, time.monotonic()
        while True:
            self._reap_orphans()
            with self._lock:
                extra = {pid: stat for pid, stat in self._last.items() if pid not in self._start_cpu}
            cpu = sum(stat.cpu_seconds for stat in extra.values())
            now = time.monotonic()
            if cpu != last_cpu:
                last_cpu, quiet_since = cpu, now
            if not extra or (quiet is not None and now - quiet_since >= quiet) or now > deadline:
                return [(pid, stat.name) for pid, stat in extra.items()]
            time.sleep(self.interval)
            self._sample()

    # -- sampling -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _reap_orphans(self) -> None:
        me = os.getpid()
        with self._lock:
            candidates = [pid for pid, stat in self._last.items() if stat.ppid == me and pid not in self._protected]
        for pid in candidates:
            process = self._processes.get(pid)
            stat = read_stat(process) if process is not None else None
            if stat is not None and stat.zombie:
                _reap(pid)
        self._sample()

    def _process(self, pid: int) -> psutil.Process | None:
        process = self._processes.get(pid)
        if process is None:
            try:
                process = self._processes[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                return None
        return process

    def _sample(self) -> None:
        present = set(psutil.pids())
        with self._lock:
            self._outside &= present
            self._tree = (self._tree & present) | (self._roots & present)
            new = present - self._tree - self._outside
            current: dict[int, ProcStat] = {}
            for pid in self._tree:
                process = self._process(pid)
                if process is not None and (stat := read_stat(process)) is not None:
                    current[pid] = stat
            parents: dict[int, ProcStat] = {}
            for pid in new:
                process = self._process(pid)
                if process is not None and (stat := read_stat(process)) is not None:
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
                    adopted = self.samples > 0 and stat.ppid == me and pid not in self._protected
                    if stat.ppid in current or pid in self._roots or adopted:
                        current[pid] = stat
                        self._tree.add(pid)
                        del parents[pid]
                        grew = True
            self._outside |= set(parents)
            self._tree &= set(current)
            # Only the tree's processes are kept: an outside pid is never read again unless reused.
            self._processes = {pid: self._processes[pid] for pid in current if pid in self._processes}
            for pid in self._last.keys() - current.keys():
                # Counted whole from now on by whoever reaps it: its start figure comes off the total.
                self._gone_start_cpu += self._start_cpu.pop(pid, 0.0)
            self._last = current
            self.seen |= set(current)
            # A process first seen in this sample is left out of the memory sum until the next one:
            # a child between vfork/posix_spawn and exec shows its parent's whole RSS.
            counted = {pid: stat for pid, stat in current.items() if pid in self._previous or not self.samples}
            self._previous = set(current)
            rss = sum(stat.rss_bytes for stat in counted.values())
            if rss > self.peak_rss_bytes:
                self.peak_rss_bytes = rss
                self.peak_processes = [(pid, stat.name, stat.rss_bytes) for pid, stat in counted.items()]
            self.samples += 1


def reap_strays(protected: Iterable[int] = (), timeout: float = 30.0) -> list[int]:
    """Waits for the children of this process outside `protected` (orphans re-parented to this
    subreaper, e.g. the code servers of a stopped dagster-daemon) to exit, and reaps them.
    Returns the pids still alive after `timeout` seconds."""
    protected = set(protected)
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for child in psutil.Process().children():
            if child.pid in protected:
                continue
            stat = read_stat(child)
            if stat is None:
                continue
            if stat.zombie:
                _reap(child.pid)
            else:
                alive.append(child.pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)
