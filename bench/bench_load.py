"""Benchmark: HTTP load while the next generation is published (DESIGN invariant 1 under load).

A simulated world (default 5k users, 20k items, 2 days) serves generation 1 (day 1) with
``twotower serve --workers 2`` on 127.0.0.1. Day 2's heavy steps (validate, prepare, train,
export, evaluate) are run beforehand, as the nightly job would have; then, while ``concurrency``
keep-alive connections hammer ``GET /recall/{user}?k=100`` and ``POST /recall`` (batches of 8)
for at least ``--seconds``, a real ``twotower full-update DAY2`` subprocess resumes the day and
publishes it: it re-validates, writes the new ID embeddings into the other online slot,
refreshes profiles, renames the generation into place and flips ``CURRENT``; each server
worker then swaps on its own. Everything it saw is checked (bench/publish_load.py): errors,
generations, no answer from the old generation on a connection after the new one, and every
answer's item IDs against an in-process retriever pinned on the generation it names.

Writes ``bench/results/load.json``. A benchmark: it reports, never fails on speed.

    .venv/bin/python -m bench load
    .venv/bin/python -m bench.bench_load [--users 5000] [--items 20000] [--seconds 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import publish_load, write_result  # noqa: E402
from bench.local_servers import free_port  # noqa: E402
from twotower.core.config import load_settings  # noqa: E402
from twotower.core.processes import http_ok, wait_ready  # noqa: E402
from twotower.core.workspace import Workspace  # noqa: E402

TWOTOWER = str(Path(sys.executable).with_name("twotower"))
CONFIG = "[full_update]\npromotion_min_ratio = 0.0\n"  # serving is measured, not the promotion check


def prebuild(settings, ws: Workspace, day: date) -> None:
    """Day ``day``'s full update up to (not including) publish: what ran earlier in the night."""
    from materialize.cluster import LazyClient
    from twotower.pipelines import full_update_steps as steps
    from twotower.core import generations as gens
    from twotower.pipelines.day import DayWork

    served, work, record = gens.current(ws), DayWork(ws, day), {}
    step, dask = steps.Steps(record), LazyClient(settings.dask)
    try:
        step("validate", steps.validate, settings, ws, day)
        work.root.mkdir(parents=True, exist_ok=True)
        prepared = step("prepare", steps.prepare, settings, ws, day, dask)
        step("train", steps.train, settings, ws, work, prepared, served)
        step("export", steps.export, settings, ws, work, prepared, dask)
    finally:
        dask.close()
    step("evaluate", steps.evaluate, settings, ws, work, prepared, served)


def build_base(base: Path, args) -> dict:
    """simulate + full update of day 1 (served) + day 2 built but not published."""
    from twotower.pipelines import full_update
    from twotower.research.simulate import simulate

    base.mkdir(parents=True, exist_ok=True)
    (base / "twotower.toml").write_text(CONFIG)
    settings = load_settings(workspace=base)
    ws = Workspace(settings.workspace)
    timings = {}
    t = time.perf_counter()
    simulate(settings, ws, users=args.users, items=args.items, days=2, seed=args.seed)
    timings["simulate"] = time.perf_counter() - t
    days = ws.days()
    t = time.perf_counter()
    full_update.run(settings, ws, days[0])
    timings["full_update_day1"] = time.perf_counter() - t
    t = time.perf_counter()
    prebuild(settings, ws, days[1])
    timings["day2_before_publish"] = time.perf_counter() - t
    return {k: round(v, 1) for k, v in timings.items()}


def request_pool(ws: Workspace, g1: str, day2: date, rng, n_known: int, n_new: int, n_batches: int, batch: int):
    from twotower.core import generations as gens

    known = pd.read_parquet(gens.directory(ws, g1) / "user_id_embedding.parquet", columns=["user_id"])["user_id"]
    known = rng.choice(known.to_numpy(np.int64), min(n_known, len(known)), replace=False)
    users = pd.read_parquet(ws.users_path, columns=["user_id", "event_timestamp"])
    first = users.groupby("user_id")["event_timestamp"].min()
    start = pd.Timestamp(day2, tz="UTC")
    newcomers = first[(first >= start) & (first < start + pd.Timedelta(days=1))].index.to_numpy(np.int64)
    newcomers = rng.choice(newcomers, min(n_new, len(newcomers)), replace=False) if len(newcomers) else newcomers
    unknown = np.arange(10**12, 10**12 + 10, dtype=np.int64)
    pool = np.concatenate([known, newcomers, unknown])
    batches = [rng.choice(pool, batch, replace=False).tolist() for _ in range(n_batches)]
    return pool.tolist(), batches, {"known_users": len(known), "day2_newcomers": len(newcomers), "unknown_users": len(unknown)}


def start_server(ws: Workspace, port: int, workers: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, TWOTOWER_WORKSPACE=str(ws.root))
    with open(log, "wb") as out:
        proc = subprocess.Popen([TWOTOWER, "serve", "--port", str(port), "--workers", str(workers)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_ready(proc, http_ok(f"http://127.0.0.1:{port}/health"), "`twotower serve`", 180, log=log)
    except RuntimeError:
        proc.kill()
        raise
    time.sleep(3.0)  # one worker answers: give the others the same chance to finish loading
    return proc


def pinned_expectations(settings, ws, generation: str, requests, k: int, hours: set[int]) -> dict:
    from serving.online import reader
    from serving.retriever import pinned
    from twotower import feature_store

    read = reader(feature_store.store(settings, ws))
    r = pinned(settings, ws, generation, read)
    try:
        return publish_load.expected(r, requests, k, hours)
    finally:
        r.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="load at least this long")
    parser.add_argument("--publish-at", type=float, default=10.0, help="start `twotower full-update DAY2` after this")
    parser.add_argument("--tail", type=float, default=10.0, help="keep loading at least this long after the flip")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=None, help="keep the base world here (reused by later runs)")
    args = parser.parse_args()

    from twotower.core import generations as gens

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_load_"))
    base, run_ws = root / "base", root / "run"
    rng = np.random.default_rng(args.seed)
    try:
        setup = {"reused": True}
        if not (base / "generations" / gens.POINTER).exists():
            setup = build_base(base, args)
        # Every run publishes into a fresh copy of the base world (the base stays unpublished).
        if run_ws.exists():
            shutil.rmtree(run_ws)
        shutil.copytree(base, run_ws)
        settings = load_settings(workspace=run_ws)
        ws = Workspace(settings.workspace)
        g1 = gens.read_pointer(ws).current
        day2 = max(ws.days())
        assert day2 > gens.load(ws, g1).day, "the base world must have day 2 still to publish"
        pool, batches, pool_info = request_pool(ws, g1, day2, rng, 1500, 100, 50, 8)
        requests = publish_load.build_requests(pool, batches, args.k)

        port = free_port()
        server = start_server(ws, port, args.workers, run_ws / "serve.log")
        try:
            now = time.time()
            hours = {time.gmtime(now).tm_hour, time.gmtime(now + args.seconds + 600).tm_hour}
            t = time.perf_counter()
            before = pinned_expectations(settings, ws, g1, requests, args.k, hours)
            expect_s = time.perf_counter() - t
            print(f"load: {len(requests)} requests ({pool_info}); {args.concurrency} connections, "
                  f"{args.workers} workers; publish at +{args.publish_at:.0f}s", flush=True)  # fmt: skip
            gc.collect()
            gc.freeze()  # the client's own GC pauses are not the server's latency
            load = os.getloadavg()
            run = publish_load.run_load(
                port, requests, concurrency=args.concurrency, publish_cmd=[TWOTOWER, "full-update", day2.isoformat()],
                publish_env=dict(os.environ, TWOTOWER_WORKSPACE=str(ws.root)), pointer=ws.generations_dir / gens.POINTER,
                old_generation=g1, log_path=run_ws / "full_update.log", publish_at=args.publish_at,
                min_seconds=args.seconds, tail_s=args.tail, max_seconds=args.seconds + 600,
            )  # fmt: skip
            load_end = os.getloadavg()
            gc.unfreeze()
        finally:
            server.terminate()
            server.wait(timeout=30)
        g2 = run.new_generation
        after = {g: pinned_expectations(settings, ws, g, requests, args.k, hours | publish_load.hours_of(run))
                 for g in ([g1, g2] if g2 else [g1])}  # fmt: skip
        expect = {g1: [before, after[g1]]} | ({g2: [after[g2]]} if g2 else {})
        checks = publish_load.check(run, requests, g1, g2 or "?", expect)
        stats = publish_load.summary(run, requests)
        paths_new = [p for a in run.answers if a.status == 200 and a.generation == g2 for p in a.paths]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    overall, swap = stats["phases"]["overall"], stats["phases"].get("swap_window", {})
    verdict = {
        "requests": overall["requests"], "errors": overall["errors"], "req_per_s": overall["req_per_s"],
        "p50_ms": overall["p50_ms"], "p99_ms": overall["p99_ms"], "max_ms": overall["max_ms"],
        "swap_window_p50_ms": swap.get("p50_ms"), "swap_window_p99_ms": swap.get("p99_ms"), "swap_window_max_ms": swap.get("max_ms"),
        "flip_to_first_new_generation_answer_s": checks["flip_to_first_new_answer_s"],
        "flip_to_last_old_generation_answer_s": checks["flip_to_last_old_answer_s"],
        "published": run.publish_rc == 0 and g2 is not None,
        "no_mixed_generation": not checks["problems"] and g2 is not None,
    }  # fmt: skip
    print(verdict, flush=True)
    write_result("load", {
        "what": "HTTP recall load while `twotower full-update DAY2` publishes generation 2 (2 uvicorn workers)",
        "verdict": verdict,
        "world": {"users": args.users, "items": args.items, "days": 2, "seed": args.seed, "old": g1, "new": g2,
                  "setup_seconds": setup, "online_store": settings.online_store.type},
        "load": {"concurrency": args.concurrency, "workers": args.workers, "k": args.k, "min_seconds": args.seconds,
                 "publish_at_s": args.publish_at, "tail_s": args.tail, "requests_in_pool": len(requests),
                 "batch_share": round(sum(r.kind == "batch" for r in requests) / len(requests), 3), **pool_info,
                 "expectations_seconds": round(expect_s, 1), "loadavg_before": [round(x, 2) for x in load],
                 "loadavg_after": [round(x, 2) for x in load_end]},  # fmt: skip
        "paths_of_new_generation_answers": {p: paths_new.count(p) for p in set(paths_new)},
        **stats,
        "checks": checks,
        "full_update_log_tail": [line for _, line in run.log if line.startswith(("==", "publish", "serving"))][-12:],
    })


if __name__ == "__main__":
    main()
