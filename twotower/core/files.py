"""Writing files so that no reader ever sees half of one, and one lock for one writer.

Every write the platform makes that a reader (serving, the next job, a restarted job) may see
goes through here: ``atomic_file`` / ``atomic_write_bytes`` for a file opened by Python,
``atomic_path`` for writers that take a path (pyarrow, pandas, TFRecord writers), and
``staged_dir`` for a directory. Each writes beside the target, fsyncs, renames over it and
fsyncs the directory, so after a crash the target is the old version or the new one.
``file_lock`` is the one inter-process lock (``filelock``, an flock on a lock file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import filelock

Timeout = filelock.Timeout


def fsync_path(path: Path) -> None:
    """Flush a file's data, or make a rename inside a directory durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is fsynced and renamed over
    ``path``, on error removed (``path`` kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # hidden and ending in .tmp: no reader's glob (``*.parquet``, ``*.arrow``) ever matches it;
    # give writers that add a suffix (``np.save``) an open file instead (``atomic_file``)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the published file is not
    try:
        yield Path(tmp)
        fsync_path(Path(tmp))
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for writing, with ``atomic_path``'s guarantee."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        yield fh


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers never see a partial one (write, fsync, rename)."""
    with atomic_file(path) as fh:
        fh.write(data)


def file_lock(path: Path, *, wait: bool = True) -> filelock.BaseFileLock:
    """An exclusive inter-process lock on ``path`` (created if missing): ``with file_lock(p):``.
    With ``wait=False`` entering raises ``Timeout`` at once when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(path, timeout=-1 if wait else 0)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Build a directory next to ``target`` and move it into place only on success.

    Readers see either the old directory or the complete new one, never a half-written one:
    the rename is atomic on one filesystem. A crash leaves only a ``.staging-*`` directory that
    the next run ignores and removes.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".staging-{target.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".staging-{target.name}-", dir=target.parent))
    os.chmod(stage, 0o755)  # mkdtemp makes it private; the published directory is not
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if target.exists():
        trash = target.parent / f".staging-{target.name}-old-{os.getpid()}"
        os.rename(target, trash)
        os.rename(stage, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(stage, target)
    fsync_path(target.parent)
