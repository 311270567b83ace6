"""One published generation, loaded for serving: user tower, item index, popular items.

Everything a request needs from a generation hangs off one ``LoadedGeneration`` object, and a
request takes that object once at its start (``Retriever.lease``), so its tower, its index and
the embedding slot it reads all belong to the same generation (DESIGN invariant 1).

Lifetime: after a swap the old object is *retired*; it is closed (Annoy's mmap released) only
when the last request that leased it has finished. Unloading an Annoy index under a running
query would crash the process, hence the lease count rather than "close right after the swap".
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.core import generations as gens
from twotower.core.errors import UserError
from twotower.core.encode import id_array
from twotower.core.workspace import Workspace

# Artifacts the request path reads; only these are checksummed before a load.
SERVED_ARTIFACTS = ("user_tower", "index", "popular_items")


@dataclass(eq=False)
class LoadedGeneration:
    manifest: gens.Manifest
    tower: object  # tfrs_models.numpy_tower.NumpyUserTower
    index: object  # twotower.index.item_index.ItemIndex, or sharded_index.ShardedIndex (same API)
    popular_ids: np.ndarray  # item IDs as given (int64 or str), most clicked first
    popular_scores: np.ndarray  # float32, share of the day's clicks
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    _leases: int = 0
    _retired: bool = False
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def slot(self) -> int:
        return self.manifest.embedding_slot

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def leases(self) -> int:
        return self._leases

    # --- lease counting (called by Retriever under its own lock for acquire) ----------------
    def acquire(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"generation {self.id} is already released")
            self._leases += 1

    def release(self) -> None:
        with self._lock:
            self._leases -= 1
            close = self._retired and self._leases == 0 and not self._closed
            if close:
                self._closed = True
        if close:
            self.index.unload()

    def retire(self) -> None:
        """No new requests will lease this generation; close it once in-flight ones finish."""
        with self._lock:
            self._retired = True
            close = self._leases == 0 and not self._closed
            if close:
                self._closed = True
        if close:
            self.index.unload()

    def describe(self) -> dict:
        m = self.manifest
        return {
            "id": m.id, "day": m.day.isoformat(), "parent": m.parent, "embedding_slot": m.embedding_slot,
            "created_at": m.created_at.isoformat(), "index": dict(m.index),
            "metrics": {k: (v if math.isfinite(v) else None) for k, v in m.metrics.items()},  # JSON has no NaN
            "loaded_at": self.loaded_at, "load_seconds": round(self.load_seconds, 3),
            "popular_items": int(len(self.popular_ids)),
        }  # fmt: skip


def _warm(path: Path, block: int = 8 << 20) -> None:
    """Read a file once so its pages are in the page cache before the first query maps them."""
    with open(path, "rb", buffering=0) as fh:
        while fh.read(block):
            pass


def load(ws: Workspace, manifest: gens.Manifest, verify: bool = True, warm: bool = True) -> LoadedGeneration:
    """Load a published generation; raises UserError naming the artifact that is wrong."""
    from twotower.index.sharded_index import open_index
    from tfrs_models.numpy_tower import NumpyUserTower  # the numpy fast path: no TF in the server

    started = time.perf_counter()
    root = gens.directory(ws, manifest.id)
    for name in SERVED_ARTIFACTS:
        if name not in manifest.paths:
            raise UserError(f"generation {manifest.id}: manifest.json has no path for {name!r}")
        path = root / manifest.paths[name]
        if not path.exists():
            raise UserError(f"generation {manifest.id}: {path} is missing")
        if verify and name in manifest.checksums and gens.checksum(path) != manifest.checksums[name]:
            raise UserError(f"generation {manifest.id}: artifact {name!r} does not match its checksum")
    tower = NumpyUserTower.load(root / manifest.paths["user_tower"])
    index = open_index(root / manifest.paths["index"])  # flat or sharded (index.shards)
    if warm:
        for path in index.files():
            _warm(path)
    if index.meta.dim != tower.output_dim:
        raise UserError(f"generation {manifest.id}: index dim {index.meta.dim} != user tower output {tower.output_dim}")
    popular = pd.read_parquet(root / manifest.paths["popular_items"], columns=["item_id", "clicks"])
    clicks = popular["clicks"].to_numpy(np.float64)
    order = np.lexsort((popular["item_id"].to_numpy(), -clicks))
    total = max(clicks.sum(), 1.0)
    return LoadedGeneration(
        manifest=manifest, tower=tower, index=index,
        popular_ids=id_array(popular["item_id"].to_numpy())[order],
        popular_scores=(clicks[order] / total).astype(np.float32),
        load_seconds=time.perf_counter() - started,
    )  # fmt: skip


def served_user_id_type(ws: Workspace) -> str:
    """``"int"`` or ``"string"``: how the served generation's user entity types its IDs ("int"
    before the first generation). The HTTP routes are typed by it."""
    import json

    from tfrs_models.numpy_tower import NUMPY_WEIGHTS
    from twotower.core.features import FeatureSpec

    manifest = gens.current(ws)
    if manifest is None:
        return "int"
    with np.load(gens.directory(ws, manifest.id) / manifest.paths["user_tower"] / NUMPY_WEIGHTS) as z:
        return FeatureSpec.from_dict(json.loads(str(z["spec"]))).user.id_type


def load_current(ws: Workspace, verify: bool = True, warm: bool = True) -> LoadedGeneration:
    manifest = gens.current(ws)
    if manifest is None:
        raise UserError(f"no generation published in {ws.generations_dir}: run `twotower full-update DAY` first")
    return load(ws, manifest, verify=verify, warm=warm)
