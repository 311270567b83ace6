"""One Annoy index vs the same items in N shards, side by side in one run.

Measures, for 1M items x 64 d by default (``--items`` shrinks it): build wall time (the flat
index in this process with every core, as the full update's flat path does; the shards as
parallel Dask tasks on a LocalCluster of worker processes, staging included), file size per
shard, the builder's peak RSS (the process's high-water mark, reset at the start of each build:
the flat build's process also holds every vector, a shard's worker only its own), and query
latency p50/p99 at k=100 with recall@100 against exact search:

* ``same_search_k``: the flat index's tuned ``search_k`` (target recall 0.95), and every shard
  queried with that same value (so the sharded index inspects N times as many nodes);
* ``sharded_tuned``: the sharded index tuned the way the full update tunes it (per-shard
  ``search_k`` divided by N, the smallest reaching the target).

Items and queries are drawn like bench/serving_world.py (tight topics, user vectors near them).
Writes ``bench/results/index_sharded.json`` (``index_sharded_<items>.json`` for other sizes).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import write_result
from bench.serving_world import clustered, unit


def _latency(index, queries: np.ndarray, k: int, search_k: int) -> tuple[dict, list[np.ndarray]]:
    times, results = [], []
    for q in queries:
        t = time.perf_counter()
        ids, _ = index.query(q, k, search_k)
        times.append(time.perf_counter() - t)
        results.append(ids)
    ms = np.asarray(times) * 1e3
    stats = {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
             "mean_ms": round(float(ms.mean()), 4), "n": len(ms)}  # fmt: skip
    return stats, results


def _recall(results: list[np.ndarray], truth: np.ndarray) -> float:
    return round(float(np.mean([len(set(r.tolist()) & set(t.tolist())) / len(t) for r, t in zip(results, truth)])), 4)


def _measure(name: str, index, queries: np.ndarray, truth: np.ndarray, search_k: int, k: int = 100) -> dict:
    _latency(index, queries[:20], k, search_k)  # warm the page cache and the code paths
    stats, results = _latency(index, queries, k, search_k)
    out = {"search_k": search_k, "search_k_total": search_k * index.shard_count, f"recall@{k}_vs_exact": _recall(results, truth), **stats}
    print(f"query {name}: {out}", flush=True)
    return out


def _flat_build(ids: np.ndarray, vectors: np.ndarray, out: Path, n_trees: int) -> dict:
    from twotower.index import item_index
    from twotower.index.shard_build import proc_status_bytes, reset_peak_rss

    reset = reset_peak_rss()
    before = proc_status_bytes("VmRSS")
    started = time.perf_counter()
    meta = item_index.build(ids, vectors, out, n_trees, n_jobs=-1)
    wall = time.perf_counter() - started
    return {"wall_seconds": round(wall, 2), "size_mib": round(meta.size_bytes / 2**20, 1), "threads": "all cores",
            "rss_before_mib": round((before or 0) / 2**20, 1),
            "peak_rss_mib": round((proc_status_bytes("VmHWM") or 0) / 2**20, 1) if reset else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--n-trees", type=int, default=50, help="Annoy trees (index.n_trees default)")
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--item-noise", type=float, default=0.6)
    parser.add_argument("--user-noise", type=float, default=0.6)
    parser.add_argument("--tuning-queries", type=int, default=200)
    parser.add_argument("--queries", type=int, default=1_000, help="timed queries per configuration")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (1 thread each)")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="build here (kept) instead of a temp dir")
    args = parser.parse_args()

    from materialize.cluster import dask_client
    from twotower.index.item_index import choose_search_k, exact_topk
    from twotower.index.shard_build import build_sharded
    from twotower.index.shard_plan import estimate_annoy_bytes, plan_shards
    from twotower.index.sharded_index import open_index
    from twotower.core.config import DaskSettings

    rng = np.random.default_rng(args.seed)
    centers = unit(rng.standard_normal((args.clusters, args.dim), dtype=np.float32))
    ids = np.arange(1, args.items + 1, dtype=np.int64)
    vectors = clustered(rng, centers, args.items, args.item_noise)
    tuning = clustered(rng, centers, args.tuning_queries, args.user_noise)
    queries = clustered(rng, centers, args.queries, args.user_noise)
    t = time.perf_counter()
    truth = ids[exact_topk(vectors, queries, 100)]
    exact_ms = (time.perf_counter() - t) / len(queries) * 1e3
    one = time.perf_counter()
    for q in queries[:20]:
        exact_topk(vectors, q[None, :], 100)
    exact_one_ms = (time.perf_counter() - one) / 20 * 1e3
    print(f"{args.items:,} x {args.dim}: exact top-100 {exact_one_ms:.1f} ms/query ({exact_ms:.2f} batched)", flush=True)

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_index_sharded_"))
    try:
        flat = _flat_build(ids, vectors, root / "flat", args.n_trees)
        print(f"flat build: {flat}", flush=True)
        t = time.perf_counter()
        with dask_client(DaskSettings(n_workers=args.workers, threads_per_worker=1, memory_limit="8GiB")) as client:
            cluster_seconds = time.perf_counter() - t
            plan = plan_shards(ids, args.dim, args.n_trees, shards=args.shards)
            t = time.perf_counter()
            meta = build_sharded(client, ids, vectors, root / "sharded", plan, args.n_trees)
            sharded_wall = time.perf_counter() - t
        shards = [{"name": s["name"], "items": s["items"], "size_mib": round(s["size_bytes"] / 2**20, 1),
                   "estimated_mib": round(s["estimated_bytes"] / 2**20, 1), "build_seconds": s["build_seconds"],
                   "rss_before_mib": round((s["rss_before_bytes"] or 0) / 2**20, 1),
                   "peak_rss_mib": round(s["peak_rss_bytes"] / 2**20, 1), "peak_rss_is_task": s["peak_rss_is_task"]}
                  for s in meta["shards"]]  # fmt: skip
        print(f"sharded build: {sharded_wall:.1f}s {shards}", flush=True)

        single, sharded = open_index(root / "flat"), open_index(root / "sharded")
        sk_flat, flat_trials = choose_search_k(single, vectors, tuning, 100, args.target_recall, item_ids=ids)
        sk_shard, shard_trials = choose_search_k(sharded, vectors, tuning, 100, args.target_recall, item_ids=ids)
        query = {
            "flat": _measure("flat", single, queries, truth, sk_flat),
            "sharded_same_search_k": _measure("sharded, same search_k per shard", sharded, queries, truth, sk_flat),
            "sharded_tuned": _measure("sharded, tuned per shard", sharded, queries, truth, sk_shard),
        }
        single.unload()
        sharded.unload()
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)

    payload = {
        "world": {"items": args.items, "dim": args.dim, "topics": args.clusters, "item_noise": args.item_noise,
                  "user_noise": args.user_noise, "n_trees": args.n_trees, "shards": args.shards,
                  "dask_workers": args.workers, "threads_per_worker": 1, "timed_queries": args.queries},
        "build": {
            "flat": {**flat, "estimated_mib": round(estimate_annoy_bytes(args.items, args.dim, args.n_trees) / 2**20, 1)},
            "sharded": {"wall_seconds": round(sharded_wall, 2), "cluster_start_seconds": round(cluster_seconds, 2),
                        "size_mib": round(meta["size_bytes"] / 2**20, 1),
                        "largest_shard_mib": max(s["size_mib"] for s in shards),
                        "largest_peak_rss_mib": max(s["peak_rss_mib"] for s in shards), "shards": shards},
        },
        "query_k100": query,
        "exact_ms_per_query": {"one_query": round(exact_one_ms, 2), "batched": round(exact_ms, 3)},
        "tuning": {"target_recall": args.target_recall, "flat_trials": flat_trials, "sharded_trials": shard_trials},
    }  # fmt: skip
    write_result("index_sharded" if args.items == 1_000_000 else f"index_sharded_{args.items}", payload)


if __name__ == "__main__":
    main()
