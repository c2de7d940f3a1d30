"""The day commit: staged files replace the committed ones together or not at all, a refused day
keeps them, and a commit cut short by a crash is finished by the next run."""

import json
import os
import subprocess
import sys
import time

from user_pipeline.users.day_commit import (
    COMMITS,
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

    def owner_gone_and_folder_removed(folder):
        finishing.discard(DAY)  # the run removes its own folder as it ends
        return False

    monkeypatch.setattr(day_commit, "_owner_alive", owner_gone_and_folder_removed)
    later = time.time() + STALE_AFTER_SECONDS + 60
    assert remove_stale_staging(root, keep="current", now=later) == []
