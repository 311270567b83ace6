"""Generations: complete-or-absent directories, one atomic pointer, rollback in one step."""

from __future__ import annotations

from datetime import date

import pytest

from twotower.core import generations as gens
from twotower.core.errors import UserError
from twotower.core.files import staged_dir


def _publish(ws, day: date, payload: str) -> gens.Manifest:
    gid = gens.next_id(ws, day)
    parent = gens.current(ws)
    with staged_dir(gens.directory(ws, gid)) as stage:
        (stage / "model.bin").write_text(payload)
        manifest = gens.Manifest(
            id=gid, day=day, parent=parent.id if parent else None,
            embedding_slot=gens.next_slot(ws), paths={"model": "model.bin"},
        )
        gens.write_manifest(stage, manifest)
    gens.flip(ws, gid)
    return manifest


def test_publish_flip_and_rollback(ws):
    assert gens.current(ws) is None
    a = _publish(ws, date(2026, 11, 1), "a")
    b = _publish(ws, date(2026, 11, 2), "b")
    assert gens.current(ws).id == b.id and b.parent == a.id
    assert (a.embedding_slot, b.embedding_slot) == (0, 1), "generations alternate embedding slots"
    assert [m.id for m in gens.listing(ws)] == [a.id, b.id]
    gens.rollback(ws)
    assert gens.current(ws).id == a.id
    with pytest.raises(UserError, match="nothing to roll back"):
        gens.rollback(ws)
    c = _publish(ws, date(2026, 11, 3), "c")
    assert c.parent == a.id and c.embedding_slot == 1, "after a rollback the next one takes the free slot"


def test_checksums_catch_a_damaged_artifact(ws):
    m = _publish(ws, date(2026, 11, 1), "payload")
    gens.verify(ws, gens.current(ws))
    (gens.directory(ws, m.id) / "model.bin").write_text("tampered")
    with pytest.raises(UserError, match="checksum"):
        gens.verify(ws, gens.current(ws))


def test_a_crash_while_staging_leaves_nothing_visible(ws):
    _publish(ws, date(2026, 11, 1), "a")
    gid = gens.next_id(ws, date(2026, 11, 2))
    with pytest.raises(RuntimeError):
        with staged_dir(gens.directory(ws, gid)) as stage:
            (stage / "model.bin").write_text("half")
            raise RuntimeError("killed")
    assert [m.id for m in gens.listing(ws)] == [gens.current(ws).id]
    assert not gens.directory(ws, gid).exists()
    with pytest.raises(UserError):
        gens.flip(ws, gid)
