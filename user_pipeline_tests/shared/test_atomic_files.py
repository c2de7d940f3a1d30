"""Stale temporary files of partition writes: a dead writer's file is removed, a live writer's is
kept, on this host by its process (pid and start time) and on another host by the file's age."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_pipeline.shared.atomic_files import atomic_write, remove_stale_temp_files, temp_file_owner, temp_files_for
from user_pipeline.shared.owners import Owner, host_id, this_host

HOUR = 3600


def exited_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)


def temp_file(target: Path, owner: str, *, age_seconds: float = 0) -> Path:
    """A writer's temporary file beside `target`, as atomic_write names it, `age_seconds` old."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.parent / f".{target.name}.{owner}.abcd_123.tmp"
    path.write_text("half a partition")
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def write(target: Path) -> None:
    with atomic_write(target, encoding="utf-8") as handle:
        handle.write("whole partition\n")


def test_another_hosts_writer_is_judged_by_age_never_by_a_pid_of_this_host(tmp_path):
    target = tmp_path / "raw_users" / "2026-11-20.jsonl"
    # Its pid means nothing here: on this host it is a process that has exited.
    young = temp_file(target, f"node-b.example.com+{exited_pid()}+1733000000000", age_seconds=60)
    old = temp_file(
        target.with_name("2026-11-21.jsonl"), f"node-b.example.com+{exited_pid()}+1733000000000", age_seconds=2 * HOUR
    )
    write(target)
    write(target.with_name("2026-11-21.jsonl"))
    assert young.exists(), "a live writer on another host keeps its file while it writes"
    assert not old.exists(), "a file nobody has written for longer than the lease is litter"
    assert target.read_text() == "whole partition\n"


def test_this_hosts_writer_is_judged_by_its_process_pid_and_start_time(tmp_path):
    target = tmp_path / "normalized_users" / "2026-11-20.csv"
    me = Owner.current()
    live = temp_file(target, me.token, age_seconds=2 * HOUR)
    dead = temp_file(target, Owner(me.host, exited_pid(), me.started_at).token)
    # A pid that runs, but a process started later than the writer: the pid was reused.
    reused = temp_file(target, Owner(me.host, me.pid, me.started_at - 600).token)
    old_form_live = temp_file(target, str(os.getpid()), age_seconds=2 * HOUR)
    old_form_dead = temp_file(target, str(exited_pid()))
    write(target)
    assert sorted(path for path in [live, dead, reused, old_form_live, old_form_dead] if path.exists()) == sorted(
        [live, old_form_live]
    )


def test_a_write_names_its_temporary_file_after_this_host_pid_and_start_time(tmp_path):
    target = tmp_path / "reports" / "2026-11-20.csv"
    with atomic_write(target, encoding="utf-8") as handle:
        [temp] = temp_files_for(target)
        assert Path(handle.name) == temp
        assert temp_file_owner(target, temp) == Owner(this_host(), os.getpid(), Owner.current().started_at)
        assert Owner.current().started_at == pytest.approx(psutil.Process().create_time(), abs=0.001)
        handle.write("x")
    assert temp_files_for(target) == []
    assert target.read_text() == "x"


def test_a_long_hostname_is_recorded_as_one_that_fits_a_file_name():
    long = "node-" + "a" * 80 + ".example.com"
    assert host_id("node-b.example.com") == "node-b.example.com"
    assert len(host_id(long)) <= 64 and host_id(long) != host_id(long.replace("a", "b", 1))
    assert host_id("odd+host/name") != host_id("odd_host_name")
    owner = Owner(host_id(long), 123, 1733000000.5)
    assert Owner.from_token(owner.token) == owner


names = st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=0, max_size=80)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(middle=names, old=st.booleans())
def test_an_odd_temporary_file_name_never_crashes_the_clean_up_and_is_removed_only_when_old(tmp_path, middle, old):
    """Whatever lies beside a partition (another version's name, a hand-made file, a name of
    another host's form), the clean-up never fails on it; a name that names no owner is removed
    only once it is older than the lease, and a young one that names a process of this host by
    pid and start time is judged by that process."""
    target = tmp_path / f"case-{uuid.uuid4().hex}" / "2026-11-20.jsonl"
    try:
        path = temp_file(target, middle, age_seconds=2 * HOUR if old else 0)
    except OSError:
        return  # a name the file system refuses (too long) cannot lie there
    owner = temp_file_owner(target, path)
    removed = remove_stale_temp_files(target)
    if owner is None or owner.host != this_host():
        assert (path in removed) == old
    else:
        assert (path in removed) != owner.runs_here()
    assert path.exists() == (path not in removed)


@given(token=st.text(max_size=60))
def test_an_owner_token_parses_to_an_owner_or_none_never_an_error(token):
    owner = Owner.from_token(token)
    if owner is not None:
        assert owner.pid > 0 and Owner.from_token(owner.token) == owner
