"""``twotower demo``: the whole daily cycle on a small simulated world, then a recall.

Idempotent: a world already simulated with the same parameters is reused and days already
published are skipped (each stage is itself resumable), so a second run is quick.
"""

from __future__ import annotations

import json
from typing import Callable

from twotower.core.timeutil import US_PER_HOUR, day_start_us
from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.pipelines.full_update import run as full_update
from twotower.research.simulate import simulate, world_signature
from twotower.core.workspace import Workspace


def _world_ready(settings: Settings, ws: Workspace) -> bool:
    meta = ws.truth_dir / "meta.json"
    if not meta.exists() or not ws.users_path.exists():
        return False
    sim = settings.simulator
    wanted = world_signature(settings, sim.users, sim.items, sim.days, sim.seed)
    return json.loads(meta.read_text()).get("signature") == wanted


def run(settings: Settings, ws: Workspace, echo: Callable[[str], None] = print) -> None:
    sim = settings.simulator
    if _world_ready(settings, ws):
        echo(f"[1/3] reusing the simulated world in {ws.root}")
    else:
        echo(f"[1/3] simulating {sim.days} days: {sim.users} users, {sim.items} items (seed {sim.seed})")
        s = simulate(settings, ws, force=True)
        echo(f"      {s.events:,} events in {s.seconds:.1f}s")

    days = ws.days()
    echo(f"[2/3] nightly full update of each day: {', '.join(map(str, days))}")
    for day in days:
        served = gens.current(ws)
        if served is not None and served.day >= day:
            echo(f"      {day}: already published ({served.id if served.day == day else 'older than served'})")
            continue
        result = full_update(settings, ws, day)
        echo(f"      {day}: serving {result.generation}")

    echo("[3/4] generations")
    current = gens.current(ws)
    for m in gens.listing(ws):
        echo("      " + gens.describe(m, current is not None and m.id == current.id))

    echo("[4/4] recall: user ID -> Feast online features -> user tower -> Annoy top-k")
    show_recall(settings, ws, echo)


def show_recall(settings: Settings, ws: Workspace, echo: Callable[[str], None], k: int = 10) -> None:
    """A served result for an active user, read against what the simulator knows they like."""
    import numpy as np
    import pandas as pd

    from serving.retriever import Retriever
    from twotower.research.simulate import Truth

    events = pd.read_parquet(ws.events_day_dir(ws.days()[-1]), columns=["user_id", "event_type"])
    user = int(events.loc[events.event_type == "click", "user_id"].value_counts().index[0])
    category = pd.read_parquet(ws.items_path, columns=["item_id", "category"]).set_index("item_id")["category"]
    retriever = Retriever.open(settings, ws)
    try:
        result = retriever.recall(user, k=k, hour=12)
        newcomer = retriever.recall(10**12, k=k)  # an ID nobody has seen: still served
    finally:
        retriever.close()
    noon = day_start_us(ws.days()[-1]) + 12 * US_PER_HOUR
    liked = Truth(ws.truth_dir).preference(np.array([user]), np.array([noon]))[0]
    top3 = set(np.argsort(-liked)[:3].tolist())
    cats = [int(category.get(i, -1)) for i in result.item_ids]
    hits = sum(c in top3 for c in cats)
    echo(f"      user {user} at noon, generation {result.generation}, path {result.path}:")
    echo(f"      true favourite categories (simulator ground truth): {sorted(top3)}")
    for item, score, cat in zip(result.item_ids.tolist(), result.scores.tolist(), cats):
        echo(f"        item {item:>6}  category {cat:>2}  cosine {score:+.3f}{'  *' if cat in top3 else ''}")
    echo(f"      {hits}/{k} recalled items are in the user's favourite categories (* above)")
    echo(f"      an unknown user ID is served too: path {newcomer.path}, {len(newcomer.item_ids)} items")
