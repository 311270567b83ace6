"""Building the item index: one flat Annoy file, or several shards built as parallel Dask tasks.

Why shards: an Annoy index is built in memory (every node of every tree) before it is saved,
so one index over a catalogue too large for one machine cannot be built at all. Split by
``shard_plan``, each shard is an ordinary flat index (``items.ann`` + ``item_ids.npy`` +
``index.json`` + its ``vectors.npy``) in ``shard-NNN/``, built by its own Dask task in a
worker process from only its own vectors, which the driver stages to disk first: the driver
never holds an Annoy structure, and no worker holds more than one shard's. The set's
``index.json`` (``layout: sharded``) lists the shards with their built sizes and the builder's
peak RSS. Workers must see the directory (one machine, or a shared filesystem).

One shard keeps the flat layout of earlier generations, built in-process as before.
"""

from __future__ import annotations

import logging
import json
import resource
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from twotower.index import item_index, milvus_index
from twotower.core.encode import id_array
from twotower.index.item_index import IDS_FILE, META_FILE, VECTORS_FILE
from twotower.index.shard_plan import ShardPlan, plan_shards
from twotower.core.config import IndexSettings
from twotower.core.errors import UserError

logger = logging.getLogger(__name__)

LAYOUT = "sharded"
ASSIGNMENT = "splitmix64(item_id) % shard_count"


def shard_name(bucket: int) -> str:
    return f"shard-{bucket:03d}"


# --- worker side -----------------------------------------------------------------------------
def proc_status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0), so the peak is this task's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except Exception:  # not in a worker (called directly): one thread
        return 1


def build_shard(directory: str, n_trees: int, seed: int) -> dict:
    """Dask task: build the Annoy file of the shard staged in ``directory`` (its own vectors only).

    Returns the shard's meta with the worker process's peak RSS while it built
    (``peak_rss_is_task``: the mark was reset at the start, else it is the process's lifetime peak).
    """
    reset = reset_peak_rss()
    rss_before = proc_status_bytes("VmRSS")
    d = Path(directory)
    ids = np.load(d / IDS_FILE)
    vectors = np.load(d / VECTORS_FILE, mmap_mode="r")  # paged in by Annoy's add_item, not copied
    meta = item_index.build(ids, vectors, d, n_trees, seed=seed, n_jobs=_worker_threads())
    peak = proc_status_bytes("VmHWM") if reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "name": d.name, "items": meta.items, "size_bytes": meta.size_bytes,
        "build_seconds": round(meta.build_seconds, 3), "rss_before_bytes": rss_before,
        "peak_rss_bytes": peak, "peak_rss_is_task": reset,
    }  # fmt: skip


# --- driver side -----------------------------------------------------------------------------
def stage_shards(ids: np.ndarray, vectors: np.ndarray, out_dir: Path, plan: ShardPlan) -> list[Path]:
    """Write each non-empty shard's item IDs and vectors (ID order kept) into ``shard-NNN/``."""
    dirs = []
    for bucket in range(plan.count):
        rows = np.flatnonzero(plan.shard == bucket)
        if len(rows) == 0:
            continue  # more shards than the catalogue fills: nothing to build or query
        d = out_dir / shard_name(bucket)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / IDS_FILE, ids[rows])
        np.save(d / VECTORS_FILE, np.ascontiguousarray(vectors[rows], dtype=np.float32))
        dirs.append(d)
    return dirs


def _check_bound(plan: ShardPlan, built: list[dict]) -> None:
    if plan.bound_bytes is None:
        return
    over = [b for b in built if b["size_bytes"] > plan.bound_bytes]
    if over:
        names = ", ".join(f"{b['name']} {b['size_bytes']:,} bytes" for b in over)
        raise UserError(
            f"index.max_shard_mib={plan.bound_bytes / 2**20:g}: built shard(s) over the bound ({names}); "
            "lower index.max_shard_mib or raise index.shards"
        )


def build_sharded(
    client, ids: np.ndarray, vectors: np.ndarray, out_dir: Path, plan: ShardPlan, n_trees: int, seed: int = 0
) -> dict:
    """Stage the shards' vectors, build every shard as a Dask task, write the set's meta."""
    from distributed import as_completed

    started = time.perf_counter()
    dirs = stage_shards(ids, vectors, out_dir, plan)
    logger.info(f"index: {len(ids):,} items into {len(dirs)} shards (largest {max(plan.items):,} items, "
        f"estimated {max(plan.estimated_bytes) / 2**20:.1f} MiB), building as Dask tasks")  # fmt: skip
    run = uuid.uuid4().hex[:8]
    futures = [client.submit(build_shard, str(d), n_trees, seed, key=f"build_shard-{d.name}-{run}", pure=False) for d in dirs]
    built: dict[str, dict] = {}
    try:
        for future in as_completed(futures, loop=client.loop):
            b = future.result()
            built[b["name"]] = b
            logger.info(f"index: shard {len(built)}/{len(dirs)} {b['name']}: {b['items']:,} items, "
                f"{b['size_bytes'] / 2**20:.1f} MiB in {b['build_seconds']:.1f}s")  # fmt: skip
    except BaseException:
        client.cancel(futures)  # one shard failed (or we were interrupted): stop the others
        raise
    shards = []
    for d in dirs:
        bucket = int(d.name.split("-")[1])
        shards.append({**built[d.name], "bucket": bucket, "estimated_bytes": plan.estimated_bytes[bucket]})
    _check_bound(plan, shards)
    meta = {
        "layout": LAYOUT, "dim": int(vectors.shape[1]), "items": int(len(ids)), "n_trees": n_trees,
        "search_k": -1, "search_k_scope": "per_shard", "build_seconds": round(time.perf_counter() - started, 3),
        "size_bytes": sum(s["size_bytes"] for s in shards), "shard_count": plan.count,
        "assignment": ASSIGNMENT, "max_shard_bytes": plan.bound_bytes, "shards": shards,
    }  # fmt: skip
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    logger.info(f"index: {len(shards)} shards built in {meta['build_seconds']:.1f}s, {meta['size_bytes'] / 2**20:.1f} MiB")
    return meta


def build_index(
    ids: np.ndarray, vectors: np.ndarray, out_dir: Path, settings: IndexSettings, client: Callable[[], object],
    seed: int = 0,
) -> dict:  # fmt: skip
    """The item index of ``index.*`` settings in ``out_dir``: flat (one shard), sharded, or a
    Milvus collection (``index.backend``).

    ``client`` is called only when shards are built or Milvus rows inserted (a flat build
    starts no cluster).
    Returns the index meta as written to ``index.json``.
    """
    ids = id_array(ids)  # int64, or unicode for string IDs: saved beside the vectors without pickling
    if settings.backend == "milvus":
        return milvus_index.build(ids, vectors, out_dir, settings, client)
    plan = plan_shards(ids, int(vectors.shape[1]), settings.n_trees, settings.shards, settings.max_shard_mib)
    if plan.count > 1:
        return build_sharded(client(), ids, vectors, out_dir, plan, settings.n_trees, seed)
    built = item_index.build(ids, vectors, out_dir, settings.n_trees, seed=seed)
    np.save(out_dir / VECTORS_FILE, vectors)  # exact search and re-tuning use these
    _check_bound(plan, [{"name": "index", "size_bytes": built.size_bytes}])
    meta = item_index.load_meta(out_dir)
    meta.update(estimated_bytes=plan.estimated_bytes[0], max_shard_bytes=plan.bound_bytes)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta
