"""Issue #16 on real range runs against the bundled server: with days staged ahead in worker processes
(USER_PIPELINE_DAYS_AHEAD) every layer gets the bytes a day-by-day run writes, and a day refused,
failed or terminated stops the run there exactly as before: the days before it committed, that day
and every later one (a day a worker had staged already included) left as the previous good run left them."""

import os
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from user_pipeline.users.assets import daily_users
from user_pipeline_tests.reliability.test_trustworthy_days import (
    day_layers,
    failure_text,
    recorded_days,
    refuse_changed_cities,
    retried_steps,
    snapshot,
)
from user_pipeline_tests.runs import USERS_ASSETS, materializations, users_resources

DAYS = ["2026-10-20", "2026-10-21", "2026-10-22", "2026-10-23"]
USERS, PAGE = 100, 50  # two pages a day: a fault can slow one and alter the other


def run_range(base_url: str, data_dir: Path, *, days_ahead: int, instance=None, days=DAYS, **settings):
    return dg.materialize(
        [daily_users],
        selection=list(USERS_ASSETS),
        instance=instance,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
        resources=users_resources(
            base_url,
            data_dir,
            users_per_partition=USERS,
            page_size=PAGE,
            days_ahead=days_ahead,
            backoff_seconds=0.05,
            **settings,
        ),
        raise_on_error=False,
    )


def test_a_range_run_writes_every_layer_the_same_with_days_ahead_as_day_by_day(users_api_server, tmp_path):
    # A changed answer for one day and a quarantined user on another: receipts and rejects differ by day.
    users_api_server.add_fault("alter_users", seeds=[DAYS[2]], users=[7], set={"login.uuid": None})
    outcomes = {}
    for days_ahead in (0, 1, 3):
        data_dir = tmp_path / f"ahead{days_ahead}"
        first = run_range(users_api_server.base_url, data_dir, days_ahead=days_ahead, contract_violations="quarantine")
        assert first.success
        users_api_server.add_fault("changed_users", seeds=[DAYS[1]], every=10, times=1)
        users_api_server.reset_concurrency()
        instance = dg.DagsterInstance.ephemeral()
        second = run_range(
            users_api_server.base_url,
            data_dir,
            days_ahead=days_ahead,
            instance=instance,
            contract_violations="quarantine",
        )
        assert second.success
        # The run and its workers call the API once at a time, as the run alone did.
        assert users_api_server.concurrency()["max_in_flight"] == 1
        receipts = {
            asset: [
                {key: m.metadata[key] for key in m.metadata if key not in ("path", "rejects_path", "warehouse")}
                for m in materializations(second, asset)
            ]
            for asset in USERS_ASSETS
        }
        outcomes[days_ahead] = (snapshot(data_dir, DAYS), receipts)
    (files, rows), receipts = outcomes[0]
    assert f"rejects/{DAYS[2]}.jsonl" in files and receipts["normalized_users"][1]["receipt/rows_changed"].value > 0
    for days_ahead in (1, 3):
        (got_files, got_rows), got_receipts = outcomes[days_ahead]
        assert got_files == files, f"days_ahead={days_ahead}"
        assert all(got.equals(expected) for got, expected in zip(got_rows, rows, strict=True))
        assert got_receipts == receipts


# Day 2 stopped in each way a day stops (by its second page: users PAGE..), its first page slowed
# so that day 3 is staged by the other worker (and day 4 by the run's process while it waits)
# before day 2 is refused. The run and its workers call the API once at a time.
DAY_2_STOPS = {
    "refused_by_the_warehouse": ({"changed_users": {"every": 10}}, {}, "the warehouse refused the day's rows"),
    "contract_violation": (
        {"alter_users": {"users": [PAGE + 3], "set": {"login.uuid": None}}},
        {},
        "users API answer breaks the user contract",
    ),
    "row_drop_refused": (
        {"alter_users": {"users": list(range(PAGE, PAGE + 40)), "set": {"login.uuid": None}}},
        {"contract_violations": "quarantine", "max_rejected_fraction": "1"},
        "row_drop_within_limit",
    ),
}


@pytest.mark.parametrize("stop", sorted(DAY_2_STOPS))
def test_a_range_stopped_on_day_2_keeps_day_2_and_every_later_day_a_worker_staged(users_api_server, tmp_path, stop):
    faults, settings, reason = DAY_2_STOPS[stop]
    data_dir = tmp_path / "data"
    assert run_range(users_api_server.base_url, data_dir, days_ahead=0).success
    good = {day: day_layers(data_dir, day) for day in DAYS}
    refuse_changed_cities(data_dir)
    users_api_server.reset_stats()
    users_api_server.add_fault("alter_users", seeds=[DAYS[0]], users=[3], set={"name.first": "Renamed"})
    users_api_server.add_fault("slow", seeds=[DAYS[1]], times=1, delay_seconds=2)
    for kind, fault in faults.items():
        users_api_server.add_fault(kind, seeds=[DAYS[1]], **fault)
    users_api_server.add_fault("alter_users", seeds=DAYS[2:], users=[5], set={"name.first": "Never"})
    instance = dg.DagsterInstance.ephemeral()

    result = run_range(users_api_server.base_url, data_dir, days_ahead=2, instance=instance, **settings)

    assert not result.success
    everything = failure_text(result) + "\n".join(
        f"{c.check_name}: {c.description}" for c in result.get_asset_check_evaluations() if not c.passed
    )
    assert reason in everything and DAYS[1] in everything, everything
    # Day 3 was fetched ahead before day 2 stopped the run (its worker calls the API while day 2's
    # worker checks and writes its slow first page; day 4 may have been too), and dropped.
    assert DAYS[2] in users_api_server.stats()["by_seed"]
    assert recorded_days(instance, result.run_id) == {asset: {DAYS[0]} for asset in USERS_ASSETS}
    assert b"Renamed" in day_layers(data_dir, DAYS[0])["normalized_users"]
    for day in DAYS[1:]:
        assert day_layers(data_dir, day) == good[day], f"{day} changed"
    assert not list((data_dir / "staging").glob("*/*/*")), "the staged days are dropped"


@pytest.mark.parametrize("days_ahead", [0, 1])
def test_a_step_retry_resumes_after_the_committed_days_with_days_ahead(users_api_server, tmp_path, days_ahead):
    # Day 2's first request answers 500 and the client does not retry it: the step retries.
    users_api_server.add_fault("server_error", seeds=[DAYS[1]], times=1, status=500)
    instance = dg.DagsterInstance.ephemeral()

    result = run_range(
        users_api_server.base_url, tmp_path / "data", days_ahead=days_ahead, instance=instance, max_attempts=1
    )

    assert result.success
    assert retried_steps(result) == ["daily_users"]
    by_seed = users_api_server.stats()["by_seed"]
    # Day 1, committed by the first attempt, is not fetched again; a later day the first attempt
    # had staged ahead was dropped with it and is fetched again.
    assert by_seed[DAYS[0]] == 2 and by_seed[DAYS[1]] == 3, by_seed
    assert all(by_seed[day] in ((2,) if days_ahead == 0 else (2, 4)) for day in DAYS[2:]), by_seed
    assert recorded_days(instance, result.run_id) == {asset: set(DAYS) for asset in USERS_ASSETS}
    assert not list((tmp_path / "data" / "staging").glob("*/*/*"))


def test_a_range_run_interrupted_mid_range_stops_its_workers_and_its_retry_goes_on_from_the_day_it_stopped_at(
    users_api_server, tmp_path
):
    """An interrupt (what Dagster's termination and Ctrl-C deliver to the run's process) while a
    worker fetches day 3 and the run's process waits to stage day 4."""
    data_dir = tmp_path / "data"
    assert run_range(users_api_server.base_url, data_dir, days_ahead=0).success
    good = {day: day_layers(data_dir, day) for day in DAYS}
    users_api_server.reset_stats()
    users_api_server.add_fault("alter_users", seeds=DAYS[:2], users=[3], set={"name.first": "Renamed"})
    users_api_server.add_fault("slow", seeds=[DAYS[2]], delay_seconds=60)
    users_api_server.add_fault("alter_users", seeds=[DAYS[3]], users=[5], set={"name.first": "Never"})
    before = {child.pid for child in psutil.Process().children()}
    workers: list[int] = []

    def interrupt_once_day_3_is_fetched() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            committed = b"Renamed" in (day_layers(data_dir, DAYS[1])["normalized_users"] or b"")
            if committed and users_api_server.stats()["by_seed"].get(DAYS[2], 0) >= 1:
                workers.extend(child.pid for child in psutil.Process().children() if child.pid not in before)
                os.kill(os.getpid(), signal.SIGINT)
                break
            time.sleep(0.05)
        # Python acts on a signal in the main thread once its blocked call returns: let day 3's answer go.
        time.sleep(0.5)
        users_api_server.clear_faults()

    watcher = threading.Thread(target=interrupt_once_day_3_is_fetched)
    watcher.start()
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = run_range(users_api_server.base_url, data_dir, days_ahead=1, instance=instance)
    finally:
        watcher.join()

    # Dagster answers an interrupt of a step with a RetryPolicy by retrying it (a termination of the
    # run ends it instead): the interrupted attempt stopped at day 3, the retry went on from there.
    assert result.success, failure_text(result)
    assert retried_steps(result) == ["daily_users"]
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert f"daily_users stopped at {DAYS[2]}; committed and recorded before it: {DAYS[0]}, {DAYS[1]}" in messages
    assert any(f"not fetched again: {DAYS[0]}, {DAYS[1]}" in message for message in messages)
    by_seed = users_api_server.stats()["by_seed"]
    assert (by_seed[DAYS[0]], by_seed[DAYS[1]]) == (2, 2), by_seed
    assert workers, "day 3 was staged by a worker process"
    assert not [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    stopped_attempt = [
        entry.asset_materialization.partition
        for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if entry.asset_materialization.asset_key == dg.AssetKey("users_table")
        and entry.asset_materialization.partition in DAYS[:2]
    ]
    assert sorted(stopped_attempt) == [DAYS[0], DAYS[0], DAYS[1], DAYS[1]], "recorded at the stop, then with the range"
    for day in DAYS[:2]:
        assert b"Renamed" in day_layers(data_dir, day)["normalized_users"]
    # The faults were cleared before the retry fetched days 3 and 4: the good answers again.
    for day in DAYS[2:]:
        assert day_layers(data_dir, day) == good[day], f"{day} changed"
    assert not list((data_dir / "staging").glob("*/*/*")), "nothing left staged"
