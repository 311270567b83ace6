"""All-or-nothing replacement of several offline-store files and day directories.

``staged_dir``/``atomic_write_bytes`` make *one* file or directory atomic. An ingest replaces
several (users.parquet, items.parquet, some ``events/day=*`` directories) and must never leave
a mix of old and new (e.g. events pointing at users that were not written). So it works like a
tiny write-ahead log:

1. every new file is written (and fsynced) under ``offline/.ingest-staging/new/``;
2. ``COMMIT.json`` listing the moves is written atomically: this is the commit point;
3. the moves are applied (renames, milliseconds), then the staging directory is removed.

A crash before step 2 leaves the store exactly as it was (the next ingest deletes the staging
leftovers). A crash during step 3 is rolled forward by ``recover``, which the next ingest runs
first (and any stage may call) — every move is idempotent. Readers see each file and each day
directory either old or new, never partially written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from twotower.core.files import atomic_write_bytes

STAGING = ".ingest-staging"
COMMIT = "COMMIT.json"


class OfflineCommit:
    """Collect new files for ``offline`` (a directory), then make them visible in one commit."""

    def __init__(self, offline: Path):
        self.offline = offline
        self.stage = offline / STAGING
        self.files: list[str] = []  # paths relative to ``offline``
        self.dirs: list[str] = []

    def __enter__(self) -> "OfflineCommit":
        recover(self.offline)
        self.stage.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not (self.stage / COMMIT).exists():
            shutil.rmtree(self.stage, ignore_errors=True)

    def put_file(self, target: Path, data: bytes) -> None:
        rel = str(target.relative_to(self.offline))
        atomic_write_bytes(self.stage / "new" / rel, data)
        self.files.append(rel)

    def put_dir(self, target: Path, files: dict[str, bytes]) -> None:
        """Stage a directory that will replace ``target`` entirely (old contents go)."""
        rel = str(target.relative_to(self.offline))
        (self.stage / "new" / rel).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            atomic_write_bytes(self.stage / "new" / rel / name, data)
        self.dirs.append(rel)

    def prepare(self) -> None:
        """Step 2: after this returns, the commit will complete even across a crash."""
        atomic_write_bytes(
            self.stage / COMMIT, json.dumps({"files": self.files, "dirs": self.dirs}).encode()
        )

    def commit(self) -> None:
        self.prepare()
        recover(self.offline)


def recover(offline: Path) -> bool:
    """Finish a committed ingest or discard an uncommitted one. True if one was rolled forward."""
    stage = offline / STAGING
    manifest = stage / COMMIT
    if not manifest.is_file():
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        return False
    moves = json.loads(manifest.read_text())
    for rel in moves["files"]:
        src = stage / "new" / rel
        if src.exists():
            os.replace(src, offline / rel)
    for rel in moves["dirs"]:
        src, dst = stage / "new" / rel, offline / rel
        if not src.exists():
            continue  # moved before a crash
        if dst.exists():
            old = stage / "old" / rel
            old.parent.mkdir(parents=True, exist_ok=True)
            os.rename(dst, old)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
    manifest.unlink()
    shutil.rmtree(stage, ignore_errors=True)
    return True
