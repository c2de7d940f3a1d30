"""Days staged ahead: the CPU-heavy part of a users day (fetch and same-pass normalize, users/days.py)
of later days runs in worker processes while this process loads and commits the days in date order.

Plain Python, no Dagster: the `daily_users` asset and the bare script (benchmarks/bare.py) both
stage every day through `DaysAhead.take`, so `days_ahead=0` (every day staged here, one after
another) and `days_ahead=N` run the same function, `stage_day`, on the same inputs.

Why processes: a profile of the bare script (10 days x 5,000 users, cProfile) puts some three
quarters of a day's CPU in fetch + normalize (JSON parsing, the contract check, flattening, CSV
writing, fingerprints) and the rest in the load; all of it is pure Python holding the GIL, so only
another process runs it beside the load. This process also stages a day itself whenever it would
otherwise wait for a worker, so both cores stay busy; and a day it stages while no worker holds one
(a one-day run's, a range's last) is split: a worker fetches it (requests, the contract, the raw
file: `FetchForRun`) and sends each page's bytes as written, which this process normalizes
(`SamePassCsv`), the two halves of a day's CPU about equal. A 1 x 100,000 bare day went from
10.4 s to 8.2 s (both cores busy for the stage; the load stays one process's).

What stays as it was without workers:
- Order: `take(day)` returns the days in the order given; the caller loads and commits each
  before taking the next. A worker only ever writes the staged files of its day (the `DayPlan`
  this process made: the run's staging, users/day_commit.py), never a committed one.
- Errors: `stage_day` catches what a day's fetch or normalize raises (Exception, not
  BaseException) into the `StagedDay`, and `StagedDay.fetched_or_raise` /
  `normalized_or_raise` raise it where the caller asks, so its handling (retried or permanent,
  its message) is the caller's as before. From a worker the error is rebuilt here with its own
  type, message and attributes (`RemoteError`), the worker's traceback as its cause.
- Log lines: what the fetch reports (`on_retry`) is sent to this process and handed to
  `on_message` here, in this process's thread.
- Stopping: leaving the `with` block (a refused or failed day, a termination, any exception)
  kills the workers and waits for them before it returns, so nothing writes a later day's
  staged files once the caller discards them.

Workers are forked (os.fork): they inherit the loaded modules and the caller's page source (an HTTP client
factory, a test's fake) with nothing to import or pickle. A worker's first act is to restore the
default signal handlers (the run's own handlers stay the run's), and to freeze the inherited heap
(`gc.freeze`), which it never collects; it exits when this process is gone.
"""

from __future__ import annotations

import fcntl
import gc
import multiprocessing
import os
import pickle
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from user_pipeline.users.api_client import UsersPage
from user_pipeline.users.days import (
    CheckResults,
    FetchedDay,
    NormalizedDay,
    SamePassCsv,
    fetch_checks,
    fetch_day,
    normalize_day,
    refusing_checks,
)
from user_pipeline.users.raw_files import users_of_lines

PageSource = Callable[[str, Callable[[str], None]], Iterable[UsersPage]]
"""`pages(day, on_retry)`: the day's pages from the users API; `on_retry(message)` is called for
each request retried. Bad settings raise at the call, before any file is written."""

# How long a worker waits for its next day before checking that this process is still there.
_PARENT_CHECK_SECONDS = 1.0
# Days a worker holds at once: the one it stages and the next, sent ahead so that it never waits
# for this process (busy loading a day) to hand one out.
DAYS_PER_WORKER = 2


@dataclass(frozen=True)
class DayPlan:
    """Where one day is staged: the raw file, the rejects file (quarantine) or None (a violation
    fails the day), the CSV written in the same pass or None (fetch only), the day's committed CSV
    (the receipt's "before") and the limits its checks use."""

    day: str
    raw_path: Path
    rejects_path: Path | None
    csv_path: Path | None
    previous_csv: Path | None
    max_rejected_fraction: float
    max_row_drop_fraction: float
    reservation: Path | None = None
    """A file to remove once the day's files are written or the day failed (day_commit.RunStaging.reserve)."""


@dataclass
class StagedDay:
    """One day through `stage_day`: the fetch's result and checks, the normalize's result, or the
    error that stopped it (`failed_step`: "fetch" or "normalize")."""

    day: str
    fetched: FetchedDay | None = None
    checks: CheckResults = field(default_factory=dict)
    normalized: NormalizedDay | None = None
    error: Exception | None = None
    failed_step: str | None = None

    def fetched_or_raise(self) -> FetchedDay:
        if self.failed_step == "fetch":
            raise self.error
        return self.fetched

    def normalized_or_raise(self) -> NormalizedDay | None:
        """The day's CSV, None when the fetch refused the day (a blocking check of raw_users)."""
        if self.failed_step == "normalize":
            raise self.error
        return self.normalized


DayFetch = Callable[[DayPlan, "SamePassCsv | None"], FetchedDay]
"""`fetch(plan, same_pass)`: fetches the day into `plan.raw_path` (users/days.py: fetch_day),
handing each page's users to `same_pass` when given, or raises the fetch's error."""


def stage_day(
    plan: DayPlan, pages: PageSource, on_retry: Callable[[str], None], *, fetch: DayFetch | None = None
) -> StagedDay:
    """Fetches the day into `plan.raw_path` and, with `plan.csv_path`, normalizes it in the same
    pass (users/days.py: fetch_day, SamePassCsv, normalize_day), unless a blocking check of
    raw_users refuses the day. `fetch` fetches the day elsewhere (another process) while its pages
    are normalized here; by default the day's `pages` are fetched here. Errors of either step are
    returned, not raised (see the module's docstring); a BaseException (an interrupt) is raised,
    the CSV's temporary file removed."""
    staged = StagedDay(plan.day)
    same_pass = None
    try:
        try:
            if plan.csv_path is not None:
                # The fetch hands it only the users contract.check_page passed.
                same_pass = SamePassCsv(plan.day, plan.csv_path, contract_checked=True)
            if fetch is None:
                staged.fetched = fetch_day(
                    plan.day,
                    pages(plan.day, on_retry),
                    plan.raw_path,
                    rejects_path=plan.rejects_path,
                    same_pass=same_pass,
                )
            else:
                staged.fetched = fetch(plan, same_pass)
        except Exception as error:  # noqa: BLE001 - the caller tells the errors apart
            staged.error, staged.failed_step = error, "fetch"
            return staged
        staged.checks = fetch_checks(staged.fetched, plan.max_rejected_fraction)
        if same_pass is None or refusing_checks("raw_users", staged.checks):
            return staged
        try:
            staged.normalized = normalize_day(
                plan.day,
                plan.raw_path,
                plan.csv_path,
                previous_csv=plan.previous_csv,
                max_row_drop_fraction=plan.max_row_drop_fraction,
                same_pass=same_pass,
            )
        except Exception as error:  # noqa: BLE001 - the caller tells the errors apart
            staged.error, staged.failed_step = error, "normalize"
        return staged
    finally:
        # A day refused or failed before its CSV was finished leaves no temporary file.
        if same_pass is not None:
            same_pass.abort()
        if plan.reservation is not None:
            plan.reservation.unlink(missing_ok=True)


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process, as text (the cause of the rebuilt error)."""

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class RemoteError:
    """An exception as it crosses from a worker, rebuilt here with the same type, message and
    attributes: pickled as it is when it comes back equal (type and message) from pickling, else as
    its class, arguments and picklable attributes (many exceptions take other arguments than their
    message, which plain unpickling would call them with)."""

    traceback: str
    pickled: bytes | None = None
    error_class: type | None = None
    args: tuple = ()
    attributes: dict = field(default_factory=dict)

    @classmethod
    def of(cls, error: BaseException) -> RemoteError:
        text = "".join(traceback.format_exception(error))
        try:
            pickled = pickle.dumps(error)
            copy = pickle.loads(pickled)
            if type(copy) is type(error) and str(copy) == str(error) and vars(copy).keys() == vars(error).keys():
                return cls(text, pickled=pickled)
        except Exception:  # noqa: BLE001, S110 - rebuilt from its parts below
            pass
        attributes = {}
        for name, value in vars(error).items():
            try:
                pickle.dumps(value)
            except Exception:  # noqa: BLE001, S112 - an attribute that cannot cross is left out
                continue
            attributes[name] = value
        try:
            args = pickle.loads(pickle.dumps(error.args))
        except Exception:  # noqa: BLE001 - arguments that cannot cross: the message stands for them
            args = (str(error),)
        return cls(text, error_class=type(error), args=args, attributes=attributes)

    def rebuild(self) -> BaseException:
        if self.pickled is not None:
            error = pickle.loads(self.pickled)
        else:
            error = self.error_class.__new__(self.error_class, *self.args)
            BaseException.__init__(error, *self.args)
            error.__dict__.update(self.attributes)
        error.__cause__ = RemoteTraceback(f"\n(in the day-ahead worker process)\n{self.traceback}")
        return error


class WorkerDiedError(RuntimeError):
    """A worker process ended while it staged a day (killed, out of memory): the day is not staged."""


def _worker_main(connection: Connection, pages: PageSource, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.freeze()
    while True:
        if not connection.poll(_PARENT_CHECK_SECONDS):
            if os.getppid() != parent_pid:
                return
            continue
        try:
            plan = connection.recv()
        except EOFError:
            return
        if plan is None:
            return
        if isinstance(plan, FetchForRun):
            _fetch_for_run(plan.plan, pages, connection)
            continue
        staged = stage_day(plan, pages, on_retry=lambda message: connection.send(("log", message)))
        if staged.error is not None:
            staged.error = RemoteError.of(staged.error)
        try:
            payload = pickle.dumps(staged)
        except Exception as error:  # noqa: BLE001 - reported as the day's own failure
            failed = StagedDay(plan.day, error=RemoteError.of(error), failed_step=staged.failed_step or "normalize")
            payload = pickle.dumps(failed)
        connection.send(("staged", payload))


@dataclass(frozen=True)
class FetchForRun:
    """A worker's task: fetch `plan`'s day (requests, contract, raw file) and send each page's bytes
    as written, for the run's process to normalize (DaysAhead._fetch_in_worker)."""

    plan: DayPlan


def _fetch_for_run(plan: DayPlan, pages: PageSource, connection: Connection) -> None:
    """Sends ("log", line) for each retry, ("lines", bytes) for each page as written to the raw
    file, then ("fetched", the FetchedDay or the RemoteError of the fetch's error)."""
    try:
        result = fetch_day(
            plan.day,
            pages(plan.day, lambda message: connection.send(("log", message))),
            plan.raw_path,
            rejects_path=plan.rejects_path,
            on_lines=lambda lines: connection.send(("lines", lines)),
        )
    except Exception as error:  # noqa: BLE001 - the run's process raises it as its own fetch would
        result = RemoteError.of(error)
    connection.send(("fetched", result))


class _Worker:
    """A forked worker process and this process's end of its pipe. Forked with os.fork, not
    multiprocessing.Process: multiprocessing refuses children to a process it deems daemonic, which
    a Celery prefork pool process (billiard) is, and the steps of the celery executor run there."""

    def __init__(self, pages: PageSource):
        parent_pid = os.getpid()
        self.connection, child = multiprocessing.Pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                self.connection.close()
                _worker_main(child, pages, parent_pid)
                code = 0
            finally:
                os._exit(code)
        child.close()
        self.days: list[str] = []
        """The days sent to the worker and not yet back, in the order it stages them."""
        self.exit_code: int | None = None

    def died(self, day: str, when: str) -> WorkerDiedError:
        """The error of `day`, which the worker (stopped) held `when` ("while it staged", ...) it ended."""
        return WorkerDiedError(
            f"the day-ahead worker process {self.pid} ended (exit code {self.exit_code}) {when} {day}: "
            f"{day} is not staged"
        )

    def stop(self) -> None:
        """Kills the worker and waits for it: once this returns it writes nothing more."""
        if self.exit_code is None:
            # An unwaited child is never gone: at worst a zombie, which the kill leaves as it is.
            os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
            self.exit_code = os.waitstatus_to_exitcode(status)
        self.connection.close()


class ProcessLock:
    """An exclusive lock among this process and the processes it forks, which the kernel releases
    when its holder dies (a worker killed mid-request leaves it free): a POSIX record lock
    (fcntl.lockf), which belongs to a process, not to the file descriptor its children inherit."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - open for the lock's life, closed by close()

    def __enter__(self) -> None:
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_EX)

    def __exit__(self, *exc_info) -> None:
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        self._file.close()


def one_call_at_a_time(pages: PageSource, lock: ProcessLock) -> PageSource:
    """`pages` whose requests (each page's, retries and their waits included) hold `lock`, a lock
    shared by this process and its workers: a run calls the users API once at a time, as it did
    going day by day (the users_api pool and the Celery queue count steps, not calls)."""

    def locked_pages(day: str, on_retry: Callable[[str], None]) -> Iterator[UsersPage]:
        with lock:
            day_pages = iter(pages(day, on_retry))
        try:
            while True:
                with lock:
                    page = next(day_pages, None)
                if page is None:
                    return
                yield page
        finally:
            close = getattr(day_pages, "close", None)
            if close is not None:
                close()

    return locked_pages


class DaysAhead:
    """Stages `days` (in that order) for a caller that takes them one by one with `take`; meanwhile
    `days_ahead` worker processes stage the days after the one taken last, up to two each (0: each
    day staged by `take` itself, here), and `take` stages one more itself rather than wait for them.

    `plan(day)` says where a day is staged; it is called here, in this process, before the day is
    staged. `pages` is the page source (see PageSource); `on_message` receives the fetch's log
    lines (on_retry), from whichever process staged the day. Use as a context manager: leaving it
    stops the workers (see the module's docstring)."""

    def __init__(
        self,
        days: Iterable[str],
        plan: Callable[[str], DayPlan],
        pages: PageSource,
        *,
        days_ahead: int,
        on_message: Callable[[str], None],
    ):
        if days_ahead < 0:
            raise ValueError(f"days_ahead={days_ahead}: expected an integer from 0")
        self.days = list(days)
        self._api_lock = ProcessLock()
        self._pages = one_call_at_a_time(pages, self._api_lock)
        self._plan, self._ahead, self._on_message = plan, days_ahead, on_message
        self._next = 0  # index of the first day neither staged nor given to a worker
        self._taken = 0  # index of the next day `take` returns
        self._staged: dict[str, StagedDay] = {}
        self._workers: list[_Worker] = []
        self._max_workers = days_ahead

    def __enter__(self) -> DaysAhead:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stops the workers; what they staged and nobody took stays where it is, for the caller
        to discard."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()
        self._api_lock.close()

    def take(self, day: str) -> StagedDay:
        """The next day, staged (the days must be taken in the order given)."""
        if self._taken >= len(self.days) or self.days[self._taken] != day:
            expected = self.days[self._taken] if self._taken < len(self.days) else "none"
            raise ValueError(f"{day} taken out of order: the next day is {expected}")
        self._taken += 1
        while day not in self._staged:
            self._collect(block=False)
            if day in self._staged:
                break
            if self._next < len(self.days) and self.days[self._next] == day:
                # The day nobody stages yet is staged here; the workers get the days after it.
                self._next += 1
                self._hand_out()
                self._stage_here(day)
            else:
                self._hand_out()
                if self._next < self._limit():
                    # Rather than wait for a worker, the next free day (within the window) is staged here.
                    self._next += 1
                    self._stage_here(self.days[self._next - 1])
                else:
                    self._collect(block=True)
        staged = self._staged.pop(day)
        if staged.error is None and not refusing_checks("raw_users", staged.checks):
            # A day that fails or is refused stops its caller: no later day is handed out for it.
            self._hand_out()
        return staged

    def _limit(self) -> int:
        """One past the last index that may be handed out or staged now: the day being taken, two
        days per worker (the one it stages and the next, sent before it needs it) and one more, which
        this process stages itself when it would otherwise wait."""
        ahead = DAYS_PER_WORKER * self._ahead + 1 if self._ahead else 0
        return min(len(self.days), self._taken + ahead)

    def _stage_here(self, day: str) -> None:
        """Stages the day here; while no worker holds a day (a one-day run, a range's last day),
        one of them fetches it (requests, contract, raw file) and this process normalizes each
        page it has written, so that both cores work at the day."""
        plan = self._planned(day)
        if plan is None:
            return
        worker = self._idle_worker() if plan.csv_path is not None else None
        fetch = None if worker is None else (lambda plan, same_pass: self._fetch_in_worker(worker, plan, same_pass))
        self._staged[day] = stage_day(plan, self._pages, self._on_message, fetch=fetch)

    def _idle_worker(self) -> _Worker | None:
        """A worker holding no day, started if need be; None while any worker holds a day (the
        cores are busy) or with no workers (`days_ahead=0`, or none could start)."""
        if any(worker.days for worker in self._workers):
            return None
        if not self._workers and not self._start_worker():
            return None
        return self._workers[0]

    def _start_worker(self) -> bool:
        """Starts one more worker; False (and the log says why) when no process can be started."""
        if len(self._workers) >= self._max_workers:
            return False
        try:
            self._workers.append(_Worker(self._pages))
        except OSError as error:
            # No process can be started (out of memory, a limit on processes): staged here.
            self._max_workers = len(self._workers)
            self._on_message(
                f"days are staged in the run's process only: no day-ahead worker process could be "
                f"started ({type(error).__name__}: {error})"
            )
            return False
        return True

    def _fetch_in_worker(self, worker: _Worker, plan: DayPlan, same_pass: SamePassCsv | None) -> FetchedDay:
        """The DayFetch of `plan`'s day by `worker` (FetchForRun), each page's users handed to
        `same_pass` as the worker writes them. Raises the worker's error, rebuilt (RemoteError), or
        WorkerDiedError; leaving early (an error here, an interrupt) stops the worker."""
        worker.connection.send(FetchForRun(plan))
        done = False
        try:
            while True:
                try:
                    kind, payload = worker.connection.recv()
                except (EOFError, OSError):
                    worker.stop()
                    raise worker.died(plan.day, "while it staged") from None
                if kind == "log":
                    self._on_message(payload)
                elif kind == "lines":
                    if same_pass is not None:
                        same_pass.add(users_of_lines(payload))
                else:
                    done = True
                    if isinstance(payload, RemoteError):
                        raise payload.rebuild()
                    return payload
        finally:
            if not done:
                # Mid-fetch: it would go on writing the day's raw file for nobody.
                worker.stop()
                self._workers.remove(worker)

    def _planned(self, day: str) -> DayPlan | None:
        """The day's plan; None when making it failed (the staging folder cannot be made, say):
        the day then fails with that error as its fetch would have."""
        try:
            return self._plan(day)
        except Exception as error:  # noqa: BLE001 - the caller tells the errors apart
            self._staged[day] = StagedDay(day, error=error, failed_step="fetch")
            return None

    def _hand_out(self) -> None:
        """Sends the next days within the window to the workers, the least busy first: a new worker
        while every one has a day (up to `days_ahead`), then a second day to each, which it starts
        as soon as it finishes the first: this process hands days out only when it takes one, and
        a worker that waited for that would leave its core idle while a day is loaded."""
        while self._next < self._limit():
            if len(self._workers) < self._max_workers and all(worker.days for worker in self._workers):
                self._start_worker()
                continue
            free = [worker for worker in self._workers if len(worker.days) < DAYS_PER_WORKER]
            if not free:
                return
            worker = min(free, key=lambda worker: len(worker.days))
            day = self.days[self._next]
            self._next += 1
            plan = self._planned(day)
            if plan is not None:
                worker.days.append(day)
                worker.connection.send(plan)

    def _collect(self, *, block: bool) -> None:
        busy = {worker.connection: worker for worker in self._workers if worker.days}
        if not busy:
            return
        for connection in wait(list(busy), timeout=None if block else 0):
            worker = busy[connection]
            while worker.days and connection.poll():
                try:
                    kind, payload = connection.recv()
                except (EOFError, OSError):
                    # Its days fail as any unexpected error of their fetch does (permanently).
                    worker.stop()
                    self._workers.remove(worker)
                    for position, day in enumerate(worker.days):
                        when = "while it staged" if position == 0 else "before it staged"
                        self._staged[day] = StagedDay(day, error=worker.died(day, when), failed_step="fetch")
                    worker.days = []
                    break
                if kind == "log":
                    self._on_message(payload)
                    continue
                staged = pickle.loads(payload)
                if isinstance(staged.error, RemoteError):
                    staged.error = staged.error.rebuild()
                self._staged[worker.days.pop(0)] = staged
