"""How many Annoy trees: build time, file size, and the search_k / query time each needs.

``index.n_trees`` trades build time and file size (both ~linear in trees) against query time:
more trees give every query more, better-spread candidates, so a lower ``search_k`` reaches the
same recall. For each tree count this builds the index over the same 1M x 64 clustered unit
vectors (as bench_serving's world), tunes ``search_k`` with the platform's own
``choose_search_k`` to recall@100 >= target on tuning queries, then measures recall and latency
on fresh queries at that search_k. The default ``n_trees`` is the one that meets the serving
latency budget at the lowest build cost; this benchmark is the measurement behind it.

    .venv/bin/python -m bench.bench_index_trees [--items 1000000] [--trees 25 50 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


from bench import write_result
from bench.serving_world import catalogue, catalogue_args, query_latency


def main() -> None:
    from twotower.index.item_index import ItemIndex, build, choose_search_k

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    catalogue_args(parser)
    parser.add_argument("--trees", type=int, nargs="+", default=[25, 50, 100])
    args = parser.parse_args()
    ids, vectors, tuning, fresh, truth = catalogue(args)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_trees in args.trees:
            out = Path(tmp) / f"t{n_trees}"
            meta = build(ids, vectors, out, n_trees)
            index = ItemIndex(out)
            t0 = time.perf_counter()
            search_k, trials = choose_search_k(index, vectors, tuning, 100, args.target)
            tuning_s = time.perf_counter() - t0
            measured = query_latency(index, fresh, truth, search_k)  # warms the page cache first
            index.unload()
            run = {
                "n_trees": n_trees, "build_seconds": round(meta.build_seconds, 1),
                "size_mib": round(meta.size_bytes / 2**20, 1), "search_k": search_k,
                "tuning_seconds": round(tuning_s, 1), "recall_at_100_fresh": measured["recall_at_100"],
                "query_p50_ms": measured["p50_ms"], "query_p99_ms": measured["p99_ms"],
                "trials": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in t.items()} for t in trials],
            }  # fmt: skip
            print({k: v for k, v in run.items() if k != "trials"}, flush=True)
            runs.append(run)
            for f in out.iterdir():
                f.unlink()
    write_result(
        "index_trees",
        {"items": args.items, "dim": args.dim, "clusters": args.clusters, "noise": args.noise,
         "target_recall": args.target, "runs": runs},
    )  # fmt: skip


if __name__ == "__main__":
    main()
