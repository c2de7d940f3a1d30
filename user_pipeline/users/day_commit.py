"""A day is all-or-nothing across its files: new versions are staged per run and committed together.

Plain Python, no Dagster. A run writes a day's new files (raw users, normalized CSV, rejects) under
`<data dir>/staging/<run key>/<asset>/<day>.<ext>`; the committed files stay as the previous good run left them
until the day passes every step of the run, then `commit` renames the staged files over them. A
refused day is `discard`ed; a killed run leaves only its staging folder, which nothing reads as
data. The run key is the root run's id, so a re-execution of a run (from failure, or the
instance's relaunch of a crashed run) finds what the original run staged.

Commit protocol: a marker `.commits/<day>.json` naming every staged file and its target is written
(atomically) before the first rename and removed after the last, so a commit cut short by a crash is finished
by the next run (`finish_interrupted_commits`), and a later commit of the same day finishes it first, so that
a day's commits land in the order they were made. Renames are atomic per file; one lock file
(`.commit.lock`) serializes the commits of concurrent runs.

Whose staging is it: `OWNER` names the run's process (host, pid, start time: shared.owners). A
process of this host is judged by psutil (the pid runs and started then); a run on another host
sharing the data directory is never judged by pid: its commit marker is taken for abandoned once
COMMIT_LEASE_SECONDS old (a commit is a few renames), and its staging for stale once nothing in it
changed for STALE_AFTER_SECONDS. An OWNER holding a bare pid (the old form) is this host's.

The warehouse table is loaded in its own transaction before the files are committed: a crash in
the instant between that transaction's commit and the writing of the marker leaves the table one
version ahead of the files (the next run of the day realigns them).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from user_pipeline.shared.atomic_files import atomic_write, fsync_directory
from user_pipeline.shared.owners import Owner, presumed_alive, this_host

COMMITS = ".commits"  # <run folder>/.commits/<day>.json: a commit under way
COMMIT_LOCK = ".commit.lock"
OWNER_FILE = "OWNER"
ABSENT_SUFFIX = ".absent"
RESERVED = "reserved.day"  # <folder>/reserved/<day>.day: a day being staged, none of its files written yet
TEMPORARY_SUFFIX = ".tmp"  # shared.atomic_files' temporary files: .<name>.<owner token>.<random>.tmp
# A dead run's staging is kept this long so that a re-execution from failure can still finish it;
# another host's run is presumed alive until nothing in its staging changed for as long.
STALE_AFTER_SECONDS = 24 * 3600
# Another host's commit marker this old belongs to a commit cut short: a commit renames a few files
# under the commit lock, in well under a second.
COMMIT_LEASE_SECONDS = 600


@dataclass(frozen=True)
class RunStaging:
    """The staging folder of one run (its root run's id) under `staging_root`.

    A staged file is `<folder>/<asset>/<day><suffix>` for a name `<asset><suffix>` (e.g.
    raw_users.jsonl -> raw_users/2026-11-20.jsonl), so that each asset's staged folder holds files
    named like its committed ones (Spark reads a folder of YYYY-MM-DD.csv files)."""

    staging_root: Path
    run_key: str

    @property
    def folder(self) -> Path:
        return self.staging_root / self.run_key

    def asset_folder(self, name: str) -> Path:
        return self.folder / _split(name)[0]

    def path(self, day: str, name: str) -> Path:
        """Where this run stages `name` (e.g. raw_users.jsonl) for `day`; its folder is created."""
        asset, suffix = _split(name)
        folder = self.folder / asset
        folder.mkdir(parents=True, exist_ok=True)
        self._claim()
        return folder / f"{day}{suffix}"

    def _claim(self) -> None:
        """Names this process in OWNER: the run's first stage, or its re-execution's (a new process
        taking the run's folder over)."""
        owner, record = Owner.current(), self.folder / OWNER_FILE
        try:
            if Owner.from_json(record.read_text(encoding="utf-8")) == owner:
                return
        except OSError:
            pass
        record.write_text(owner.to_json(), encoding="utf-8")

    def staged(self, day: str, name: str) -> Path | None:
        """The staged file, if this run staged one for the day."""
        asset, suffix = _split(name)
        path = self.folder / asset / f"{day}{suffix}"
        return path if path.exists() else None

    def reserve(self, day: str) -> Path:
        """A file that keeps this run's folder while the day is being staged (by a worker process,
        while this run commits other days), before any of its files exists; whoever stages the day
        removes it once they do (users/days_ahead.py), and `discard` removes it with the day."""
        reservation = self.path(day, RESERVED)
        reservation.touch()
        return reservation

    def stage_absence(self, day: str, name: str) -> None:
        """Stages the removal of `name`: committing the day deletes its committed file."""
        staged = self.path(day, name)
        staged.unlink(missing_ok=True)
        staged.with_name(staged.name + ABSENT_SUFFIX).touch()

    def staged_days(self) -> list[str]:
        """The days with files in this run's staging, those still being written included (a
        temporary `.<day>.<ext>.<token>.tmp` of shared.atomic_files: with days staged ahead, a worker
        process writes a later day while this run commits one, and the folder must stay)."""
        try:
            return sorted(
                {
                    p.name[1:11] if p.name.startswith(".") else p.name[:10]
                    for p in self.folder.glob("*/*")
                    if p.is_file() and (not p.name.startswith(".") or p.name.endswith(TEMPORARY_SUFFIX))
                }
            )
        except FileNotFoundError:  # the folder went away while it was listed (its run removed it)
            return []

    def commit(self, day: str, targets: Mapping[str, Path]) -> list[Path]:
        """Renames every staged file of `day` over its target (`targets`: staged name -> committed
        path); a staged absence removes the target. Returns the committed paths; nothing staged,
        nothing done."""
        plan = {
            str(self._staged_path(day, name)): str(target)
            for name, target in targets.items()
            if self._staged_path(day, name).exists() or self._absent_path(day, name).exists()
        }
        if not plan:
            return []
        with _commit_lock(self.staging_root):
            # A commit of the day cut short in another run's folder lands first, never after this one.
            for earlier in sorted(self.staging_root.glob(f"*/{COMMITS}/{day}.json")):
                if earlier.parent.parent != self.folder:
                    _apply_marker(earlier)
            marker = self.folder / COMMITS / f"{day}.json"
            with atomic_write(marker, encoding="utf-8") as handle:
                json.dump(plan, handle)
            committed = _apply(marker, plan)
        self._remove_if_empty()
        return committed

    def discard(self, day: str) -> None:
        """Forgets what this run staged for `day`, a file left half-written (its writer stopped)
        included: the committed files stay as they are. Call it once nothing writes the day."""
        for path in [*self.folder.glob(f"*/{day}.*"), *self.folder.glob(f"*/.{day}.*{TEMPORARY_SUFFIX}")]:
            path.unlink(missing_ok=True)
        self._remove_if_empty()

    def _staged_path(self, day: str, name: str) -> Path:
        asset, suffix = _split(name)
        return self.folder / asset / f"{day}{suffix}"

    def _absent_path(self, day: str, name: str) -> Path:
        staged = self._staged_path(day, name)
        return staged.with_name(staged.name + ABSENT_SUFFIX)

    def _remove_if_empty(self) -> None:
        if self.folder.exists() and not self.staged_days() and not any(self.folder.glob(f"{COMMITS}/*.json")):
            shutil.rmtree(self.folder, ignore_errors=True)


def _split(name: str) -> tuple[str, str]:
    asset, dot, extension = name.partition(".")
    return asset, dot + extension


def _apply_marker(marker: Path) -> list[Path]:
    """Finishes the commit `marker` names, if it is still there (call under the commit lock)."""
    try:
        plan = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []  # finished meanwhile
    return _apply(marker, plan)


def _apply(marker: Path, plan: Mapping[str, str]) -> list[Path]:
    committed = []
    for staged_name, target_name in plan.items():
        staged, target = Path(staged_name), Path(target_name)
        absent = staged.with_name(staged.name + ABSENT_SUFFIX)
        target.parent.mkdir(parents=True, exist_ok=True)
        if staged.exists():
            os.replace(staged, target)
            fsync_directory(target.parent)
            committed.append(target)
        elif absent.exists():
            target.unlink(missing_ok=True)
            absent.unlink(missing_ok=True)
            committed.append(target)
        # Neither: renamed already by the commit being finished.
    marker.unlink(missing_ok=True)
    return committed


def finish_interrupted_commits(staging_root: Path, *, now: float | None = None) -> list[Path]:
    """Completes every commit that a crash cut short (a commit marker still in place, its run's
    process gone; on another host: the marker COMMIT_LEASE_SECONDS old). A live run's markers are its
    own business: it writes and applies each one under the commit lock, and may be staging its next
    day in the same folder."""
    now = time.time() if now is None else now
    finished: list[Path] = []
    for folder in sorted(p for p in staging_root.glob("*") if p.is_dir()):
        markers = sorted(folder.glob(f"{COMMITS}/*.json"))
        if not markers:
            continue
        owner = _owner(folder)
        if owner is not None and owner.host == this_host():
            abandoned = [] if owner.runs_here() else markers
        else:
            abandoned = [marker for marker in markers if _age(marker, now) >= COMMIT_LEASE_SECONDS]
        for marker in abandoned:
            with _commit_lock(staging_root):
                finished.extend(_apply_marker(marker))
        if abandoned and not _owner_alive(folder, now=now):
            RunStaging(staging_root, folder.name)._remove_if_empty()
    return finished


def remove_stale_staging(staging_root: Path, *, keep: str, now: float | None = None) -> list[Path]:
    """Removes the staging of runs whose process is gone (on another host: nothing in it changed)
    for longer than STALE_AFTER_SECONDS (never `keep`, the current run's). Staged files are never
    committed data, so this loses nothing."""
    now = time.time() if now is None else now
    removed = []
    for folder in sorted(p for p in staging_root.glob("*") if p.is_dir() and p.name != keep):
        if any(folder.glob(f"{COMMITS}/*.json")) or _owner_alive(folder, now=now):
            continue
        modified = _last_change(folder)
        if modified is None:
            continue  # its run finished and removed it while we looked
        if now - modified > STALE_AFTER_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _owner(folder: Path) -> Owner | None:
    try:
        return Owner.from_json((folder / OWNER_FILE).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def _owner_alive(folder: Path, *, now: float) -> bool:
    """This host's run: its process runs. Another host's (or an unreadable OWNER): something in its
    staging changed within STALE_AFTER_SECONDS."""
    last_change = _last_change(folder)
    if last_change is None:
        return False
    return presumed_alive(_owner(folder), last_change=last_change, lease_seconds=STALE_AFTER_SECONDS, now=now)


def _last_change(folder: Path) -> float | None:
    """When anything in the run's staging folder last changed (its files are written as the run
    stages them); None when the folder is gone."""
    try:
        latest = folder.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        entries = list(folder.rglob("*"))
    except FileNotFoundError:  # removed while it was listed
        return None
    for entry in entries:
        try:
            latest = max(latest, entry.stat().st_mtime)
        except FileNotFoundError:
            continue
    return latest


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0  # gone: nothing to finish


@contextmanager
def _commit_lock(staging_root: Path) -> Iterator[None]:
    # One lock for every day: a commit is a few renames, and one file leaves no litter per day.
    staging_root.mkdir(parents=True, exist_ok=True)
    with open(staging_root / COMMIT_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
