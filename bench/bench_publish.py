"""Benchmark: a publish's user ID embeddings into Feast's SQLite and Redis online stores.

What the full update's publish step does with a generation's table: ``write_offline`` (the
generation's parquet file, the Feast view's batch source) then ``write_online`` (batches of
``online_store.write_batch_rows`` through the online store's ``online_write_batch``). Measured
at ``--users`` (default 1M, 32-d) on both stores, each into a fresh workspace; then the path
it replaced, ``feast materialize`` of the same rows (Dask offline read, Feast's row-by-row
conversion, the same batch write), on ``--materialize-users`` (default 100k) for the ratio.

Writes ``bench/results/publish.json``. A benchmark: it reports, never fails on speed.

    .venv/bin/python -m bench publish
    .venv/bin/python -m bench.bench_publish [--users 1000000] [--materialize-users 100000]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import serving_world, write_result  # noqa: E402
from bench.local_servers import redis_server  # noqa: E402
from twotower.adapters import dask_tokens  # noqa: E402,F401  (as the full update has it)
from twotower.core.config import load_settings  # noqa: E402
from twotower.core.logs import printed_as_log  # noqa: E402
from twotower.core.workspace import Workspace  # noqa: E402


def workspace(root: Path, store: str, port: int | None, users: int):
    from twotower import feature_store

    online = {}
    if store == "redis":
        import redis

        redis.Redis(port=port).flushall()  # every run writes into an empty store
        online = {"type": "redis", "redis_port": port}
    settings = load_settings(workspace=root, online_store=online)
    ws = Workspace(settings.workspace)
    serving_world.write_offline_store(ws, 1000, 100, np.random.default_rng(0))
    feature_store.apply(settings, ws)
    return settings, ws


def one(root: Path, store: str, port: int | None, users: int, dim: int, how: str) -> dict:
    from materialize.user_embeddings import write_offline, write_online
    from twotower import feature_store

    settings, ws = workspace(root, store, port, users)
    emb = np.random.default_rng(1).standard_normal((users, dim), dtype=np.float32)
    table = pd.DataFrame({"user_id": np.arange(1, users + 1), "embedding": list(emb)})
    t = time.perf_counter()
    write_offline(ws, table, serving_world.GENERATION, 0, serving_world.AS_OF)
    offline_s = time.perf_counter() - t
    t = time.perf_counter()
    if how == "write_online":
        write_online(settings, ws, serving_world.GENERATION)
    else:
        with printed_as_log("feast"):
            feature_store.store(settings, ws).materialize(
                start_date=serving_world.AS_OF, end_date=serving_world.AS_OF + timedelta(seconds=1),
                feature_views=["user_id_embedding"],
            )  # fmt: skip
    online_s = time.perf_counter() - t
    # Spot check: the last user's row is there.
    row = feature_store.store(settings, ws).get_online_features(
        features=["user_id_embedding:embedding"], entity_rows=[{"user_id": users, "embedding_slot": 0}]
    ).to_dict()["embedding"][0]
    assert np.allclose(row, emb[-1]), f"{store}/{how}: user {users}'s row did not land"
    r = {"store": store, "path": how, "users": users, "offline_seconds": round(offline_s, 2),
         "online_seconds": round(online_s, 2), "users_per_s": round(users / online_s)}  # fmt: skip
    print(f"{store:6s} {how:12s} {users:>9,} users: offline {offline_s:6.1f} s, online {online_s:6.1f} s "
          f"({r['users_per_s']:,}/s)", flush=True)  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--materialize-users", type=int, default=100_000, help="0: skip the feast materialize rows")
    parser.add_argument("--dim", type=int, default=32)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_publish_"))
    runs = []
    try:
        with redis_server() as (port, _proc):
            for store in ("sqlite", "redis"):
                runs.append(one(root / f"{store}-bulk", store, port, args.users, args.dim, "write_online"))
                if args.materialize_users:
                    for how in ("write_online", "materialize"):
                        runs.append(one(root / f"{store}-{how}", store, port, args.materialize_users, args.dim, how))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratios = {}
    for store in ("sqlite", "redis"):
        small = {r["path"]: r["online_seconds"] for r in runs if r["store"] == store and r["users"] == args.materialize_users}
        if len(small) == 2:
            ratios[store] = round(small["materialize"] / small["write_online"], 2)
    out = write_result("publish", {
        "what": "a publish's user ID embeddings into the online store: write_online (batched online_write_batch) "
                "vs feast materialize of the same rows",
        "dim": args.dim, "runs": runs, "materialize_over_write_online": ratios,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    })  # fmt: skip
    print(f"materialize / write_online: {ratios}; wrote {out}")


if __name__ == "__main__":
    main()
