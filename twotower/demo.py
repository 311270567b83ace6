"""``twotower demo``: the whole daily cycle on a small simulated world, then a recall.

Idempotent: a world already simulated with the same parameters is reused and days already
published are skipped (each stage is itself resumable), so a second run is quick.
"""

from __future__ import annotations

import json
from typing import Callable

from twotower import generations as gens
from twotower.config import Settings
from twotower.full_update import run as full_update
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
        echo(f"[1/3] reusing the simulated world in {ws.root}")
    else:
        echo(f"[1/3] simulating {sim.days} days: {sim.users} users, {sim.items} items (seed {sim.seed})")
        s = simulate(settings, ws, force=True, log=lambda m: echo("      " + m))
        echo(f"      {s.events:,} events in {s.seconds:.1f}s")

    days = ws.days()
    echo(f"[2/3] nightly full update of each day: {', '.join(map(str, days))}")
    for day in days:
        served = gens.current(ws)
        if served is not None and served.day >= day:
            echo(f"      {day}: already published ({served.id if served.day == day else 'older than served'})")
            continue
        result = full_update(settings, ws, day, log=lambda m: echo("      " + m))
        echo(f"      {day}: serving {result.generation}")

    echo("[3/3] generations")
    current = gens.current(ws)
    for m in gens.listing(ws):
        echo("      " + gens.describe(m, current is not None and m.id == current.id))
