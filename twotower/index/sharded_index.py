"""Reading an item index of either layout; a sharded one answers as one index.

``ShardedIndex.query`` asks every shard for its own top-k with the same (per-shard)
``search_k`` and merges them by Annoy distance, ties to the lower item ID. A flat index built
from item-ID-sorted vectors breaks ties the same way (Annoy orders equal distances by row), so
with exhaustive search the merged top-k is the flat index's top-k exactly, and at a tuned
``search_k`` each shard searches a smaller tree set for its share of the answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twotower.index.item_index import IDS_FILE, VECTORS_FILE, IndexMeta, ItemIndex, cosine, load_meta
from twotower.index import milvus_index
from twotower.index.shard_build import LAYOUT


def is_sharded(meta: dict) -> bool:
    return meta.get("layout") == LAYOUT


class ShardedIndex:
    """Read-only, every shard memory-mapped; the ``ItemIndex`` API. Safe to share between threads."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        raw = load_meta(self.directory)
        self.meta = IndexMeta(**{k: raw[k] for k in IndexMeta.__dataclass_fields__})
        self.shards = [ItemIndex(self.directory / s["name"]) for s in raw["shards"]]
        dims = {s.meta.dim for s in self.shards}
        if dims != {self.meta.dim}:
            raise ValueError(f"{self.directory}: shard dims {sorted(dims)} != index dim {self.meta.dim}")
        self._ids: np.ndarray | None = None

    @property
    def shard_count(self) -> int:
        return len(self.shards)

    @property
    def item_ids(self) -> np.ndarray:
        """Every item, shard after shard (the row order of ``load_vectors`` before its sort)."""
        if self._ids is None:
            self._ids = np.concatenate([np.asarray(s.item_ids) for s in self.shards])
        return self._ids

    def files(self) -> list[Path]:
        return [f for s in self.shards for f in s.files()]

    def search_k_for(self, k: int) -> int:
        return self.meta.search_k if self.meta.search_k > 0 else -1

    def nearest(self, vector: np.ndarray, k: int, search_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item_ids, angular distances) over all shards, nearest first, ties by ID."""
        parts = [s.nearest(vector, k, search_k) for s in self.shards]
        ids = np.concatenate([p[0] for p in parts])
        dist = np.concatenate([p[1] for p in parts])
        order = np.lexsort((ids, dist))[:k]
        return ids[order], dist[order]

    def query(self, vector: np.ndarray, k: int, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item_ids, cosine scores), best first; ``search_k`` is per shard."""
        ids, dist = self.nearest(vector, k, self.search_k_for(k) if search_k is None else search_k)
        return ids, cosine(dist)

    def unload(self) -> None:
        for s in self.shards:
            s.unload()


def open_index(directory: Path):
    """The index in ``directory``, whichever its layout: ``ItemIndex``, ``ShardedIndex`` or
    ``MilvusIndex`` (one API)."""
    meta = load_meta(directory)
    if meta.get("layout") == milvus_index.LAYOUT:
        return milvus_index.MilvusIndex(directory)
    return ShardedIndex(directory) if is_sharded(meta) else ItemIndex(directory)


def load_vectors(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(item_ids, vectors)`` of every item of the index, sorted by item ID (exact search)."""
    directory = Path(directory)
    meta = load_meta(directory)
    if not is_sharded(meta):
        return np.load(directory / IDS_FILE), np.load(directory / VECTORS_FILE)
    ids = np.concatenate([np.load(directory / s["name"] / IDS_FILE) for s in meta["shards"]])
    vectors = np.concatenate([np.load(directory / s["name"] / VECTORS_FILE) for s in meta["shards"]])
    order = np.argsort(ids, kind="stable")
    return ids[order], vectors[order]


def manifest_summary(meta: dict) -> dict:
    """The manifest's ``index`` section: sizes, search_k and, per shard, items and bytes."""
    out = {k: meta[k] for k in ("n_trees", "search_k", "items", "size_bytes", "build_seconds")}
    out["backend"] = meta.get("backend", "annoy")
    if out["backend"] == "milvus":
        out.update({k: meta[k] for k in ("collection", "index_type", "search_param")})
    shards = meta.get("shards") or [{"items": meta["items"], "size_bytes": meta["size_bytes"]}]
    out.update(
        shards=len(shards), search_k_scope=meta.get("search_k_scope", "index"),
        shard_items=[int(s["items"]) for s in shards], shard_bytes=[int(s["size_bytes"]) for s in shards],
    )  # fmt: skip
    if meta.get("max_shard_bytes"):
        out["max_shard_bytes"] = int(meta["max_shard_bytes"])
    peaks = [s["peak_rss_bytes"] for s in shards if s.get("peak_rss_bytes")]
    if peaks:
        out["max_shard_build_peak_rss_bytes"] = int(max(peaks))
    return out
