"""``twotower demo``: the whole daily cycle, as far as it exists, on a small simulated world.

Idempotent: a world already simulated with the same parameters is reused, every later stage is
itself idempotent.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from typing import Callable

from twotower import feature_store
from twotower.config import Settings
from twotower.simulate import simulate, world_signature
from twotower.workspace import Workspace


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
        echo(f"[1/3] reusing simulated world in {ws.root}")
    else:
        echo(f"[1/3] simulating {sim.days} days: {sim.users} users, {sim.items} items (seed {sim.seed})")
        s = simulate(settings, ws, force=True, log=lambda m: echo("      " + m))
        echo(f"      {s.events:,} events in {s.seconds:.1f}s")

    echo("[2/3] feast apply")
    feature_store.apply(settings, ws)
    last_day = ws.days()[-1]
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=timezone.utc)
    echo(f"[3/3] feast materialize user_profile, item_profile up to {end.isoformat()}")
    feature_store.materialize(settings, ws, end, ["user_profile", "item_profile"])

    store = feature_store.store(settings, ws)
    rows = store.get_online_features(
        features=store.get_feature_service("user_tower_profile"), entity_rows=[{"user_id": 1}]
    ).to_dict()
    echo(f"online profile of user 1: {json.dumps({k: v[0] for k, v in rows.items()})}")
