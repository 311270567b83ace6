"""A new interest served within seconds: the seed's headline, measured on the real path.

Protocol (the personalisation issue's): the default simulated world (``simulator`` settings, the
world ``twotower demo`` builds) published by a real full update of each day. Then **20 random
pairs** (active user, category that user never clicked in any day), drawn by ``PAIR_SEED``
from the users who clicked on the last day and have an ID embedding of the served generation:

1. ``recall(user, 50)`` before: the category's share of the top-50 (Feast online read + user
   tower + Annoy, the served path);
2. ``twotower incremental --follow`` runs as its own process; each user clicks 10 items of
   their category (``twotower emit --user U --category C --count 10``, all 20 users at once);
3. event -> served seconds: the online store is polled until each user's ID embedding is
   stamped with their newest click (what the next request reads);
4. the updater is stopped and ``recall(user, 50)`` is asked again.

Targets (issue): the share rises for >= 18 of 20 pairs, median >= 10 of 50 afterwards.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import write_result
from bench.follower import follower

PAIRS, CLICKS, K = 20, 10, 50
PAIR_SEED = 0
S = 1_000_000


def build(root: Path):
    from twotower.pipelines import full_update
    from twotower.core.config import load_settings
    from twotower.research.simulate import simulate
    from twotower.core.workspace import Workspace

    settings = load_settings(workspace=root)
    ws = Workspace(settings.workspace)
    simulate(settings, ws)
    for day in ws.days():
        started = time.perf_counter()
        result = full_update.run(settings, ws, day)
        print(f"full update of {day}: {result.generation} in {time.perf_counter() - started:.0f}s", flush=True)
    return settings, ws


def draw_pairs(ws, generation) -> list[tuple[int, int]]:
    from twotower.core import generations as gens

    clicks = pd.concat(
        pd.read_parquet(ws.events_day_dir(d), columns=["user_id", "item_id", "event_type"]).query("event_type == 'click'")
        for d in ws.days()
    )
    category = pd.read_parquet(ws.items_path, columns=["item_id", "category"]).drop_duplicates("item_id", keep="last")
    clicks = clicks.merge(category, on="item_id")
    embedded = pd.read_parquet(gens.directory(ws, generation.id) / generation.paths["user_id_embedding"])["user_id"]
    last_day = pd.read_parquet(ws.events_day_dir(ws.days()[-1]), columns=["user_id", "event_type"])
    active = np.intersect1d(last_day.loc[last_day.event_type == "click", "user_id"].unique(), embedded.to_numpy())
    categories = np.sort(category["category"].unique())
    seen = clicks.groupby("user_id")["category"].agg(set)
    rng = np.random.default_rng(PAIR_SEED)
    pairs = []
    for user in rng.permutation(active):
        fresh = [c for c in categories if c not in seen.get(user, set())]
        if fresh:
            pairs.append((int(user), int(rng.choice(fresh))))
        if len(pairs) == PAIRS:
            break
    return pairs


def shares(settings, ws, pairs, hour: int) -> list[tuple[int, str]]:
    from serving.retriever import Retriever

    category = pd.read_parquet(ws.items_path, columns=["item_id", "category"]).drop_duplicates("item_id", keep="last")
    category = category.set_index("item_id")["category"]
    retriever = Retriever.open(settings, ws)
    try:
        out = []
        for user, c in pairs:
            result = retriever.recall(user, K, hour=hour)
            out.append((int((category.reindex(result.item_ids).to_numpy() == c).sum()), result.path))
        return out
    finally:
        retriever.close()


def follow_and_click(settings, ws, generation, pairs) -> dict:
    from twotower.pipelines.incremental.push import OnlineEmbeddings
    from twotower.research.simulate.clicks import emit_user

    with follower(ws.root):
        pending = {}
        for i, (user, c) in enumerate(pairs):
            emitted = emit_user(settings, ws, user, c, count=CLICKS, seed=i)
            pending[user] = int(pd.Timestamp(emitted.last_event).value // 1000)
        online = OnlineEmbeddings(settings, ws)
        latencies, deadline = [], time.time() + 120
        while pending and time.time() < deadline:
            rows = online.read(np.fromiter(pending, dtype=np.int64), generation.embedding_slot)
            seen = time.time()
            for u, stamp in zip(rows["user_id"].tolist(), rows["event_us"].tolist()):
                if stamp // S >= pending[u] // S:
                    latencies.append(seen - pending.pop(u) / 1e6)
            time.sleep(0.05)
    lat = np.array(latencies)
    return {
        "users_seen": len(lat), "users_never_seen": len(pending),
        "event_to_served_s": {q: round(float(np.percentile(lat, p)), 3) for q, p in (("p50", 50), ("p95", 95), ("max", 100))}
        if len(lat) else {},
    }


def main() -> None:
    from twotower.core import generations as gens

    with tempfile.TemporaryDirectory() as tmp:
        settings, ws = build(Path(tmp) / "world")
        served = gens.current(ws)
        pairs = draw_pairs(ws, served)
        hour = time.gmtime().tm_hour  # the clicks' hour too: emitted now
        before = shares(settings, ws, pairs, hour)
        freshness = follow_and_click(settings, ws, served, pairs)
        after = shares(settings, ws, pairs, time.gmtime().tm_hour)
        rows = [
            {"user_id": u, "category": c, "share_before": b, "share_after": a, "path_after": p}
            for (u, c), (b, _), (a, p) in zip(pairs, before, after)
        ]
        rose = sum(r["share_after"] > r["share_before"] for r in rows)
        median = float(np.median([r["share_after"] for r in rows]))
        print(f"{'user':>8} {'category':>8} {'before':>6} {'after':>6}")
        for r in rows:
            print(f"{r['user_id']:>8} {r['category']:>8} {r['share_before']:>6} {r['share_after']:>6}")
        print(f"share of top-{K} rose for {rose}/{len(rows)} pairs; median after {median:g}/{K}; "
              f"event -> served {freshness['event_to_served_s']}", flush=True)  # fmt: skip
        write_result("new_interest", {
            "protocol": f"{PAIRS} random (active user, never-clicked category) pairs (seed {PAIR_SEED}), "
                        f"{CLICKS} clicks each, one incremental update (--follow), top-{K} via the served path",
            "target": f"share rises for >= 18 of {PAIRS}; median share after >= 10 of {K}",
            "met": bool(rose >= 18 and median >= 10),
            "world": settings.simulator.model_dump(mode="json"), "generation": served.id,
            "generations": {m.id: {k: m.metrics.get(k) for k in (
                "recall@100", "parent_recall@100", "user_id_rms_over_init", "id_swap_cosine")} for m in gens.listing(ws)},
            "id_diagnostics": {k: served.metrics.get(k) for k in ("user_id_rms_over_init", "item_id_rms_over_init", "id_swap_cosine")},
            "model": {k: getattr(settings.model, k) for k in (
                "learning_rate", "id_optimizer", "id_learning_rate", "id_initial_accumulator", "id_init_scale",
                "incremental_learning_rate", "incremental_initial_accumulator")},
            "rose": rose, "median_share_after": median, "median_share_before": float(np.median([r["share_before"] for r in rows])),
            "freshness": freshness, "pairs": rows,
        })  # fmt: skip


if __name__ == "__main__":
    main()
