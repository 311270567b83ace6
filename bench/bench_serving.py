"""Benchmark of online recall: 1M items x 64 d, k=100, the Feast SQLite online lookup included.

Builds a synthetic generation with the platform's own code (bench/serving_world.py: Annoy index
+ measured search_k, NumpyUserTower weights, real Feast online rows for 10k users, manifest,
CURRENT), then measures:

1. in-process recall latency (``Retriever.recall``: online read -> tower -> Annoy), p50/p99,
   per stage, and the online read through Feast's SDK vs the online store API (target p99 <= 2 ms);
2. Annoy vs exact numpy search on the same vectors and queries: recall@100 and speed-up
   (target recall >= 0.95, >= 10x), plus recall on a harder (noisier) query set;
3. HTTP: ``twotower serve`` (uvicorn) in a subprocess, a bounded asyncio keep-alive client on
   loopback, several concurrency levels (target >= 1,000 req/s with p99 <= 10 ms, 2 cores).

Writes ``bench/results/serving.json``. A benchmark, not a test: it never fails on speed.
Client and server share the machine's cores (the client's CPU is part of the measurement).

    .venv/bin/python -m bench.bench_serving [--items 1000000] [--users 10000] [--http-seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import serving_world  # noqa: E402
from bench.local_servers import free_port  # noqa: E402
from twotower.core.config import load_settings  # noqa: E402
from twotower.core.processes import http_ok, wait_ready  # noqa: E402
from twotower.core.workspace import Workspace  # noqa: E402


def pct(values, q) -> float:
    return round(float(np.percentile(np.asarray(values) * 1e3, q)), 4)


def summary(values) -> dict:
    return {"p50_ms": pct(values, 50), "p90_ms": pct(values, 90), "p99_ms": pct(values, 99), "max_ms": pct(values, 100),
            "mean_ms": round(float(np.mean(values) * 1e3), 4), "n": len(values)}  # fmt: skip


def write_config(ws: Path, args) -> None:
    """The benchmark's settings as a workspace config file (read by `twotower serve` too)."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "twotower.toml").write_text(
        f"[model]\nid_embedding_dim = {args.dim}\noutput_dim = {args.dim}\nhidden_units = [{2 * args.dim}]\n"
        f"[index]\nn_trees = {args.n_trees}\ntuning_queries = {args.tuning_queries}\n"
    )


# --- 1. in-process --------------------------------------------------------------------------
def in_process(settings, ws: Workspace, users: int, n: int, rng) -> dict:
    from serving.online import reader
    from serving.retriever import Retriever
    from twotower import feature_store

    t = time.perf_counter()
    retriever = Retriever.open(settings, ws)
    load_seconds = time.perf_counter() - t
    gc.collect()
    gc.freeze()  # as the server does after startup: no old-generation GC pauses in the path
    ids = rng.integers(1, users + 1, n)
    for uid in ids[:200]:  # warm-up
        retriever.recall(int(uid), 100)
    total, stages = [], {"online": [], "tower": [], "index": []}
    for uid in ids:
        t0 = time.perf_counter()
        result = retriever.recall_batch([int(uid)], 100)
        total.append(time.perf_counter() - t0)
        for stage, seconds in result.timings.items():
            stages[stage].append(seconds)
        assert result.recalls[0].path == "embedding" and len(result.recalls[0].item_ids) == 100
    batch_ids = rng.integers(1, users + 1, (50, 64))
    t0 = time.perf_counter()
    for row in batch_ids:
        retriever.recall_batch(row.tolist(), 100)
    batch_per_user = (time.perf_counter() - t0) / batch_ids.size

    store = feature_store.store(settings, ws)
    reads = {}
    for kind in ("direct", "sdk"):
        r = reader(store, kind)
        lat = []
        for uid in ids[:1000]:
            t0 = time.perf_counter()
            r.read([int(uid)], 0, retriever.current.tower.spec)
            lat.append(time.perf_counter() - t0)
        reads[kind] = summary(lat)
    retriever.close()
    gc.unfreeze()
    # The machine is shared: p99 over the whole run includes other jobs' bursts. Also report
    # p99 per window of 300 consecutive requests (all windows, not a chosen one).
    windows = [pct(total[s : s + 300], 99) for s in range(0, len(total) - 299, 300)]
    return {
        "generation_load_seconds": round(load_seconds, 3),
        "recall_k100": summary(total),
        "p99_ms_per_300_request_window": {"min": min(windows), "median": float(np.median(windows)),
                                          "max": max(windows), "all": windows},  # fmt: skip
        "stages": {k: summary(v) for k, v in stages.items()},
        "batch_64_users_ms_per_user": round(batch_per_user * 1e3, 4),
        "online_read_one_user": reads,
    }


# --- 2. ANN vs exact --------------------------------------------------------------------------
def ann_vs_exact(ws: Workspace, world: dict, n_queries: int, n_exact_timed: int, rng) -> dict:
    from twotower.index.item_index import ItemIndex, exact_topk

    vectors = world["vectors"]
    index = ItemIndex(ws.generations_dir / serving_world.GENERATION / "index")
    search_k = index.meta.search_k
    picks = rng.integers(0, len(world["user_emb"]), n_queries)
    sets = {
        "tower_queries": serving_world.tower_vectors(world["tower"], world["user_emb"][picks], rng),
        "hard_queries": serving_world.clustered(rng, world["centers"], n_queries, world["hard_noise"]),
    }
    grid_k = world["grid_search_k"]
    out: dict = {"n_trees": index.meta.n_trees, "search_k": search_k, "grid_search_k": grid_k, "k": 100,
                 "queries": n_queries}  # fmt: skip
    for name, queries in sets.items():
        truth = np.concatenate([exact_topk(vectors, queries[s : s + 50], 100) for s in range(0, len(queries), 50)])
        for sk, label in ((search_k, name), (grid_k, f"{name}_at_grid_search_k")):
            if label != name and sk == search_k:
                continue
            ann_lat, hits = [], 0
            for q, want in zip(queries, truth):
                t0 = time.perf_counter()
                rows, _ = index._index.get_nns_by_vector(q, 100, search_k=sk, include_distances=True)
                ann_lat.append(time.perf_counter() - t0)
                hits += len(set(rows) & set(want.tolist()))
            out[label] = {"search_k": sk, "recall_at_100": round(hits / truth.size, 4), "annoy": summary(ann_lat)}
    # Exact search the way serving would have to do it: one query at a time (matmul + top-k).
    exact_lat = []
    for q in sets["tower_queries"][:n_exact_timed]:
        t0 = time.perf_counter()
        exact_topk(vectors, q[None, :], 100)
        exact_lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    exact_topk(vectors, sets["tower_queries"][:64], 100)
    batched = (time.perf_counter() - t0) / 64
    out["exact_numpy_one_query"] = summary(exact_lat)
    out["exact_numpy_batched_64_ms_per_query"] = round(batched * 1e3, 3)
    ann_mean = out["tower_queries"]["annoy"]["mean_ms"]
    out["speedup_vs_exact_one_query"] = round(out["exact_numpy_one_query"]["mean_ms"] / ann_mean, 1)
    out["speedup_vs_exact_batched"] = round(batched * 1e3 / ann_mean, 1)
    index.unload()
    return out


# --- 3. HTTP -------------------------------------------------------------------------------------
async def _client(port: int, paths: list[str], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = 0

    async def one_connection(worker: int) -> None:
        nonlocal errors, counter
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                counter += 1
                path = paths[(counter * 7919 + worker) % len(paths)]
                t0 = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "req_per_s": round(len(latencies) / elapsed, 1), **summary(latencies)}  # fmt: skip


def http(ws: Workspace, users: int, levels: list[int], seconds: float, workers: int, rng) -> dict:
    import httpx

    port = free_port()
    env = dict(os.environ, TWOTOWER_WORKSPACE=str(ws.root))
    log = open(ws.root / "serve.log", "wb")
    cmd = [str(Path(sys.executable).with_name("twotower")), "serve", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.perf_counter()
        wait_ready(proc, http_ok(f"http://127.0.0.1:{port}/health"), "`twotower serve`", 300, log=ws.root / "serve.log")
        startup = time.perf_counter() - started
        paths = [f"/recall/{int(u)}?k=100" for u in rng.integers(1, users + 1, 5000)]
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(_client(port, paths, 4, 2.0))  # warm-up
        runs = [asyncio.run(_client(port, paths, c, seconds)) for c in levels]
        for r in runs:
            print(f"http: workers {workers}, concurrency {r['concurrency']}: {r['req_per_s']:,.0f} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}", flush=True)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    stage_sums = {}
    for line in metrics.splitlines():
        if line.startswith("twotower_recall_stage_seconds_sum") or line.startswith("twotower_recall_stage_seconds_count"):
            name, value = line.rsplit(" ", 1)
            stage_sums[name] = float(value)
    server_stage_ms = {}
    for stage in ("online", "tower", "index"):
        s = stage_sums.get(f'twotower_recall_stage_seconds_sum{{stage="{stage}"}}', 0.0)
        c = stage_sums.get(f'twotower_recall_stage_seconds_count{{stage="{stage}"}}', 1.0)
        server_stage_ms[stage] = round(s / max(c, 1.0) * 1e3, 4)
    ok = [r for r in runs if r["p99_ms"] <= 10 and r["errors"] == 0]
    best = max(ok, key=lambda r: r["req_per_s"]) if ok else None
    return {"workers": workers, "server_startup_seconds": round(startup, 1), "runs": runs,
            "best_with_p99_under_10ms": best, "server_mean_stage_ms": server_stage_ms}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--item-noise", type=float, default=0.6)
    parser.add_argument("--user-noise", type=float, default=0.6)
    parser.add_argument("--hard-noise", type=float, default=1.0, help="noise of the harder query set")
    parser.add_argument("--n-trees", type=int, default=50, help="Annoy trees (index.n_trees default)")
    parser.add_argument("--tuning-queries", type=int, default=200)
    parser.add_argument("--latency-queries", type=int, default=3000)
    parser.add_argument("--ann-queries", type=int, default=500)
    parser.add_argument("--exact-timed", type=int, default=30)
    parser.add_argument("--http-seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="build the world here (and keep it) instead of a temp dir")
    parser.add_argument("--reuse", action="store_true", help="with --keep: measure the world built there before")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_serving_"))
    ws_root = root / "ws"
    rng = np.random.default_rng(args.seed + 1)
    load_start = os.getloadavg()
    try:
        if ws_root.exists() and not (args.reuse and args.keep):
            shutil.rmtree(ws_root)
        write_config(ws_root, args)
        settings = load_settings(workspace=ws_root)
        ws = Workspace(settings.workspace)
        started = time.perf_counter()
        world = serving_world.build(
            settings, ws, items=args.items, users=args.users, clusters=args.clusters, item_noise=args.item_noise,
            user_noise=args.user_noise, n_trees=args.n_trees, tuning_queries=args.tuning_queries, seed=args.seed,
            reuse=bool(args.reuse and args.keep), log=lambda m: print(m, flush=True),
        )  # fmt: skip
        world["hard_noise"] = args.hard_noise
        setup_seconds = time.perf_counter() - started
        print(f"setup: {setup_seconds:.0f}s {world['timings']}", flush=True)

        inproc = in_process(settings, ws, args.users, args.latency_queries, rng)
        print(f"in-process: {inproc['recall_k100']} stages p50 "
              f"{ {k: v['p50_ms'] for k, v in inproc['stages'].items()} }", flush=True)  # fmt: skip
        ann = ann_vs_exact(ws, world, args.ann_queries, args.exact_timed, rng)
        print(f"ann: recall {ann['tower_queries']['recall_at_100']} (hard {ann['hard_queries']['recall_at_100']}), "
              f"speed-up {ann['speedup_vs_exact_one_query']}x one query / {ann['speedup_vs_exact_batched']}x batched", flush=True)  # fmt: skip
        web = {f"workers_{w}": http(ws, args.users, args.concurrency, args.http_seconds, w, rng) for w in args.workers}
        load = os.getloadavg()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    candidates = [w["best_with_p99_under_10ms"] | {"workers": w["workers"]} for w in web.values() if w["best_with_p99_under_10ms"]]
    best = max(candidates, key=lambda r: r["req_per_s"]) if candidates else None
    out = {
        "benchmark": "serving",
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_start": [round(x, 2) for x in load_start], "loadavg_at_end": [round(x, 2) for x in load],
                    "note": "2 shared vCPUs: client and server on the same cores, other jobs running (see loadavg)"},  # fmt: skip
        "targets": {
            "in_process_p99_ms": 2.0, "http_req_per_s": 1000, "http_p99_ms": 10.0,
            "ann_recall_at_100": 0.95, "ann_speedup": 10,
        },  # fmt: skip
        "verdict": {
            "in_process_p99_ms": inproc["recall_k100"]["p99_ms"],
            "in_process_p99_met": inproc["recall_k100"]["p99_ms"] <= 2.0,
            "in_process_p99_median_window_ms": inproc["p99_ms_per_300_request_window"]["median"],
            "http_best_req_per_s_with_p99_under_10ms": best["req_per_s"] if best else None,
            "http_best": best,
            "http_met": bool(best and best["req_per_s"] >= 1000),
            "ann_recall_at_100": ann["tower_queries"]["recall_at_100"],
            "ann_speedup_one_query": ann["speedup_vs_exact_one_query"],
            "ann_met": ann["tower_queries"]["recall_at_100"] >= 0.95 and ann["speedup_vs_exact_one_query"] >= 10,
        },
        "world": {
            "items": args.items, "dim": args.dim, "users_online": args.users, "topics": args.clusters,
            "item_noise": args.item_noise, "user_noise": args.user_noise, "hard_query_noise": args.hard_noise,
            "online_store": "feast sqlite", "n_trees": world["n_trees"], "search_k": world["search_k"],
            "grid_search_k": world["grid_search_k"], "search_k_trials": world["trials"],
            "index_mib": round(world["index_bytes"] / 2**20, 1),
            "setup_seconds": round(setup_seconds, 1), "reused_world": bool(world.get("reused")),
            "setup_breakdown_seconds": {k: round(v, 1) for k, v in world["timings"].items()},
        },  # fmt: skip
        "in_process": inproc,
        "ann_vs_exact": ann,
        "http": web,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["verdict"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
