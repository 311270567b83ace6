"""Benchmark: ``twotower ingest`` of 1M events (CSV and parquet) plus 100k users, 50k items.

Target (docs/data-schema.md): a million events ingest in seconds on 2 cores. Not a test: writes
``bench/results/ingest.json``. Run: ``make bench`` or ``.venv/bin/python -m bench.bench_ingest [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from twotower import feature_store
from twotower.core.config import Settings
from twotower.ingest.job import ingest
from twotower.core.workspace import Workspace


def spec_at(ws: Workspace):
    return feature_store.read_spec(Settings(workspace=ws.root), ws)


def make_inputs(folder: Path, n_events: int, n_users: int, n_items: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({
        "user_id": np.arange(n_users),
        "age_bucket": rng.integers(0, 7, n_users),
        "gender": rng.integers(0, 3, n_users),
        "city_tier": rng.integers(0, 5, n_users),
        "interest_tags": ["|".join(map(str, rng.integers(1, 100, 3))) for _ in range(n_users)],
        "signup_date": "2026-01-01",
    })
    items = pd.DataFrame({
        "item_id": np.arange(n_items),
        "category": rng.integers(0, 16, n_items),
        "tags": ["|".join(map(str, rng.integers(1, 100, 2))) for _ in range(n_items)],
        "author_id": rng.integers(0, 1000, n_items),
        "created_at": "2026-10-01T00:00:00Z",
    })
    start = np.datetime64("2026-11-01T00:00:00", "s")
    ts = start + rng.integers(0, 3 * 86400, n_events).astype("timedelta64[s]")
    events = pd.DataFrame({
        "user_id": rng.integers(0, n_users, n_events),
        "item_id": rng.integers(0, n_items, n_events),
        "event_type": rng.choice(["impression", "click", "ranked_out"], n_events),
        "event_timestamp": np.char.add(ts.astype(str), "Z"),
        "request_id": rng.integers(0, n_events // 8, n_events),
    })
    for name, df in (("users", users), ("items", items), ("events", events)):
        df.to_csv(folder / f"{name}.csv", index=False)
        df.to_parquet(folder / f"{name}.parquet", index=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=50_000)
    args = ap.parse_args()
    results: dict[str, object] = {"events": args.events, "users": args.users, "items": args.items}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_inputs(folder, args.events, args.users, args.items)
        for fmt in ("csv", "parquet"):
            ws = Workspace(folder / f"ws-{fmt}")
            paths = {k: folder / f"{k}.{fmt}" for k in ("events", "users", "items")}
            t0 = time.perf_counter()
            first = ingest(Settings(), ws, spec_at(ws), **paths)
            t1 = time.perf_counter()
            ingest(Settings(), ws, spec_at(ws), **paths)  # re-ingest: upsert + replace the same days
            t2 = time.perf_counter()
            results[f"{fmt}_first_s"] = round(t1 - t0, 3)
            results[f"{fmt}_reingest_s"] = round(t2 - t1, 3)
            results[f"{fmt}_days"] = len(first.days)
            print(f"{fmt}: first {t1 - t0:.2f} s, re-ingest {t2 - t1:.2f} s")
    out = Path(__file__).parent / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
