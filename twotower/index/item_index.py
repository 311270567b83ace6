"""The item vector index: Annoy files, memory-mapped, with the row -> item_id map beside them.

Why Annoy's *angular* metric: both towers emit L2-normalised vectors, so angular distance is a
monotone function of the cosine the model was trained on (cos = 1 - d^2 / 2) and the score we
return is exactly the model's cosine. ``search_k`` (how many nodes a query inspects) is the
recall/speed knob; its default (n_trees * k) gives poor recall at small k, so the full update
measures recall against exact search and records the value it chose in the manifest.

This module is one flat index; a catalogue split into shards (``index.shards``) is a directory
of such indexes, built by ``shard_build`` and read as one by ``sharded_index``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path


import numpy as np
from annoy import AnnoyIndex

from twotower.core.encode import id_array
from twotower.core.progress import progress

logger = logging.getLogger(__name__)

INDEX_FILE, IDS_FILE, META_FILE = "items.ann", "item_ids.npy", "index.json"
VECTORS_FILE = "vectors.npy"  # the item vectors beside the index: exact search and re-tuning
EXACT_CHUNK = 64  # queries scored at once by exact search (bounds the score matrix)


@dataclass
class IndexMeta:
    dim: int
    items: int
    n_trees: int
    search_k: int
    build_seconds: float
    size_bytes: int


def build(
    item_ids: np.ndarray,
    vectors: np.ndarray,
    out_dir: Path,
    n_trees: int,
    search_k: int = -1,
    seed: int = 0,
    n_jobs: int = -1,
) -> IndexMeta:
    """Write an Annoy index of ``vectors`` (rows = items) into ``out_dir``.

    Items are added once, before ``build()`` (adding after a build can crash ``save``).
    ``n_jobs``: threads building trees (-1 = all cores; a shard task uses its worker's threads).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if len(item_ids) != n:
        raise ValueError(f"{len(item_ids)} item ids for {n} vectors")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    index = AnnoyIndex(dim, "angular")
    index.set_seed(seed)
    step = 4096  # rows added between two updates of the progress bar
    with progress("index: adding items", n, unit="items") as bar:
        for start in range(0, n, step):
            for row in range(start, min(start + step, n)):
                index.add_item(row, vectors[row])
            bar.update(min(start + step, n) - start)
    logger.info(f"index: building {n_trees} trees over {n:,} x {dim}")
    index.build(n_trees, n_jobs=n_jobs)
    index.save(str(out_dir / INDEX_FILE))
    index.unload()
    np.save(out_dir / IDS_FILE, id_array(item_ids))  # int64, or unicode for string IDs
    meta = IndexMeta(
        dim=dim,
        items=n,
        n_trees=n_trees,
        search_k=search_k,
        build_seconds=time.perf_counter() - started,
        size_bytes=(out_dir / INDEX_FILE).stat().st_size,
    )
    (out_dir / META_FILE).write_text(json.dumps(asdict(meta), indent=2))
    logger.info(f"index: built in {meta.build_seconds:.1f}s, {meta.size_bytes / 2**20:.1f} MiB")
    return meta


def load_meta(directory: Path) -> dict:
    return json.loads((Path(directory) / META_FILE).read_text())


def set_search_k(directory: Path, search_k: int, trials: list[dict]) -> None:
    """Record the measured ``search_k`` (and the measurements that chose it) with the index.

    A sharded index (``shards`` in its meta) gets it in every shard's meta too: it is per shard.
    """
    directory = Path(directory)
    meta = load_meta(directory)
    meta.update(search_k=search_k, tuned_recall=trials[-1]["recall"], tuning=trials)
    for shard in meta.get("shards", []):
        sub = load_meta(directory / shard["name"])
        sub["search_k"] = search_k
        (directory / shard["name"] / META_FILE).write_text(json.dumps(sub, indent=2))
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))


class ItemIndex:
    """A read-only, memory-mapped index. Safe to share between threads."""

    shard_count = 1

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        raw = load_meta(self.directory)
        self.meta = IndexMeta(**{k: raw[k] for k in IndexMeta.__dataclass_fields__})
        self._index = AnnoyIndex(self.meta.dim, "angular")
        self._index.load(str(self.directory / INDEX_FILE), prefault=False)  # mmap, no copy
        self.item_ids = np.load(self.directory / IDS_FILE, mmap_mode="r")

    def search_k_for(self, k: int) -> int:
        return self.meta.search_k if self.meta.search_k > 0 else -1

    def files(self) -> list[Path]:
        return [self.directory / INDEX_FILE]

    def nearest(self, vector: np.ndarray, k: int, search_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item_ids, Annoy angular distances), nearest first (ties: lower row first)."""
        rows, dist = self._index.get_nns_by_vector(vector, k, search_k=search_k, include_distances=True)
        return np.asarray(self.item_ids[rows]), np.asarray(dist, dtype=np.float32)

    def query(self, vector: np.ndarray, k: int, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item_ids, cosine scores), best first."""
        ids, dist = self.nearest(vector, k, self.search_k_for(k) if search_k is None else search_k)
        return ids, cosine(dist)

    def unload(self) -> None:
        self._index.unload()


def cosine(dist: np.ndarray) -> np.ndarray:
    """Annoy's angular distance between unit vectors -> their cosine (d^2 = 2 - 2 cos)."""
    return 1.0 - dist * dist / 2.0


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows of the exact top-``k`` by inner product (brute force, numpy), best first.

    Queries are scored ``EXACT_CHUNK`` at a time so a large catalogue needs no
    queries x items matrix.
    """
    queries = np.atleast_2d(queries)
    out = []
    for start in range(0, len(queries), EXACT_CHUNK):
        scores = queries[start : start + EXACT_CHUNK] @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(out) if out else np.empty((0, k), dtype=np.int64)


def recall_against_exact(
    index, vectors: np.ndarray, queries: np.ndarray, k: int, search_k: int | None, item_ids: np.ndarray | None = None
) -> tuple[float, float]:
    """(recall@k of the index vs exact search, mean seconds per query).

    ``item_ids``: the item of each row of ``vectors`` (default: the index's own row order, which
    is what a flat index built from ``vectors`` has; a sharded index needs them given).
    """
    ids = np.asarray(index.item_ids if item_ids is None else item_ids)
    truth = ids[exact_topk(vectors, queries, k)]
    started = time.perf_counter()
    results = [index.query(q, k, search_k)[0] for q in queries]
    per_query = (time.perf_counter() - started) / len(queries)
    hits = sum(len(set(got.tolist()) & set(want.tolist())) for got, want in zip(results, truth))
    return hits / truth.size, per_query


def choose_search_k(
    index,
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    target_recall: float,
    factors: tuple[float, ...] = (0.25, 0.5, 1, 2, 5, 10, 20, 50, 100),
    item_ids: np.ndarray | None = None,
    refine_to: float = 0.1,
    tie_tolerance: float = 1e-4,
) -> tuple[int, list[dict]]:
    """The smallest measured ``search_k`` reaching ``target_recall``; the trials, chosen one last.

    First a coarse grid ``n_trees * k * factor`` (factors below 1 too: with many trees a
    query needs fewer nodes than Annoy's default ``n_trees * k``), then a bisection between the last value that
    missed and the first that reached the target, until the bracket is within ``refine_to`` of
    it: the grid alone can overshoot by up to 2.5x (5,000 -> 10,000 at 50 trees, k=100), and
    query time grows with search_k. The exact top-k is computed once for every probe.

    Recall counts a returned item as a hit when its cosine is within ``tie_tolerance`` of the
    exact k-th best (as ann-benchmarks counts, with a distance epsilon): a trained catalogue has
    blocks of items with the same vector - items outside the ID vocabulary share hashed OOV rows,
    so two never-clicked items of one category and author score identically - and which members
    of a tied block "the" exact top-k holds is arbitrary; demanding those very IDs drove
    search_k towards brute force (500,000 on 1.1M items). The tolerance only absorbs ties and
    float32 rounding. The ID overlap with the exact top-k is recorded beside it (``id_recall``).

    On an index of S shards ``search_k`` is per shard and the candidates are divided by S (but
    never below k, the most one shard may have to return): every candidate then inspects about
    as many nodes in total as the flat index at the same factor.
    """
    shards = getattr(index, "shard_count", 1)
    ids = np.asarray(index.item_ids if item_ids is None else item_ids)
    rows = exact_topk(vectors, queries, k)
    truth = [set(row.tolist()) for row in ids[rows]]
    kth = np.einsum("ij,ij->i", vectors[rows[:, -1]], queries) - tie_tolerance
    trials: dict[int, dict] = {}

    def probe(sk: int) -> float:
        if sk not in trials:
            started = time.perf_counter()
            found = [index.query(q, k, sk) for q in queries]
            secs = (time.perf_counter() - started) / len(queries)
            recall = sum(int((sc >= b).sum()) for (_, sc), b in zip(found, kth)) / (len(queries) * k)
            id_recall = sum(len(set(f.tolist()) & t) for (f, _), t in zip(found, truth)) / (len(truth) * k)
            trials[sk] = {"search_k": sk, "search_k_total": sk * shards, "recall": recall, "id_recall": id_recall,
                          "seconds_per_query": secs}  # fmt: skip
        return trials[sk]["recall"]

    if hasattr(index, "search_grid"):  # another engine's knob (Milvus: ef or nprobe)
        grid = index.search_grid(k)
    else:
        grid = sorted({max(k, math.ceil(index.meta.n_trees * k * f / shards)) for f in factors})
    lo, hi = None, None
    for sk in grid:
        if probe(sk) >= target_recall:
            hi = sk
            break
        lo = sk
    if hi is None:  # never reached: the largest tried, recorded last
        best = grid[-1]
    else:
        while lo is not None and hi - lo > max(1, refine_to * hi):
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if probe(mid) >= target_recall else (mid, hi)
        best = hi
    ordered = [t for sk, t in sorted(trials.items()) if sk != best] + [trials[best]]
    return best, ordered
