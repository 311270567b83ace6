"""Where everything the platform writes lives.

One workspace = one world: offline store, Feast registry and SQLite online store, TFRecords,
models, Annoy indexes, generations, GX results and the event log. Several workspaces can live
side by side (tests create their own in a temporary directory).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO, Iterator


@dataclass(frozen=True)
class Workspace:
    root: Path

    # --- offline store -------------------------------------------------------------------
    @property
    def offline(self) -> Path:
        return self.root / "offline"

    @property
    def users_path(self) -> Path:
        return self.offline / "users.parquet"

    @property
    def items_path(self) -> Path:
        return self.offline / "items.parquet"

    @property
    def events_dir(self) -> Path:
        return self.offline / "events"

    def events_day_dir(self, day: date) -> Path:
        return self.events_dir / f"day={day.isoformat()}"

    @property
    def user_embeddings_dir(self) -> Path:
        """Batch source of the Feast ``user_id_embedding`` view (one parquet per generation)."""
        return self.offline / "user_id_embedding"

    @property
    def truth_dir(self) -> Path:
        """The simulator's ground truth (latent preferences), for oracle recall."""
        return self.root / "truth"

    # --- feature store --------------------------------------------------------------------
    @property
    def feast_dir(self) -> Path:
        return self.root / "feast"

    @property
    def feature_store_yaml(self) -> Path:
        return self.feast_dir / "feature_store.yaml"

    # --- batch outputs --------------------------------------------------------------------
    def tfrecords_dir(self, day: date) -> Path:
        return self.root / "tfrecords" / day.isoformat()

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def generations_dir(self) -> Path:
        return self.root / "generations"

    @property
    def gx_dir(self) -> Path:
        return self.root / "gx"

    @property
    def stream_dir(self) -> Path:
        return self.root / "stream"

    @property
    def incremental_dir(self) -> Path:
        """State of the intraday incremental chain, one folder per generation (never a full
        update's starting point; discarded when the next generation is published)."""
        return self.root / "incremental"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def days(self) -> list[date]:
        """Days present in the offline event store, in order."""
        if not self.events_dir.is_dir():
            return []
        return sorted(
            date.fromisoformat(p.name.split("=", 1)[1])
            for p in self.events_dir.iterdir()
            if p.is_dir() and p.name.startswith("day=")
        )

    def ensure(self) -> "Workspace":
        for d in (self.offline, self.feast_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self


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


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` so that readers never see a partial file: a temporary file in the same
    directory, fsynced, then renamed over ``path``; on error it is removed and ``path`` kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers never see a partial one (write, fsync, rename)."""
    with atomic_file(path) as fh:
        fh.write(data)
