"""The incremental chain's durable state: a snapshot plus a log of deltas, each written atomically.

What is saved is everything the chain's training changes and nothing else: the ID embedding
tables, the optimizer's slots for them, each user's push stamp, and the stream position all of
that includes. Dense weights are never saved here - they are the generation's, read from its
checkpoint, so "incremental never changes them" holds by construction and is checked in tests.

Layout of ``<workspace>/incremental/<generation>/``::

    snapshot/arrays.npz, snapshot/meta.json    the state after delta number meta.seq
    deltas/<seq:012d>.npz                      rows that changed in one publish + its position

One delta per publish. It holds, for every array, the indices and new values of the rows that
changed since the previous delta, plus the position; it is written to a temporary name,
fsynced and renamed, so the state on disk and the position it includes always agree - the
rename *is* the commit of the training (DESIGN invariant 6). Loading applies the deltas above
the snapshot's seq in order. Every ``compact_every`` deltas a new snapshot is written (staged,
atomic) and the deltas it covers are deleted; a crash in between leaves deltas the loader
skips. Deltas keep each publish's write proportional to what it changed, not to the tables.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twotower.core.files import atomic_file, atomic_write_bytes, staged_dir

FORMAT = "twotower-incremental-state/1"
_DELTA = re.compile(r"^(\d{12})\.npz$")


@dataclass
class ChainState:
    generation: str
    position: str  # stream position the arrays include
    arrays: dict[str, np.ndarray]  # name -> array (rows = first axis); 0-d arrays saved whole
    seq: int = 0  # number of the last delta folded in
    meta: dict = field(default_factory=dict)  # start position, created_at, totals


def changed_rows(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Indices along the first axis where ``new`` differs from ``old`` (bitwise)."""
    if old.shape != new.shape:
        raise ValueError(f"array shape changed from {old.shape} to {new.shape}")
    diff = old != new
    if diff.ndim > 1:
        diff = diff.reshape(len(diff), -1).any(axis=1)
    return np.nonzero(diff)[0]


class StateStore:
    def __init__(self, directory: Path, compact_every: int = 50):
        self.directory = Path(directory)
        self.snapshot_dir = self.directory / "snapshot"
        self.deltas_dir = self.directory / "deltas"
        self.compact_every = compact_every
        self._saved: dict[str, np.ndarray] = {}  # arrays as last written (what deltas diff against)

    def exists(self) -> bool:
        return (self.snapshot_dir / "meta.json").is_file()

    # --- writing --------------------------------------------------------------------------
    def create(self, state: ChainState) -> None:
        """A fresh chain: its first snapshot, no deltas."""
        shutil.rmtree(self.deltas_dir, ignore_errors=True)
        self._write_snapshot(state)

    def _write_snapshot(self, state: ChainState) -> None:
        with staged_dir(self.snapshot_dir) as stage:
            with atomic_file(stage / "arrays.npz") as fh:
                np.savez(fh, **state.arrays)
            meta = {"format": FORMAT, "generation": state.generation, "position": state.position,
                    "seq": state.seq, **state.meta}  # fmt: skip
            atomic_write_bytes(stage / "meta.json", json.dumps(meta, indent=2).encode())
        self._saved = {k: v.copy() for k, v in state.arrays.items()}

    def append(self, state: ChainState) -> int:
        """Persist what changed since the last write, with ``state.position``; returns the seq."""
        seq = state.seq + 1
        payload: dict[str, np.ndarray] = {}
        for name, array in state.arrays.items():
            old = self._saved.get(name)
            if array.ndim == 0 or old is None:
                payload[f"full/{name}"] = array
                continue
            rows = changed_rows(old, array)
            payload[f"rows/{name}"] = rows
            payload[f"values/{name}"] = array[rows]
        meta = {"seq": seq, "position": state.position, **state.meta}
        payload["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        self.deltas_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.deltas_dir / f"{seq:012d}.npz") as fh:
            np.savez(fh, **payload)
        state.seq = seq
        for name, array in state.arrays.items():
            self._saved[name] = array.copy()
        if seq % self.compact_every == 0:
            self.compact(state)
        return seq

    def compact(self, state: ChainState) -> None:
        """Fold everything into a new snapshot and drop the deltas it covers."""
        self._write_snapshot(state)
        for seq, path in self._deltas():
            if seq <= state.seq:
                path.unlink(missing_ok=True)

    # --- reading --------------------------------------------------------------------------
    def _deltas(self) -> list[tuple[int, Path]]:
        if not self.deltas_dir.is_dir():
            return []
        out = []
        for path in self.deltas_dir.iterdir():
            m = _DELTA.match(path.name)
            if m:
                out.append((int(m.group(1)), path))
            elif path.name.startswith(".tmp-"):
                path.unlink(missing_ok=True)  # a delta whose write never finished
        return sorted(out)

    def load(self) -> ChainState:
        meta = json.loads((self.snapshot_dir / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{self.snapshot_dir}: unknown state format {meta.get('format')!r}")
        with np.load(self.snapshot_dir / "arrays.npz") as z:
            arrays = {k: z[k].copy() for k in z.files}
        extra = {k: v for k, v in meta.items() if k not in ("format", "generation", "position", "seq")}
        state = ChainState(meta["generation"], meta["position"], arrays, meta["seq"], extra)
        for seq, path in self._deltas():
            if seq <= state.seq:
                path.unlink(missing_ok=True)  # already folded into the snapshot
                continue
            if seq != state.seq + 1:
                raise ValueError(f"{self.deltas_dir}: delta {seq} follows {state.seq}; the log has a gap")
            with np.load(path) as z:
                delta_meta = json.loads(bytes(z["meta"]).decode())
                for key in z.files:
                    kind, _, name = key.partition("/")
                    if kind == "full":
                        state.arrays[name] = z[key].copy()
                    elif kind == "rows":
                        state.arrays[name][z[key]] = z[f"values/{name}"]
            state.seq = seq
            state.position = delta_meta.pop("position")
            delta_meta.pop("seq")
            state.meta.update(delta_meta)
        self._saved = {k: v.copy() for k, v in state.arrays.items()}
        return state
