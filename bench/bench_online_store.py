"""Benchmark: serving latency with Feast's SQLite online store vs its Redis online store.

One synthetic generation (bench/serving_world.py: real Annoy index, user tower, Feast online
rows; default 100k items x 64 d, 10k users) is built with the SQLite store; a copy of the
workspace is switched to a throwaway redis-server on 127.0.0.1 (``feast apply`` with the Redis
config, profiles and the generation's ID embeddings materialized into it). Then, in one
process and interleaved block by block (so other load on the machine hits both alike), the
same users are measured through both:

* in-process recall, k=100 (``Retriever.recall_batch``: online read -> tower -> Annoy), p50/p99
  and per stage;
* the online read alone: one user through the direct reader (the online store's
  ``online_read``, what serving uses) and through Feast's SDK (``get_online_features``), and
  a batch of 64 users through the direct reader.

Writes ``bench/results/online_store.json``. A benchmark: it reports, never fails on speed.

    .venv/bin/python -m bench online_store
    .venv/bin/python -m bench.bench_online_store [--items 100000] [--users 10000] [--requests 3000]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import serving_world, write_result  # noqa: E402
from bench.local_servers import redis_server  # noqa: E402
from twotower.core.config import load_settings  # noqa: E402
from twotower.core.workspace import Workspace  # noqa: E402

STORES = ("sqlite", "redis")


def write_config(ws: Path, dim: int, n_trees: int, tuning_queries: int) -> None:
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "twotower.toml").write_text(
        f"[model]\nid_embedding_dim = {dim}\noutput_dim = {dim}\nhidden_units = [{2 * dim}]\n"
        f"[index]\nn_trees = {n_trees}\ntuning_queries = {tuning_queries}\n"
    )


def to_redis(ws_sqlite: Workspace, target: Path, port: int):
    """A copy of the workspace whose online store is the Redis server on ``port``."""
    from materialize.user_embeddings import write_online
    from twotower import feature_store

    shutil.copytree(ws_sqlite.root, target)
    settings = load_settings(workspace=target, online_store={"type": "redis", "redis_port": port})
    ws = Workspace(settings.workspace)
    feature_store.apply(settings, ws)
    end = serving_world.AS_OF + timedelta(seconds=1)
    feature_store.store(settings, ws).materialize(
        start_date=datetime(2000, 1, 1, tzinfo=timezone.utc), end_date=end, feature_views=["user_profile"]
    )
    write_online(settings, ws, serving_world.GENERATION)
    return settings, ws


def pct(values, q) -> float:
    return round(float(np.percentile(np.asarray(values) * 1e3, q)), 4)


def summary(values) -> dict:
    return {"p50_ms": pct(values, 50), "p90_ms": pct(values, 90), "p99_ms": pct(values, 99),
            "max_ms": pct(values, 100), "mean_ms": round(float(np.mean(values) * 1e3), 4), "n": len(values)}  # fmt: skip


def measure(setups: dict, users: int, n: int, block: int, rng) -> dict:
    """The same user sequence through every store, interleaved in blocks of ``block``."""
    from serving.online import reader
    from serving.retriever import Retriever
    from twotower import feature_store

    ids = rng.integers(1, users + 1, n)
    batches = rng.integers(1, users + 1, (max(1, n // 64), 64))
    kit = {}
    for name, (settings, ws) in setups.items():
        retriever = Retriever.open(settings, ws)
        store = feature_store.store(settings, ws)
        readers = {kind: reader(store, kind)
                   for kind in ("direct", "sdk")}  # fmt: skip
        for uid in ids[:200]:  # warm-up: connections, caches
            retriever.recall_batch([int(uid)], 100)
            readers["sdk"].read([int(uid)], retriever.current.slot, retriever.current.tower.spec)
        kit[name] = (retriever, readers)
    gc.collect()
    gc.freeze()
    out = {name: {"recall": [], "stages": {"online": [], "tower": [], "index": []}, "direct": [], "sdk": [], "batch64": []}
           for name in setups}  # fmt: skip
    paths = {name: {} for name in setups}
    for start in range(0, n, block):
        for name, (retriever, readers) in kit.items():
            r = out[name]
            slot, spec = retriever.current.slot, retriever.current.tower.spec
            for uid in ids[start : start + block]:
                t0 = time.perf_counter()
                result = retriever.recall_batch([int(uid)], 100)
                r["recall"].append(time.perf_counter() - t0)
                for stage, seconds in result.timings.items():
                    r["stages"].setdefault(stage, []).append(seconds)
                path = result.recalls[0].path
                paths[name][path] = paths[name].get(path, 0) + 1
            for kind in ("direct", "sdk"):
                for uid in ids[start : start + block]:
                    t0 = time.perf_counter()
                    readers[kind].read([int(uid)], slot, spec)
                    r[kind].append(time.perf_counter() - t0)
            for row in batches[start // 64 : (start + block) // 64]:
                t0 = time.perf_counter()
                readers["direct"].read(row.tolist(), slot, spec)
                r["batch64"].append(time.perf_counter() - t0)
    gc.unfreeze()
    # Same answers from both stores: the online rows are the same, so the items are too.
    same = all(
        kit["sqlite"][0].recall(int(u), 100, hour=12).item_ids.tolist() == kit["redis"][0].recall(int(u), 100, hour=12).item_ids.tolist()
        for u in ids[:200]
    )  # fmt: skip
    for retriever, _ in kit.values():
        retriever.close()
    results = {}
    for name, r in out.items():
        results[name] = {
            "recall_k100": summary(r["recall"]),
            "recall_stages": {k: summary(v) for k, v in r["stages"].items() if v},
            "online_read_one_user_direct": summary(r["direct"]),
            "online_read_one_user_sdk": summary(r["sdk"]),
            "online_read_64_users_direct": summary(r["batch64"]),
            "paths": paths[name],
        }
    results["same_items_from_both_stores_200_users"] = same
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--n-trees", type=int, default=50)
    parser.add_argument("--tuning-queries", type=int, default=200)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--block", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_online_store_"))
    try:
        write_config(root / "sqlite", args.dim, args.n_trees, args.tuning_queries)
        settings = load_settings(workspace=root / "sqlite")
        ws = Workspace(settings.workspace)
        t = time.perf_counter()
        world = serving_world.build(
            settings, ws, items=args.items, users=args.users, clusters=max(10, args.items // 1000), item_noise=0.6,
            user_noise=0.6, n_trees=args.n_trees, tuning_queries=args.tuning_queries, seed=args.seed,
            log=lambda m: print(m, flush=True),
        )  # fmt: skip
        build_s = time.perf_counter() - t
        with redis_server() as (port, _proc):
            t = time.perf_counter()
            redis_settings, redis_ws = to_redis(ws, root / "redis", port)
            redis_s = time.perf_counter() - t
            print(f"setup: world {build_s:.0f}s, redis copy + materialize {redis_s:.0f}s", flush=True)
            results = measure({"sqlite": (settings, ws), "redis": (redis_settings, redis_ws)}, args.users,
                              args.requests, args.block, np.random.default_rng(args.seed + 1))  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = {
        name: {"recall_p50_ms": r["recall_k100"]["p50_ms"], "recall_p99_ms": r["recall_k100"]["p99_ms"],
               "online_read_p50_ms": r["online_read_one_user_direct"]["p50_ms"],
               "online_read_p99_ms": r["online_read_one_user_direct"]["p99_ms"],
               "online_read_sdk_p50_ms": r["online_read_one_user_sdk"]["p50_ms"],
               "online_read_sdk_p99_ms": r["online_read_one_user_sdk"]["p99_ms"],
               "online_read_64_users_p50_ms": r["online_read_64_users_direct"]["p50_ms"]}  # fmt: skip
        for name, r in results.items() if name in STORES
    }
    print(table, flush=True)
    write_result("online_store", {
        "what": "in-process recall (k=100) and the online read alone: Feast SQLite vs Feast Redis (loopback), "
                "same generation, same users, interleaved blocks",
        "side_by_side": table,
        "world": {"items": args.items, "users": args.users, "dim": args.dim, "n_trees": world["n_trees"],
                  "search_k": world["search_k"], "requests_per_store": args.requests, "block": args.block,
                  "setup_seconds": {"world": round(build_s, 1), "redis": round(redis_s, 1)}},  # fmt: skip
        **results,
    })


if __name__ == "__main__":
    main()
