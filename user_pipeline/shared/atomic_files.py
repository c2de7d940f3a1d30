"""Partition files that are replaced whole or not at all.

A partition file is written to a hidden temporary file beside it, flushed to disk and renamed
over the old one: a reader sees the previous good file or the new one, never half of either.
A crash leaves at most a hidden `.NAME.PID.*.tmp` file, which readers never match and the
next write of the same partition removes once its writer process is gone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import psutil


def temp_files_for(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


@contextmanager
def atomic_write(path: Path, *, encoding: str | None = None) -> Iterator[IO]:
    """Opens a temporary file for writing; on a clean exit it replaces `path` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for temp_file in temp_files_for(path):
        if not _writer_alive(temp_file):
            temp_file.unlink(missing_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def _writer_alive(temp_file: Path) -> bool:
    """A concurrent writer's temp file is its own business; a dead writer's is litter."""
    try:
        pid = int(temp_file.name.split(".")[-3])
    except (IndexError, ValueError):
        return False
    return psutil.pid_exists(pid)


def fsync_directory(directory: Path) -> None:
    """Makes the renames and removals in `directory` durable (a rename is a change of the folder)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
