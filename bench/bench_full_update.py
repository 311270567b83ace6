"""Full update wall time per step, Annoy build time / size and ANN recall vs exact.

Sizes: ``--size 1M`` (1M events/day, 100k items; default) and ``--size 10M`` (10M events/day,
1M items; target <= 10 min on 2 cores). Two days are simulated; day 1 trains from scratch,
day 2 warm-starts from day 1 (the steady state), and both are timed.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import write_result
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.pipelines.full_update import run
from twotower.research.simulate import simulate
from twotower.core.workspace import Workspace

SIZES = {"1M": (26_000, 100_000), "10M": (260_000, 1_000_000)}


def _ann_vs_exact(ws: Workspace, manifest, queries: int = 200) -> dict:
    from twotower.index.item_index import ItemIndex, exact_topk

    directory = gens.directory(ws, manifest.id) / manifest.paths["index"]
    index = ItemIndex(directory)
    vectors = np.load(directory / "vectors.npy")
    rng = np.random.default_rng(0)
    q = vectors[rng.integers(0, len(vectors), queries)] + 0.1 * rng.normal(size=(queries, vectors.shape[1]))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    t0 = time.perf_counter()
    exact = [exact_topk(vectors, q[i : i + 1], 100)[0] for i in range(queries)]
    exact_s = (time.perf_counter() - t0) / queries
    t0 = time.perf_counter()
    approx = [index.query(q[i], 100)[0] for i in range(queries)]
    ann_s = (time.perf_counter() - t0) / queries
    ids = np.asarray(index.item_ids)
    recall = np.mean([len(set(ids[e]) & set(a)) / 100 for e, a in zip(exact, approx)])
    return {
        "recall@100_vs_exact": round(float(recall), 4),
        "exact_ms_per_query": round(exact_s * 1e3, 3),
        "annoy_ms_per_query": round(ann_s * 1e3, 3),
        "speedup": round(exact_s / ann_s, 1),
        "n_trees": index.meta.n_trees,
        "search_k": index.meta.search_k,
        "build_seconds": round(index.meta.build_seconds, 2),
        "size_mib": round(index.meta.size_bytes / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=sorted(SIZES), default="1M")
    args = parser.parse_args()
    users, items = SIZES[args.size]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(workspace=Path(tmp) / "ws")
        ws = Workspace(settings.workspace)
        sim = simulate(settings, ws, users=users, items=items, days=2, seed=0)
        days = {}
        for day in ws.days():
            t0 = time.perf_counter()
            result = run(settings, ws, day)
            days[str(day)] = {
                "wall_seconds": round(time.perf_counter() - t0, 1),
                "steps_seconds": result.steps,
                "metrics": result.metrics,
                "training": json.loads((gens.directory(ws, result.generation) / "training.json").read_text()),
            }
        index = _ann_vs_exact(ws, gens.current(ws))
    write_result(
        f"full_update_{args.size}",
        {
            "target": "full update of 10M events / 1M items <= 10 min wall on 2 cores",
            "events_per_day": sim.events_per_day,
            "users": sim.users,
            "items": sim.items,
            "days": days,
            "index": index,
        },
    )


if __name__ == "__main__":
    main()
