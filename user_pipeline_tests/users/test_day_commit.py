"""The day commit: staged files replace the committed ones together or not at all, a refused day
keeps them, and a commit cut short by a crash is finished by the next run."""

import json
import os
import subprocess
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_pipeline.shared.owners import Owner, this_host
from user_pipeline.users.day_commit import (
    COMMIT_LEASE_SECONDS,
    COMMITS,
    OWNER_FILE,
    STALE_AFTER_SECONDS,
    RunStaging,
    finish_interrupted_commits,
    remove_stale_staging,
)
from user_pipeline.users.resources import PartitionFiles

DAY = "2026-11-20"


def committed_files(tmp_path):
    files = PartitionFiles(data_dir=str(tmp_path))
    for path, text in [
        (files.committed_raw_users(DAY), "old raw\n"),
        (files.committed_normalized_users(DAY), "old csv\n"),
        (files.rejects(DAY), "old rejects\n"),
    ]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def test_outside_a_run_the_readers_see_the_committed_files(tmp_path):
    files = committed_files(tmp_path)
    assert files.raw_users(DAY) == files.committed_raw_users(DAY) == tmp_path / "raw_users" / f"{DAY}.jsonl"
    assert files.normalized_users(DAY) == tmp_path / "normalized_users" / f"{DAY}.csv"


def test_staged_files_are_read_by_the_run_and_replace_the_committed_ones_together(tmp_path):
    files = committed_files(tmp_path)
    files.staged_raw_users(DAY).write_text("new raw\n")
    files.staged_normalized_users(DAY).write_text("new csv\n")
    files.stage_no_rejects(DAY)
    assert files.raw_users(DAY).read_text() == "new raw\n", "a step reads what its run staged"
    assert files.normalized_users_dir() == tmp_path / "staging" / f"process-{os.getpid()}" / "normalized_users"
    assert files.committed_raw_users(DAY).read_text() == "old raw\n"
    committed = files.commit_day(DAY)
    assert sorted(p.name for p in committed) == [f"{DAY}.csv", f"{DAY}.jsonl", f"{DAY}.jsonl"]
    assert files.committed_raw_users(DAY).read_text() == "new raw\n"
    assert files.committed_normalized_users(DAY).read_text() == "new csv\n"
    assert not files.rejects(DAY).exists()
    assert list((tmp_path / "staging").iterdir()) == [tmp_path / "staging" / ".commit.lock"]
    assert files.normalized_users_dir() == tmp_path / "normalized_users"


def test_a_discarded_day_keeps_every_committed_file(tmp_path):
    files = committed_files(tmp_path)
    files.staged_raw_users(DAY).write_text("new raw\n")
    files.staged_normalized_users(DAY).write_text("new csv\n")
    files.discard_day(DAY)
    assert files.committed_raw_users(DAY).read_text() == "old raw\n"
    assert files.committed_normalized_users(DAY).read_text() == "old csv\n"
    assert files.rejects(DAY).read_text() == "old rejects\n"
    assert files.commit_day(DAY) == [], "nothing staged, nothing committed"
    assert files.committed_raw_users(DAY).read_text() == "old raw\n"


def test_a_commit_cut_short_is_finished_by_the_next_run(tmp_path):
    staging = RunStaging(tmp_path / "staging", "run-a")
    target_raw, target_csv = tmp_path / "raw_users" / f"{DAY}.jsonl", tmp_path / "normalized_users" / f"{DAY}.csv"
    staged_raw, staged_csv = staging.path(DAY, "raw_users.jsonl"), staging.path(DAY, "normalized_users.csv")
    staged_raw.write_text("new raw\n")
    staged_csv.write_text("new csv\n")
    # As a crash after the marker and the first rename leaves it:
    (staging.folder / COMMITS).mkdir()
    (staging.folder / COMMITS / f"{DAY}.json").write_text(
        json.dumps({str(staged_raw): str(target_raw), str(staged_csv): str(target_csv)})
    )
    target_raw.parent.mkdir(parents=True)
    os.replace(staged_raw, target_raw)
    # While its run's process lives, the marker is that run's own (it applies it under the lock).
    assert finish_interrupted_commits(tmp_path / "staging") == []
    assert staged_csv.exists()
    (staging.folder / "OWNER").write_text(exited_pid())  # the run has crashed
    assert sorted(p.name for p in finish_interrupted_commits(tmp_path / "staging")) == [f"{DAY}.csv"]
    assert (target_raw.read_text(), target_csv.read_text()) == ("new raw\n", "new csv\n")
    assert not staging.folder.exists()


def test_a_staging_folder_removed_while_listed_has_no_staged_days(tmp_path):
    """Concurrent runs: one run's start-up lists the staging folders while another run, done with
    its days, removes its own (seen as FileNotFoundError in a ten-days-at-once run)."""
    staging = RunStaging(tmp_path / "staging", "run-b")
    staging.path(DAY, "raw_users.jsonl").write_text("staged\n")
    staging.discard(DAY)
    assert not staging.folder.exists()
    assert staging.staged_days() == []
    assert finish_interrupted_commits(tmp_path / "staging") == []


def exited_pid() -> str:
    """The pid of a process that has exited."""
    return subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()


def test_a_dead_runs_staging_is_kept_a_day_for_re_execution_then_removed(tmp_path):
    root = tmp_path / "staging"
    dead = RunStaging(root, "dead-run")
    # A process that has exited: its pid is no longer alive.
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead.path(DAY, "raw_users.jsonl").write_text("staged\n")
    (dead.folder / "OWNER").write_text(exited.stdout.strip())
    alive = RunStaging(root, "live-run")
    alive.path(DAY, "raw_users.jsonl").write_text("staged\n")
    assert remove_stale_staging(root, keep="current") == []
    later = time.time() + STALE_AFTER_SECONDS + 60
    assert remove_stale_staging(root, keep="current", now=later) == [dead.folder]
    assert alive.staged(DAY, "raw_users.jsonl") is not None, "a live run's staging is never removed"


def test_a_staging_folder_removed_while_judged_stale_is_skipped(tmp_path, monkeypatch):
    """The same race at clean-up: a run finishing between our listing and our look at its folder's
    age (seen in CI as FileNotFoundError from stat in a ten-days-at-once run)."""
    from user_pipeline.users import day_commit

    root = tmp_path / "staging"
    finishing = RunStaging(root, "finishing-run")
    finishing.path(DAY, "raw_users.jsonl").write_text("staged\n")

    def owner_gone_and_folder_removed(folder, **judged_at):
        finishing.discard(DAY)  # the run removes its own folder as it ends
        return False

    monkeypatch.setattr(day_commit, "_owner_alive", owner_gone_and_folder_removed)
    later = time.time() + STALE_AFTER_SECONDS + 60
    assert remove_stale_staging(root, keep="current", now=later) == []


def other_host_owner() -> Owner:
    """A run on another host sharing the data directory; its pid is a process that exited here."""
    return Owner("node-b.example.com", int(exited_pid()), 1733000000.0)


def stage(root, run_key: str, text: str, owner: Owner | None = None) -> RunStaging:
    staging = RunStaging(root, run_key)
    staging.path(DAY, "raw_users.jsonl").write_text(text)
    if owner is not None:
        (staging.folder / OWNER_FILE).write_text(owner.to_json())
    return staging


def cut_short(staging: RunStaging, target) -> None:
    """As a crash between the commit marker and the first rename leaves a commit."""
    (staging.folder / COMMITS).mkdir()
    plan = {str(staging.staged(DAY, "raw_users.jsonl")): str(target)}
    (staging.folder / COMMITS / f"{DAY}.json").write_text(json.dumps(plan))


def age(path, seconds: float) -> None:
    for entry in [path, *path.rglob("*")]:
        stamp = entry.stat().st_mtime - seconds
        os.utime(entry, (stamp, stamp))


def test_a_run_records_its_host_pid_and_start_time_as_owner(tmp_path):
    staging = stage(tmp_path / "staging", "run-a", "staged\n")
    assert Owner.from_json((staging.folder / OWNER_FILE).read_text()) == Owner.current()
    assert Owner.current().host == this_host()
    # A re-execution of the run in another process takes the folder over.
    (staging.folder / OWNER_FILE).write_text(exited_pid())
    staging.path(DAY, "normalized_users.csv")
    assert Owner.from_json((staging.folder / OWNER_FILE).read_text()) == Owner.current()


def test_another_hosts_staging_is_judged_by_its_age_never_by_a_pid_of_this_host(tmp_path):
    root = tmp_path / "staging"
    remote = stage(root, "remote-run", "staged\n", other_host_owner())
    now = time.time()
    assert remove_stale_staging(root, keep="current", now=now + 3600) == [], "young: its run may be at work"
    assert remove_stale_staging(root, keep="current", now=now + STALE_AFTER_SECONDS + 60) == [remote.folder]


def test_another_hosts_commit_is_finished_only_once_its_marker_is_older_than_the_lease(tmp_path):
    root, target = tmp_path / "staging", tmp_path / "raw_users" / f"{DAY}.jsonl"
    remote = stage(root, "remote-run", "remote raw\n", other_host_owner())
    cut_short(remote, target)
    assert finish_interrupted_commits(root) == [], "a young marker may be a live commit of that host"
    assert not target.exists()
    later = time.time() + COMMIT_LEASE_SECONDS + 1
    assert finish_interrupted_commits(root, now=later) == [target]
    assert target.read_text() == "remote raw\n"
    assert remote.folder.exists(), "its staging is removed by remove_stale_staging once stale, not now"


def test_a_reused_pid_is_a_dead_owner(tmp_path):
    """The OWNER's pid runs here, but a process started after the run's: the run is gone."""
    root, target = tmp_path / "staging", tmp_path / "raw_users" / f"{DAY}.jsonl"
    me = Owner.current()
    reused = stage(root, "crashed-run", "crashed run's raw\n", Owner(me.host, me.pid, me.started_at - 600))
    cut_short(reused, target)
    assert finish_interrupted_commits(root) == [target]
    assert target.read_text() == "crashed run's raw\n"
    assert not reused.folder.exists()
    live = stage(root, "live-run", "live\n", me)
    age(live.folder, STALE_AFTER_SECONDS + 60)
    assert remove_stale_staging(root, keep="current") == [], "a live run's staging is never removed"


def test_a_days_commit_finishes_an_earlier_commit_of_the_day_first(tmp_path):
    """Another host's commit cut short must not land after a newer commit of the same day once its
    lease runs out: the newer commit finishes it first, then lands on top."""
    root, target = tmp_path / "staging", tmp_path / "raw_users" / f"{DAY}.jsonl"
    remote = stage(root, "remote-run", "older raw\n", other_host_owner())
    cut_short(remote, target)
    newer = stage(root, "newer-run", "newer raw\n")
    assert newer.commit(DAY, {"raw_users.jsonl": target}) == [target]
    assert target.read_text() == "newer raw\n"
    assert finish_interrupted_commits(root, now=time.time() + COMMIT_LEASE_SECONDS + 1) == []
    assert target.read_text() == "newer raw\n"


owner_records = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda host, pid, started: json.dumps({"host": host, "pid": pid, "started_at": started}),
        st.text(max_size=20),
        st.one_of(st.integers(), st.floats(), st.text(max_size=5)),
        st.one_of(st.none(), st.floats(allow_nan=True), st.integers()),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=owner_records, old=st.booleans())
def test_an_odd_owner_record_never_crashes_the_clean_up_and_its_staging_goes_only_when_old(tmp_path, record, old):
    root = tmp_path / f"case-{time.monotonic_ns()}" / "staging"
    staging = stage(root, "some-run", "staged\n")
    (staging.folder / OWNER_FILE).write_text(record, encoding="utf-8", errors="surrogateescape")
    if old:
        age(staging.folder, STALE_AFTER_SECONDS + 60)
    owner = Owner.from_json(record)
    removed = remove_stale_staging(root, keep="current")
    if owner is None or owner.host != this_host():
        assert removed == ([staging.folder] if old else [])
    else:
        assert removed == ([] if owner.runs_here() or not old else [staging.folder])


def test_a_day_still_being_written_keeps_the_staging_folder_when_another_day_is_committed(tmp_path):
    # Days staged ahead: a worker process writes day 2 (a temporary file) while the run commits day 1.
    files = committed_files(tmp_path)
    next_day = "2026-11-21"
    files.staged_raw_users(DAY).write_text("new raw\n")
    writing = files.staged_raw_users(next_day).with_name(f".{next_day}.jsonl.host+1+2.abcd.tmp")
    writing.write_text("half of day 2")
    files.commit_day(DAY)
    assert writing.read_text() == "half of day 2"
    # The run stops before day 2 (its writer stopped first): day 2 and the folder go.
    files.discard_day(next_day)
    assert not writing.exists()
    assert list((tmp_path / "staging").iterdir()) == [tmp_path / "staging" / ".commit.lock"]


def test_a_day_reserved_for_a_worker_keeps_the_staging_folder_until_its_files_are_written(tmp_path):
    # Days staged ahead: a worker process may not have opened any file of day 2 yet when day 1 commits.
    files = committed_files(tmp_path)
    next_day = "2026-11-21"
    files.staged_raw_users(DAY).write_text("new raw\n")
    planned = files.staged_raw_users(next_day)
    reservation = files.reserve_day(next_day)
    files.commit_day(DAY)
    assert planned.parent.is_dir(), "day 2's folder is still there for its worker"
    planned.write_text("day 2")
    reservation.unlink()
    files.commit_day(next_day)
    assert files.committed_raw_users(next_day).read_text() == "day 2"
    assert list((tmp_path / "staging").iterdir()) == [tmp_path / "staging" / ".commit.lock"]
    files.reserve_day(DAY)
    files.discard_day(DAY)
    assert list((tmp_path / "staging").iterdir()) == [tmp_path / "staging" / ".commit.lock"]
