"""Generations: everything one full update publishes, switched on by one pointer flip.

A generation directory holds the full-model checkpoint (tomorrow's warm start), the dense user
tower, the user ID embedding table, the item index and a manifest (ids, day, parent, paths,
dimensions, vocabulary sizes, metrics, checksums, embedding slot). It is built under a staging
name and renamed into place complete; ``CURRENT`` is then replaced atomically. Readers
(serving, the incremental trainer, the next full update) only ever follow ``CURRENT``, so they
see the old generation or the new one, never a mix (DESIGN invariant 1).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from twotower.core.errors import UserError
from twotower.core.files import atomic_write_bytes
from twotower.core.workspace import Workspace

MANIFEST = "manifest.json"
POINTER = "CURRENT"


class Manifest(BaseModel):
    id: str
    day: date
    parent: str | None
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    embedding_slot: int = Field(ge=0, le=1)
    paths: dict[str, str] = Field(default_factory=dict, description="artifact -> path inside the generation")
    dims: dict[str, int] = Field(default_factory=dict)
    vocab: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    index: dict[str, int | float | str | list[int]] = Field(default_factory=dict, description="index summary; per-shard lists")
    checksums: dict[str, str] = Field(default_factory=dict)


class Pointer(BaseModel):
    current: str
    history: list[str] = Field(default_factory=list, description="published generations, oldest first")


def _pointer_path(ws: Workspace) -> Path:
    return ws.generations_dir / POINTER


def read_pointer(ws: Workspace) -> Pointer | None:
    path = _pointer_path(ws)
    if not path.exists():
        return None
    return Pointer.model_validate_json(path.read_text())


def current(ws: Workspace) -> Manifest | None:
    """The manifest of the served generation, or None before the first publish."""
    ptr = read_pointer(ws)
    return None if ptr is None else load(ws, ptr.current)


def load(ws: Workspace, generation_id: str) -> Manifest:
    path = ws.generations_dir / generation_id / MANIFEST
    if not path.exists():
        raise UserError(f"generation {generation_id!r} does not exist in {ws.generations_dir}")
    return Manifest.model_validate_json(path.read_text())


def listing(ws: Workspace) -> list[Manifest]:
    if not ws.generations_dir.is_dir():
        return []
    found = [
        Manifest.model_validate_json((d / MANIFEST).read_text())
        for d in ws.generations_dir.iterdir()
        if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST).exists()
    ]
    return sorted(found, key=lambda m: m.id)


def next_id(ws: Workspace, day: date) -> str:
    """Sequential, sortable ids: ``g00007-2026-11-03``."""
    seq = 1 + max((int(m.id[1:6]) for m in listing(ws)), default=0)
    return f"g{seq:05d}-{day.isoformat()}"


def directory(ws: Workspace, generation_id: str) -> Path:
    return ws.generations_dir / generation_id


def checksum(path: Path) -> str:
    """sha256 of a file, or of a directory's files in sorted order."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def verify(ws: Workspace, manifest: Manifest) -> None:
    """Raise if any artifact of the generation differs from its recorded checksum."""
    root = directory(ws, manifest.id)
    for name, digest in manifest.checksums.items():
        if checksum(root / manifest.paths[name]) != digest:
            raise UserError(f"generation {manifest.id}: artifact {name!r} does not match its checksum")


def write_manifest(stage: Path, manifest: Manifest) -> None:
    manifest.checksums = {name: checksum(stage / rel) for name, rel in manifest.paths.items()}
    atomic_write_bytes(stage / MANIFEST, manifest.model_dump_json(indent=2).encode())


def flip(ws: Workspace, generation_id: str) -> Pointer:
    """Make ``generation_id`` the served generation: one atomic file replace."""
    load(ws, generation_id)  # must exist and be complete
    ptr = read_pointer(ws)
    history = [] if ptr is None else list(ptr.history)
    if not history or history[-1] != generation_id:
        history.append(generation_id)
    new = Pointer(current=generation_id, history=history)
    atomic_write_bytes(_pointer_path(ws), new.model_dump_json(indent=2).encode())
    return new


def rollback(ws: Workspace) -> Pointer:
    """Serve the previously published generation again (one command, one flip)."""
    ptr = read_pointer(ws)
    if ptr is None or len(ptr.history) < 2:
        raise UserError("nothing to roll back to: fewer than two generations were published")
    history = ptr.history[:-1]
    new = Pointer(current=history[-1], history=history)
    atomic_write_bytes(_pointer_path(ws), new.model_dump_json(indent=2).encode())
    return new


def next_slot(ws: Workspace) -> int:
    """The embedding slot the served generation does not use."""
    cur = current(ws)
    return 0 if cur is None else 1 - cur.embedding_slot


def describe(manifest: Manifest, is_current: bool) -> str:
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(manifest.metrics.items()))
    mark = "*" if is_current else " "
    return f"{mark} {manifest.id}  day={manifest.day}  parent={manifest.parent or '-'}  slot={manifest.embedding_slot}  {metrics}"


def as_json(manifests: list[Manifest], current_id: str | None) -> str:
    return json.dumps(
        [dict(m.model_dump(mode="json"), current=(m.id == current_id)) for m in manifests], indent=2
    )
