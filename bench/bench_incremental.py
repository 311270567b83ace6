"""Intraday incremental update: event -> served user vector latency, and sustained events/s.

A simulated world is published by a real full update of day 1 (g1). Then, on the embedded
defaults (file event log, Feast SQLite online store):

* **Throughput.** Day 2 is replayed onto the stream and ``twotower incremental`` drains it
  (micro-batches of ``incremental.max_events``): entries/s while a backlog exists is the rate
  the updater keeps up with. Measured in-process, model load and chain start included.
* **Latency.** ``twotower incremental --follow --batch-seconds 2`` runs as its own process.
  This process plays live traffic onto the stream (day 2's requests re-stamped to *now*, at
  each of ``RATES`` events/s) and, twice a second, a probe: a user (never in the background traffic)
  clicks one item now. It then polls the online store - the rows serving reads for the next
  request - until that user's embedding is stamped with a second >= the click's. Latency =
  that moment minus the click's event time. The updater's own freshness file is reported too.

Targets (DESIGN): p95 event -> updated user vector served <= 10 s, on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from bench import write_result
from bench.follower import follower

CORES = 2
WORLD = dict(users=5_000, items=2_000, days=2, seed=0)
RATES = (1_000, 4_000)  # background events/s of the latency runs (the second near capacity)
DURATION = 45.0  # seconds of live traffic per rate
PROBE_EVERY = 0.5
BATCH_SECONDS = 2.0
TARGET_P95 = 10.0
S = 1_000_000


def _pin_cores() -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > CORES:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:CORES])


def build(root: Path):
    from twotower.pipelines import full_update
    from twotower.core.config import load_settings
    from twotower.research.simulate import simulate
    from twotower.core.workspace import Workspace

    settings = load_settings(workspace=root)
    ws = Workspace(settings.workspace)
    simulate(settings, ws, **WORLD)
    started = time.perf_counter()
    result = full_update.run(settings, ws, ws.days()[0])
    print(f"full update of {ws.days()[0]}: {result.generation} in {time.perf_counter() - started:.0f}s", flush=True)
    return settings, ws


def copy(ws, target: Path):
    from twotower import feature_store
    from twotower.core.config import load_settings
    from twotower.core.workspace import Workspace

    shutil.copytree(ws.root, target)
    settings = load_settings(workspace=target)
    copy_ws = Workspace(settings.workspace)
    feature_store.prepare(settings, copy_ws)
    return settings, copy_ws


def throughput(ws0, root: Path) -> dict:
    from twotower.pipelines.incremental import run
    from twotower.stream.emit import emit_day

    settings, ws = copy(ws0, root)
    emitted = emit_day(settings, ws, ws.days()[1])
    cpu0 = time.process_time()
    summary = run(settings, ws)
    cpu = time.process_time() - cpu0
    t = summary.totals
    out = {
        "events": t.entries, "clicks_trained": t.trained_clicks, "micro_batches": t.batches,
        "max_events_per_batch": settings.incremental.max_events, "users_pushed": t.pushed_users,
        "seconds": round(summary.seconds, 2), "events_per_second": round(summary.entries_per_second),
        "cpu_seconds": round(cpu, 2), "events_per_cpu_second": round(t.entries / cpu) if cpu else None,
        "append_to_visible_p95_s": summary.freshness["append_to_visible_seconds"]["p95"],
    }  # fmt: skip
    assert emitted.events == t.entries
    print("throughput", out, flush=True)
    return out


class Traffic:
    """Day 2's requests re-stamped to now, in order, cycling; probe users left out."""

    def __init__(self, events: pd.DataFrame, exclude: np.ndarray):
        self.events = events.loc[~events["user_id"].isin(exclude)].reset_index(drop=True)
        self.cursor = 0
        self.cycle = 0
        self.next_id = 9 * 10**17

    def take(self, n: int, now: datetime) -> pd.DataFrame:
        parts = []
        while n > 0:
            part = self.events.iloc[self.cursor : self.cursor + n]
            parts.append(part.assign(request_id=part["request_id"] + self.cycle * 10**13))
            n -= len(part)
            self.cursor += len(part)
            if self.cursor >= len(self.events):
                self.cursor, self.cycle = 0, self.cycle + 1
        out = pd.concat(parts, ignore_index=True)
        out["event_id"] = np.arange(self.next_id, self.next_id + len(out), dtype=np.int64)
        self.next_id += len(out)
        out["event_timestamp"] = pd.Timestamp(now)
        return out


def _probe(stream, online, traffic, probes, items, categories, rng, rate: int, slot: int):
    """Live traffic at ``rate`` events/s plus a probe click every PROBE_EVERY seconds; returns
    (latencies of the probes seen, probes never seen) once all are seen or time is up."""
    from twotower.research.simulate.clicks import user_click_events

    pending: dict[int, int] = {}  # probe user -> click time (us)
    latencies: list[float] = []
    produced = 0
    started = time.time()
    next_probe = started
    p = 0
    while True:
        now = time.time()
        if now - started < DURATION:
            n = int(rate * (now - started)) - produced
            if n > 0:
                stream.append(traffic.take(n, datetime.now(timezone.utc)))
                produced += n
            if now >= next_probe:
                user = int(probes[p])
                p += 1
                click_now = datetime.now(timezone.utc)
                ev = user_click_events(user, int(rng.choice(categories)), 1, items, click_now,
                                       impressions=8, ranked_out=4, seed=p)  # fmt: skip
                stream.append(ev)
                pending[user] = int(pd.Timestamp(ev.loc[ev.event_type == "click", "event_timestamp"].max()).value // 1000)
                next_probe += PROBE_EVERY
        elif not pending or now - started > DURATION + 60:
            break
        if pending:
            users = np.fromiter(pending, dtype=np.int64)
            rows = online.read(users, slot)
            seen = time.time()
            for u, stamp in zip(rows["user_id"].tolist(), rows["event_us"].tolist()):
                if stamp // S >= pending[u] // S:
                    latencies.append(seen - pending.pop(u) / 1e6)
        time.sleep(0.05)
    return latencies, pending


def latency(ws0, root: Path, rate: int) -> dict:
    from twotower.core import generations as gens
    from twotower.pipelines.incremental.push import OnlineEmbeddings
    from twotower.stream import open_stream

    settings, ws = copy(ws0, root)
    g1 = gens.current(ws)
    rng = np.random.default_rng(0)
    table = pd.read_parquet(gens.directory(ws, g1.id) / "user_id_embedding.parquet")
    probes = rng.permutation(table["user_id"].to_numpy(np.int64))[: int(DURATION / PROBE_EVERY) + 50]
    items = pd.read_parquet(ws.items_path, columns=["item_id", "category", "event_timestamp"])
    categories = items["category"].value_counts()
    categories = categories[categories >= 5].index.to_numpy()
    traffic = Traffic(pd.read_parquet(ws.events_day_dir(ws.days()[1])), probes)
    stream = open_stream(settings, ws)
    online = OnlineEmbeddings(settings, ws)

    with follower(ws.root, "--batch-seconds", str(BATCH_SECONDS)) as lines:
        latencies, pending = _probe(stream, online, traffic, probes, items, categories, rng, rate, g1.embedding_slot)
    fresh = json.loads((ws.stream_dir / "freshness.json").read_text())
    lat = np.array(latencies)
    out = {
        "background_events_per_second": rate, "seconds_of_traffic": DURATION, "batch_seconds": BATCH_SECONDS,
        "probes": len(lat) + len(pending), "probes_seen": len(lat), "probes_never_seen": len(pending),
        "event_to_served_vector_s": {
            "p50": round(float(np.percentile(lat, 50)), 3), "p95": round(float(np.percentile(lat, 95)), 3),
            "p99": round(float(np.percentile(lat, 99)), 3), "max": round(float(lat.max()), 3),
            "mean": round(float(lat.mean()), 3),
        },
        "updater_freshness_file": {"append_to_visible_seconds": fresh["window"]["append_to_visible_seconds"],
                                   "event_to_visible_seconds": fresh["window"]["event_to_visible_seconds"],
                                   "totals": fresh["totals"], "lag_events_at_end": fresh["stream"]["lag_events"]},
        "updater_log_tail": [line.rstrip() for line in lines[-4:]],
    }  # fmt: skip
    print("latency at", rate, "events/s", json.dumps(out["event_to_served_vector_s"]), flush=True)
    return out


def main() -> None:
    _pin_cores()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings, ws = build(tmp / "world")
        load_before = os.getloadavg()
        drain = throughput(ws, tmp / "throughput")
        live = {str(rate): latency(ws, tmp / f"latency-{rate}", rate) for rate in RATES}
        p95 = max(run["event_to_served_vector_s"]["p95"] for run in live.values())
        write_result("incremental", {
            "target": f"event -> updated user vector served p95 <= {TARGET_P95:.0f} s on {CORES} cores",
            "met": bool(p95 <= TARGET_P95),
            "world": WORLD, "stack": {"stream": settings.stream.type, "online_store": settings.online_store.type},
            "settings": settings.incremental.model_dump(),
            "sustained": drain, "latency_by_background_rate": live,
            "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        })  # fmt: skip


if __name__ == "__main__":
    main()
