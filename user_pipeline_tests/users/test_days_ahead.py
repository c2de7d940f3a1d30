"""Days staged ahead in worker processes (users/days_ahead.py) give what staging each day in turn gives:
the same bytes in every layer, the same errors (type, message, attributes), the same log lines, in
date order; a worker never outlives its stage."""

import copy
import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_pipeline.shared.errors import InvalidSettingError
from user_pipeline.users.api_client import UsersPage, loads_noting_floats
from user_pipeline.users.api_errors import CircuitOpenError, TransientUsersApiError, UsersApiError
from user_pipeline.users.days import RowDropRefused, load_checks, load_day
from user_pipeline.users.days_ahead import DayPlan, DaysAhead, RemoteError, StagedDay, WorkerDiedError
from user_pipeline.users.receipts import fingerprints_path
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.conftest import FIXTURES_DIR
from user_pipeline_tests.users.test_one_pass import api_users, declared_values

RECORDED = json.loads((FIXTURES_DIR / "seed-fixture_results-1000_page-1.json").read_text(encoding="utf-8"))["results"]
DAYS = ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
PROPERTY = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


def page_source(users_by_day: dict[str, list[dict]], page_size: int = 2, faults: dict | None = None):
    """The API's pages for each day (fresh objects per call: the fetch drops passwords in place);
    `faults`: day -> an exception raised at the call, or after the first page."""
    faults = faults or {}

    def pages(day: str, on_retry):
        fault = faults.get(day)
        if isinstance(fault, InvalidSettingError):
            raise fault
        return _pages(day, copy.deepcopy(users_by_day[day]), page_size, on_retry, fault)

    return pages


def _pages(day, users, page_size, on_retry, fault):
    on_retry(f"{day}: page 1 answered 429, retrying")
    for start in range(0, len(users), page_size):
        payload, has_floats = loads_noting_floats(json.dumps({"results": users[start : start + page_size]}))
        yield UsersPage(day, start // page_size + 1, payload["results"], has_floats)
        if fault is not None:
            raise fault


def plan_in(folder: Path, *, quarantine: bool = True, max_row_drop_fraction: float = 1.0):
    def plan(day: str) -> DayPlan:
        csv_path = folder / "normalized_users" / f"{day}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        (folder / "raw_users").mkdir(exist_ok=True)
        return DayPlan(
            day,
            raw_path=folder / "raw_users" / f"{day}.jsonl",
            rejects_path=folder / "rejects" / f"{day}.jsonl" if quarantine else None,
            csv_path=csv_path,
            previous_csv=csv_path,
            max_rejected_fraction=1.0,
            max_row_drop_fraction=max_row_drop_fraction,
        )

    return plan


def run_days(folder: Path, pages, days_ahead: int, days=DAYS, **plan_options) -> tuple[list, list[str]]:
    """Stages and loads `days` as daily_users does: each day taken in order, loaded, then the next;
    returns each day's outcome (rows stored, or the error's type and message) and the log lines."""
    warehouse = open_warehouse(f"sqlite:///{folder}/warehouse.sqlite")
    outcomes, messages = [], []
    with DaysAhead(
        days, plan_in(folder, **plan_options), pages, days_ahead=days_ahead, on_message=messages.append
    ) as ahead:
        for day in days:
            staged = ahead.take(day)
            try:
                staged.fetched_or_raise()
                normalized = staged.normalized_or_raise()
            except Exception as error:  # noqa: BLE001 - compared as type and message
                outcomes.append((day, type(error).__name__, str(error)))
                break
            loaded = load_day(warehouse, day, normalized.path, expected_hash=normalized.receipt.content_hash)
            assert all(passed for passed, _ in load_checks(loaded, normalized).values())
            outcomes.append((day, loaded.rows_stored, normalized.receipt, staged.checks))
    return outcomes, messages


def assert_same_layers(folder: Path, reference: Path, days=DAYS) -> None:
    """Every layer's bytes (raw file, rejects, CSV, fingerprints) and the table's rows, by day."""
    assert layer_files(folder, days) == layer_files(reference, days)
    for day in days:
        pd.testing.assert_frame_equal(
            open_warehouse(f"sqlite:///{folder}/warehouse.sqlite").read_partition(day),
            open_warehouse(f"sqlite:///{reference}/warehouse.sqlite").read_partition(day),
        )


def layer_files(folder: Path, days=DAYS) -> dict:
    found = {}
    for day in days:
        csv_path = folder / "normalized_users" / f"{day}.csv"
        for path in (
            folder / "raw_users" / f"{day}.jsonl",
            folder / "rejects" / f"{day}.jsonl",
            csv_path,
            fingerprints_path(csv_path),
        ):
            found[str(path.relative_to(folder))] = path.read_bytes() if path.exists() else None
    found["temporary files"] = sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.tmp"))
    return found


@PROPERTY
@given(
    users=st.lists(api_users(declared_values), min_size=len(DAYS), max_size=len(DAYS)),
    days_ahead=st.integers(min_value=1, max_value=3),
    day_count=st.integers(min_value=1, max_value=len(DAYS)),
)
def test_days_staged_ahead_write_every_layer_as_days_staged_in_turn(tmp_path_factory, users, days_ahead, day_count):
    """Any number of days: a one-day run's day is fetched by a worker and normalized here."""
    days = DAYS[:day_count]
    pages = page_source(dict(zip(DAYS, users, strict=True)))
    in_turn, ahead = tmp_path_factory.mktemp("in_turn"), tmp_path_factory.mktemp("ahead")

    expected, expected_lines = run_days(in_turn, pages, days_ahead=0, days=days)
    got, lines = run_days(ahead, pages, days_ahead=days_ahead, days=days)

    assert got == expected
    assert_same_layers(ahead, in_turn, days=days)
    # Each line as it arrives: a later day's worker may report before the run's process does.
    assert sorted(lines) == sorted(expected_lines)


def test_a_range_of_recorded_users_is_the_same_in_every_layer_with_workers(tmp_path):
    pages = page_source({day: RECORDED[i * 40 : (i + 1) * 40] for i, day in enumerate(DAYS)}, page_size=15)
    expected = run_days(tmp_path / "in_turn", pages, days_ahead=0)
    for days_ahead in (1, 2):
        got = run_days(tmp_path / f"ahead{days_ahead}", pages, days_ahead=days_ahead)
        assert got[0] == expected[0] and sorted(got[1]) == sorted(expected[1])
        assert_same_layers(tmp_path / f"ahead{days_ahead}", tmp_path / "in_turn")
    outcomes, messages = expected
    assert [(outcome[0], outcome[1]) for outcome in outcomes] == [(day, 40) for day in DAYS]
    assert len(messages) == len(DAYS)


def violating(users: list[dict]) -> list[dict]:
    users = copy.deepcopy(users)
    users[1]["login"]["uuid"] = None
    return users


# Each error a day's fetch or normalize can stop at, raised by the page source or met on the way.
FAULTS = {
    "contract_violation": {},
    "transient": {DAYS[1]: TransientUsersApiError("users API unavailable: 503 after 5 attempts")},
    "circuit_open": {DAYS[1]: CircuitOpenError("circuit open for http://x/api/ until 12:00")},
    "permanent": {DAYS[1]: UsersApiError("users API answered a page without results")},
    "bad_setting": {DAYS[1]: InvalidSettingError("users_per_partition", 0, "an integer from 1")},
    "os_error": {DAYS[1]: FileNotFoundError(2, "No such file or directory", "/nowhere")},
}


@pytest.mark.parametrize("days", [DAYS, DAYS[1:2]], ids=["range", "one_day"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_an_error_in_a_worker_reaches_the_caller_as_it_would_in_process(tmp_path, fault, days):
    """A range's second day (staged by a worker), or a one-day run's day (fetched by a worker)."""
    faults, quarantine = FAULTS[fault], fault != "contract_violation"
    users = {day: RECORDED[i * 10 : (i + 1) * 10] for i, day in enumerate(DAYS)}
    if fault == "contract_violation":
        users[DAYS[1]] = violating(users[DAYS[1]])

    errors = {}
    for days_ahead in (0, 1, 2):
        folder = tmp_path / str(days_ahead)
        pages = page_source(users, faults=faults)
        with DaysAhead(
            days, plan_in(folder, quarantine=quarantine), pages, days_ahead=days_ahead, on_message=print
        ) as ahead:
            if days[0] != DAYS[1]:
                assert ahead.take(DAYS[0]).error is None
            staged = ahead.take(DAYS[1])
        with pytest.raises(Exception) as raised:
            staged.fetched_or_raise()
        errors[days_ahead] = raised.value

    in_turn = errors[0]
    for days_ahead in (1, 2):
        error = errors[days_ahead]
        assert type(error) is type(in_turn)
        assert str(error) == str(in_turn) and error.args == in_turn.args
        assert vars(error) == vars(in_turn)
        assert "in the day-ahead worker process" in str(error.__cause__)
    if fault == "contract_violation":
        assert errors[1].violations[0].field == "login.uuid"
    if fault == "os_error":
        assert (errors[1].errno, errors[1].filename) == (2, "/nowhere")


def test_a_row_drop_refused_in_a_worker_keeps_its_receipt(tmp_path):
    users = {day: RECORDED[i * 10 : (i + 1) * 10] for i, day in enumerate(DAYS)}
    errors = {}
    for days_ahead in (0, 1):
        folder = tmp_path / str(days_ahead)
        run_days(folder, page_source(users), days_ahead=0)
        fewer = {**users, DAYS[1]: users[DAYS[1]][:2]}
        outcomes, _ = run_days(folder, page_source(fewer), days_ahead=days_ahead, max_row_drop_fraction=0.2)
        assert [outcome[0] for outcome in outcomes] == DAYS[:2]
        with DaysAhead(
            DAYS[1:2],
            plan_in(folder, max_row_drop_fraction=0.2),
            page_source(fewer),
            days_ahead=days_ahead,
            on_message=print,
        ) as ahead:
            staged = ahead.take(DAYS[1])
        with pytest.raises(RowDropRefused) as refused:
            staged.normalized_or_raise()
        errors[days_ahead] = refused.value
    assert str(errors[1]) == str(errors[0])
    assert errors[1].receipt == errors[0].receipt and errors[1].day == DAYS[1]


def test_an_exception_that_cannot_be_pickled_is_rebuilt_with_its_type_and_message():
    class Unpicklable(Exception):
        def __init__(self, day: str, why: str):
            super().__init__(f"{day}: {why}")
            self.day, self.handle = day, lambda: None

    original = Unpicklable(DAYS[0], "broken")
    rebuilt = RemoteError.of(original).rebuild()
    assert type(rebuilt) is Unpicklable and str(rebuilt) == f"{DAYS[0]}: broken" and rebuilt.day == DAYS[0]
    assert not hasattr(rebuilt, "handle")


def test_the_log_lines_of_a_worker_reach_the_caller_in_order(tmp_path):
    users = {day: RECORDED[i * 10 : (i + 1) * 10] for i, day in enumerate(DAYS)}
    _, in_turn = run_days(tmp_path / "in_turn", page_source(users), days_ahead=0)
    _, ahead = run_days(tmp_path / "ahead", page_source(users), days_ahead=2)
    assert in_turn == [f"{day}: page 1 answered 429, retrying" for day in DAYS]
    assert sorted(ahead) == sorted(in_turn)


def children() -> set[int]:
    return {child.pid for child in psutil.Process().children() if child.status() != psutil.STATUS_ZOMBIE}


def test_leaving_the_block_early_stops_the_workers_before_they_write_more(tmp_path):
    before = children()
    # Days 2 and 3 big enough that their workers are still at them when the block is left.
    users = {DAYS[0]: RECORDED[:10], **dict.fromkeys(DAYS[1:], RECORDED * 3)}

    with DaysAhead(
        DAYS, plan_in(tmp_path), page_source(users, page_size=1000), days_ahead=2, on_message=print
    ) as ahead:
        ahead.take(DAYS[0])
        assert len(children() - before) == 2, "two later days are staged by two workers"
    assert children() == before
    written = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")}
    time.sleep(0.5)
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")} == written


def test_a_worker_killed_while_it_stages_a_day_is_an_error_naming_the_day(tmp_path):
    def pages(day: str, on_retry):
        if day == DAYS[1]:
            os.kill(os.getpid(), signal.SIGKILL)
        return page_source(dict.fromkeys(DAYS, RECORDED[:10]))(day, on_retry)

    with DaysAhead(DAYS, plan_in(tmp_path), pages, days_ahead=1, on_message=print) as ahead:
        assert ahead.take(DAYS[0]).error is None
        staged = ahead.take(DAYS[1])
    with pytest.raises(WorkerDiedError, match=rf"\(exit code -9\) while it staged {DAYS[1]}: {DAYS[1]} is not staged"):
        staged.fetched_or_raise()


def test_days_are_taken_in_the_order_given(tmp_path):
    with (
        DaysAhead(DAYS, plan_in(tmp_path), page_source({}), days_ahead=0, on_message=print) as ahead,
        pytest.raises(ValueError, match=f"{DAYS[1]} taken out of order: the next day is {DAYS[0]}"),
    ):
        ahead.take(DAYS[1])


def test_a_failed_day_hands_out_no_later_day(tmp_path):
    fetched = tmp_path / "fetched"
    fetched.mkdir()

    def pages(day: str, on_retry):
        (fetched / day).touch()
        if day == DAYS[0]:
            raise TransientUsersApiError("users API unavailable")
        return page_source(dict.fromkeys(DAYS, RECORDED[:10]))(day, on_retry)

    with DaysAhead(DAYS, plan_in(tmp_path), pages, days_ahead=1, on_message=print) as ahead:
        staged = ahead.take(DAYS[0])
    assert isinstance(staged, StagedDay) and isinstance(staged.error, TransientUsersApiError)
    # Days 2 and 3 were handed to the worker before day 1 failed (and are the caller's to drop);
    # nothing was handed out after it: day 4 never was.
    assert DAYS[3] not in {p.name for p in fetched.iterdir()}
    assert DAYS[0] in {p.name for p in fetched.iterdir()}


def test_the_bare_script_reads_days_ahead_from_its_variable(monkeypatch):
    from benchmarks.bare import settings as bare_settings

    monkeypatch.setenv("USER_PIPELINE_DAYS_AHEAD", "3")
    assert bare_settings()["days_ahead"] == 3
    monkeypatch.setenv("USER_PIPELINE_DAYS_AHEAD", "9")
    with pytest.raises(SystemExit, match="USER_PIPELINE_DAYS_AHEAD=9: expected an integer from 0 to 8"):
        bare_settings()


def test_pandas_frames_in_a_staged_day_cross_intact(tmp_path):
    users = {day: RECORDED[i * 10 : (i + 1) * 10] for i, day in enumerate(DAYS)}
    previews = {}
    for days_ahead in (0, 1):
        with DaysAhead(
            DAYS[:2], plan_in(tmp_path / str(days_ahead)), page_source(users), days_ahead=days_ahead, on_message=print
        ) as ahead:
            ahead.take(DAYS[0])
            previews[days_ahead] = ahead.take(DAYS[1]).normalized.summary.preview
    pd.testing.assert_frame_equal(previews[1], previews[0])


def _stage_in_a_daemon(folder: Path, results) -> None:
    users = {day: RECORDED[i * 10 : (i + 1) * 10] for i, day in enumerate(DAYS)}
    outcomes, messages = run_days(folder, page_source(users), days_ahead=2)
    results.put(([outcome[:2] for outcome in outcomes], messages))


def test_days_are_staged_ahead_in_a_daemonic_process_as_a_celery_pool_process_is(tmp_path):
    # multiprocessing refuses children to a daemonic process; the celery executor's steps run in one.
    import multiprocessing

    results = multiprocessing.get_context("fork").SimpleQueue()
    daemon = multiprocessing.get_context("fork").Process(
        target=_stage_in_a_daemon, args=(tmp_path, results), daemon=True
    )
    daemon.start()
    daemon.join(60)
    outcomes, messages = results.get()
    assert outcomes == [(day, 10) for day in DAYS]
    assert not [message for message in messages if "no day-ahead worker process" in message]


def test_where_no_worker_can_start_the_days_are_staged_in_process_and_the_log_says_why(tmp_path, monkeypatch):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    users = {day: RECORDED[i * 10 : (i + 1) * 10] for i, day in enumerate(DAYS)}
    expected, _ = run_days(tmp_path / "in_turn", page_source(users), days_ahead=0)
    monkeypatch.setattr(os, "fork", no_fork)
    outcomes, messages = run_days(tmp_path / "ahead", page_source(users), days_ahead=2)
    assert outcomes == expected
    assert_same_layers(tmp_path / "ahead", tmp_path / "in_turn")
    [why] = [message for message in messages if "no day-ahead worker process could be started" in message]
    assert why.endswith("(BlockingIOError: [Errno 11] Resource temporarily unavailable)")


def test_the_api_is_called_once_at_a_time_by_the_run_and_its_workers(tmp_path):
    in_call = tmp_path / "in_call"
    overlaps = tmp_path / "overlaps"
    users = {day: RECORDED[i * 10 : (i + 1) * 10] for i, day in enumerate(DAYS)}

    def pages(day: str, on_retry):
        for page in page_source(users, page_size=3)(day, on_retry):
            # A call under way: a marker only one process can create at a time.
            try:
                marker = os.open(in_call, os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                overlaps.touch()
                yield page
                continue
            time.sleep(0.01)
            os.close(marker)
            os.unlink(in_call)
            yield page

    outcomes, _ = run_days(tmp_path / "data", pages, days_ahead=3)
    assert [outcome[:2] for outcome in outcomes] == [(day, 10) for day in DAYS]
    assert not overlaps.exists(), "two calls to the API were under way at once"


def test_a_worker_goes_on_to_its_next_day_while_the_run_loads_one(tmp_path):
    # The run's process hands days out only when it takes one: a worker given one day at a time
    # finished it and waited, its core idle, while the run loaded the day before.
    started = tmp_path / "started"
    started.mkdir()
    users = {day: RECORDED[i * 10 : (i + 1) * 10] for i, day in enumerate(DAYS)}

    def pages(day: str, on_retry):
        (started / day).write_text(f"{os.getpid()} {time.time()!r}")
        return page_source(users)(day, on_retry)

    with DaysAhead(DAYS, plan_in(tmp_path), pages, days_ahead=1, on_message=print) as ahead:
        ahead.take(DAYS[0])
        time.sleep(1.0)  # the run loads the first day
        taking_second = time.time()
        ahead.take(DAYS[1])
        for day in DAYS[2:]:
            ahead.take(day)
    pid, when = (started / DAYS[2]).read_text().split()
    assert int(pid) != os.getpid(), "the third day is the worker's"
    assert float(when) < taking_second, "the worker started the third day while the first was loaded"


def test_a_day_no_worker_holds_is_fetched_by_an_idle_worker_and_normalized_here(tmp_path):
    """A one-day run (the daily schedule's): its worker fetches the day (requests, contract, raw
    file) while the run's process normalizes each page it has written, and every layer is as the
    day staged in one process writes it."""
    source = page_source({DAYS[0]: RECORDED[:40]}, page_size=15)
    fetched_in = tmp_path / "fetched_in"

    def pages(day: str, on_retry):
        fetched_in.write_text(str(os.getpid()))
        return source(day, on_retry)

    expected = run_days(tmp_path / "in_turn", source, days_ahead=0, days=DAYS[:1])
    got = run_days(tmp_path / "split", pages, days_ahead=1, days=DAYS[:1])

    assert int(fetched_in.read_text()) != os.getpid(), "the day was fetched in the run's process"
    assert got == expected
    assert_same_layers(tmp_path / "split", tmp_path / "in_turn", days=DAYS[:1])


def test_a_worker_killed_while_it_fetches_the_day_this_process_normalizes_is_an_error_naming_the_day(tmp_path):
    run_pid = os.getpid()

    def pages(day: str, on_retry):
        if os.getpid() != run_pid:
            os.kill(os.getpid(), signal.SIGKILL)
        return page_source({DAYS[0]: RECORDED[:10]})(day, on_retry)

    before = children()
    with DaysAhead(DAYS[:1], plan_in(tmp_path), pages, days_ahead=1, on_message=print) as ahead:
        staged = ahead.take(DAYS[0])
    with pytest.raises(WorkerDiedError, match=rf"\(exit code -9\) while it staged {DAYS[0]}: {DAYS[0]} is not staged"):
        staged.fetched_or_raise()
    assert children() == before
