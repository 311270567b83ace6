"""Annoy vs Milvus (Lite) vs exact numpy on the same catalogue, in one run.

The same clustered unit vectors as bench_serving's world; each backend is built by the
platform's own code (``index.shard_build.build_index`` with ``index.backend`` annoy or milvus)
and its search parameter tuned by ``choose_search_k`` to recall@100 >= target on tuning queries;
then recall@100, p50 / p99 of one top-100 query and build seconds are measured on fresh
queries, with the memory each needs (Annoy: the file it maps; Milvus Lite: the server's RSS
growth; exact: the vectors). Milvus runs as ``milvus-lite server`` on loopback, as in the tests.

    .venv/bin/python -m bench.bench_index_backends [--items 1000000] [--queries 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import write_result
from bench.local_servers import milvus_lite_server
from bench.serving_world import catalogue, catalogue_args, query_latency


def _rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def main() -> None:
    from twotower.core.sections import IndexSettings
    from twotower.index.item_index import choose_search_k, exact_topk
    from twotower.index.shard_build import build_index
    from twotower.index.sharded_index import open_index

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    catalogue_args(parser)
    args = parser.parse_args()
    ids, vectors, tuning, fresh, truth = catalogue(args)
    out: dict = {}

    latency = []
    for q in fresh:
        t0 = time.perf_counter()
        exact_topk(vectors, q[None, :], 100)
        latency.append(time.perf_counter() - t0)
    lat = np.asarray(latency) * 1e3
    out["exact"] = {"recall_at_100": 1.0, "p50_ms": round(float(np.percentile(lat, 50)), 3),
                    "p99_ms": round(float(np.percentile(lat, 99)), 3), "build_seconds": 0.0,
                    "mib": round(vectors.nbytes / 2**20, 1)}  # fmt: skip
    print("exact", out["exact"], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        meta = build_index(ids, vectors, tmp / "annoy", IndexSettings(), client=lambda: None)
        build_s = time.perf_counter() - t0
        index = open_index(tmp / "annoy")
        knob, _ = choose_search_k(index, vectors, tuning, 100, args.target)
        out["annoy"] = {**query_latency(index, fresh, truth, knob), "build_seconds": round(build_s, 1),
                        "mib": round(meta["size_bytes"] / 2**20, 1), "search_k": knob}  # fmt: skip
        index.unload()
        print("annoy", out["annoy"], flush=True)

        from distributed import Client, LocalCluster

        with milvus_lite_server(tmp / "milvus") as (uri, proc), \
                LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster, Client(cluster) as dask:
            before = _rss(proc.pid)
            settings = IndexSettings(backend="milvus", milvus_uri=uri, milvus_timeout_s=30)
            t0 = time.perf_counter()
            build_index(ids, vectors, tmp / "milvus_index", settings, client=lambda: dask)
            build_s = time.perf_counter() - t0
            index = open_index(tmp / "milvus_index")
            knob, _ = choose_search_k(index, vectors, tuning[:100], 100, args.target)
            out["milvus_lite"] = {**query_latency(index, fresh[:100], truth[:100], knob, warm=10), "build_seconds": round(build_s, 1),
                                  "mib": round((_rss(proc.pid) - before) / 2**20, 1), "ef": knob,
                                  "index_type": settings.milvus_index_type}  # fmt: skip
            index.unload()
            print("milvus_lite", out["milvus_lite"], flush=True)
    write_result(
        "index_backends",
        {"items": args.items, "dim": args.dim, "target_recall": args.target, "queries": args.queries,
         "note": "milvus_lite is measured on the first 100 fresh queries (tens of ms each)", "backends": out},
    )  # fmt: skip


if __name__ == "__main__":
    main()
