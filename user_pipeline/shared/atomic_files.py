"""Partition files that are replaced whole or not at all.

A partition file is written to a hidden temporary file beside it, flushed to disk and renamed
over the old one: a reader sees the previous good file or the new one, never half of either.
A crash leaves at most a hidden `.NAME.OWNER.*.tmp` file (OWNER: the writer's host, pid and
start time, owners.Owner.token), which readers never match and the next write of the same
partition removes once its writer is gone: on this host, once no process with that pid and start
time runs; on another host (the data directory being a shared mount), once nothing has been
written to it for TEMP_FILE_LEASE_SECONDS. Files named the old way, `.NAME.PID.*.tmp`, are this
host's pid's, as they were.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from user_pipeline.shared.owners import Owner, presumed_alive

# How long another host's temporary file is presumed to be its writer's while nothing is written
# to it. A writer writes while its file is open: the longest quiet spell is one users API page
# with its retries (at the default settings, 5 attempts of at most 30 s, at most 60 s apart: under
# 8 minutes); an hour leaves a wide margin for slow pages and clocks a little apart. A writer quiet
# for longer loses its temporary file, and its rename then fails the step (nothing is lost).
TEMP_FILE_LEASE_SECONDS = 3600


def temp_files_for(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


@contextmanager
def atomic_write(path: Path, *, encoding: str | None = None) -> Iterator[IO]:
    """Opens a temporary file for writing; on a clean exit it replaces `path` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.{Owner.current().token}.", suffix=".tmp", dir=path.parent)
    temp_path = Path(temp_name)
    try:
        os.close(fd)
        mode = "w" if encoding else "wb"
        # Opened by path, so that handle.name is the temporary file's path.
        with open(temp_path, mode, encoding=encoding, newline="" if encoding else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_path, 0o644)
        os.replace(temp_path, path)
        fsync_directory(path.parent)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(path: Path, *, now: float | None = None) -> list[Path]:
    """Removes the temporary files beside `path` whose writer is gone (a concurrent writer's are
    its own business); returns them."""
    now = time.time() if now is None else now
    removed = []
    for temp_file in temp_files_for(path):
        try:
            modified = temp_file.stat().st_mtime
        except FileNotFoundError:
            continue  # its writer renamed or removed it while we looked
        owner = temp_file_owner(path, temp_file)
        if not presumed_alive(owner, last_change=modified, lease_seconds=TEMP_FILE_LEASE_SECONDS, now=now):
            temp_file.unlink(missing_ok=True)
            removed.append(temp_file)
    return removed


def temp_file_owner(path: Path, temp_file: Path) -> Owner | None:
    """The writer of `temp_file`, a temporary file of `path` (`.NAME.OWNER.RANDOM.tmp`, RANDOM
    holding no dot), or None when its name says none."""
    middle = temp_file.name.removeprefix(f".{path.name}.").removesuffix(".tmp")
    token, dot, _random = middle.rpartition(".")
    return Owner.from_token(token) if dot else None


def fsync_directory(directory: Path) -> None:
    """Makes the renames and removals in `directory` durable (a rename is a change of the folder)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
