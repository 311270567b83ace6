"""Benchmark of the data-quality gate: seconds to validate a 100k- and a 1M-event day.

Synthetic offline stores that follow ``twotower.core.schema`` (two days each, so the day-over-day
bands and never-seen shares are computed against a real reference day). The timed call is
``validate_day`` on the second day, end to end: read, derive, stage, GX checkpoint (6 suites)
and data docs. Writes ``bench/results/validation.json``. A benchmark, not a test: it never fails
on speed.

    .venv/bin/python bench/bench_validation.py [--sizes 100000 1000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twotower.core import schema  # noqa: E402
from twotower.research.simulate import tables  # noqa: E402
from twotower.core.config import load_settings  # noqa: E402
from twotower.core.workspace import Workspace  # noqa: E402

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
US_PER_DAY = 86_400_000_000


def _us(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1_000_000


def write_world(ws: Workspace, events_per_day: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = max(1_000, events_per_day // 10), max(500, events_per_day // 40)
    signup = _us(DAY1) - rng.integers(1, 365 * US_PER_DAY, n_users)
    users = pa.table(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int64),
            "age_bucket": rng.integers(0, 7, n_users, dtype=np.int32),
            "gender": rng.integers(0, 3, n_users, dtype=np.int32),
            "city_tier": rng.integers(0, 5, n_users, dtype=np.int32),
            "interest_tags": pa.array([[int(t)] for t in rng.integers(1, 100, n_users)], pa.list_(pa.int32())),
            "activity": np.ones(n_users),
            "signup_date": pa.array(signup, pa.timestamp("us", tz="UTC")).cast(pa.date32()),
            "event_timestamp": pa.array(signup, schema.TS),
        },
        schema=tables.USERS,
    )
    created = _us(DAY1) - rng.integers(1, 30 * US_PER_DAY, n_items)
    items = pa.table(
        {
            "item_id": np.arange(1, n_items + 1, dtype=np.int64),
            "category": rng.integers(0, 16, n_items, dtype=np.int32),
            "tags": pa.array([[int(t)] for t in rng.integers(1, 100, n_items)], pa.list_(pa.int32())),
            "author_id": rng.integers(1, 1_000, n_items),
            "created_at": pa.array(created, schema.TS),
            "event_timestamp": pa.array(created, schema.TS),
        },
        schema=tables.ITEMS,
    )
    ws.offline.mkdir(parents=True, exist_ok=True)
    pq.write_table(users, ws.users_path)
    pq.write_table(items, ws.items_path)
    for k, day in enumerate((DAY1, DAY2)):
        n = events_per_day
        kind = rng.choice(np.array([0, 1, 2], np.int8), n, p=[0.6, 0.1, 0.3])
        table = pa.table(
            {
                "event_id": np.arange(k * n, (k + 1) * n, dtype=np.int64),
                "request_id": np.arange(n, dtype=np.int64) // 12 + k * n,
                "user_id": rng.integers(1, n_users + 1, n),
                "item_id": rng.integers(1, n_items + 1, n),
                "event_type": pa.DictionaryArray.from_arrays(
                    pa.array(kind), pa.array(schema.EVENT_TYPES)
                ).cast(pa.string()),
                "position": np.where(kind == 2, -1, rng.integers(0, 8, n)).astype(np.int32),
                "event_timestamp": pa.array(np.sort(_us(day) + rng.integers(0, US_PER_DAY, n)), schema.TS),
            },
            schema=schema.EVENTS,
        )
        out = ws.events_day_dir(day)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / "part-00000.parquet", row_group_size=1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per size (best is reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "validation.json")
    args = parser.parse_args()

    t0 = time.perf_counter()
    from validation.gate import validate_day  # imports GX

    import_s = time.perf_counter() - t0
    results = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
            ws = Workspace(Path(tmp))
            t = time.perf_counter()
            write_world(ws, size)
            gen_s = time.perf_counter() - t
            settings = load_settings(workspace=ws.root)
            from twotower import feature_store

            spec = feature_store.read_spec(settings, ws)  # the package repo's towers, sources in ws
            t = time.perf_counter()
            first = validate_day(settings, ws, DAY1, spec)  # first day: also builds the GX project
            first_s = time.perf_counter() - t
            runs, phases = [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                report = validate_day(settings, ws, DAY2, spec)
                runs.append(time.perf_counter() - t)
                phases.append(json.loads(report.summary_path.read_text())["seconds"])
            best = int(np.argmin(runs))
            row = {
                "events": size,
                "first_day_seconds": round(first_s, 3),
                "day_seconds_best": round(runs[best], 3),
                "day_seconds_all": [round(r, 3) for r in runs],
                "phases_of_best": phases[best],
                "events_per_second": round(size / runs[best]),
                "passed": bool(first.success and report.success),
                "expectations": report.evaluated,
                "generate_seconds": round(gen_s, 3),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    out = {
        "benchmark": "validation",
        "what": "validate_day on the 2nd day of a synthetic store: read, derive, 6 GX suites, data docs",
        "gx_import_seconds": round(import_s, 3),
        "results": results,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
