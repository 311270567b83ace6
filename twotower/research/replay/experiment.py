"""One seed's replay: the days of a world, step by step on a simulated clock.

For each measured day (2..N) and each step of the day (``step_minutes``):

1. every strategy's channel ranks the clicks of the *next* step (``channel.ranks``), the
   oracle ranks them too;
2. the incremental chains then train on those same clicks (time order), so the next step is
   measured with a model that has seen everything up to its start - the seed's pipeline with
   a publish every step.

At midnight: the full lineages train on the day that just ended, the chains start over
(full + incremental) or carry on (incremental only), and every strategy rebuilds its item
index from its model. Returns one row per measured click with every strategy's rank: all
aggregation happens later (``metrics``), from that table alone.
"""

from __future__ import annotations

import logging
import time


import numpy as np
import pandas as pd

from twotower.core.config import Settings
from twotower.research.replay.channel import MidnightVectors, oracle_ranks, ranks
from twotower.research.replay.models import Chain, full_update, grown
from twotower.research.replay.strategies import KEYS, ORACLE
from twotower.research.replay.world import World, new_interest_of, step_bounds
from twotower.research.replay.world import rows as rows_of

logger = logging.getLogger(__name__)


def replay_seed(
    settings: Settings, world: World, *, seed: int, step_minutes: int,
) -> tuple[pd.DataFrame, dict]:
    """(per-click ranks of every strategy and the oracle, training log)."""
    if len(world.days) < 2:
        raise ValueError("the replay needs at least 2 days (day 1 only bootstraps the models)")
    training: dict[str, list] = {"full": [], "time_ordered": [], "seconds": {}}
    clock = time.perf_counter()
    first = world.days[0]
    full, loss = full_update(settings, world.spec, first, None, ordered=False, seed=seed)
    training["full"].append({"day": first.day.isoformat(), "loss": loss})
    ordered, loss = full_update(settings, world.spec, first, None, ordered=True, seed=seed)
    training["time_ordered"].append({"day": first.day.isoformat(), "loss": loss})
    day_one, carried = full, None
    out: list[pd.DataFrame] = []
    train_s = eval_s = 0.0
    for n, (prev, day) in enumerate(zip(world.days, world.days[1:])):
        t0 = time.perf_counter()
        if n > 0:  # midnight: the full lineages train on the day that just ended
            full, loss = full_update(settings, world.spec, prev, full, ordered=False, seed=seed + n)
            training["full"].append({"day": prev.day.isoformat(), "loss": loss})
            ordered, loss = full_update(settings, world.spec, prev, ordered, ordered=True, seed=seed + n)
            training["time_ordered"].append({"day": prev.day.isoformat(), "loss": loss})
        # Both chains draw the same random negatives: on the first measured day they start from the
        # same model and see the same clicks, so they are the same chain (no noise between them).
        chain = Chain(grown(full, settings, day.user_ids, full.catalog), settings, seed + 100 + n)
        base = carried.model if carried is not None else full
        carried = Chain(grown(base, settings, day.user_ids, prev.catalog(world.spec)), settings, seed + 100 + n)
        models = {"full_incremental": chain.model, "full_only": full, "incremental_only": carried.model,
                  "time_ordered_full": ordered, "no_update": day_one}  # fmt: skip
        # Item indexes at midnight (the chain's index is its full model's).
        sources = {"full_incremental": full, **{k: v for k, v in models.items() if k != "full_incremental"}}
        built: dict[int, MidnightVectors] = {}
        index = {k: built.setdefault(id(src), MidnightVectors.build(src, day.items, world.item_created_us))
                 for k, src in sources.items()}  # fmt: skip
        train_s += time.perf_counter() - t0
        for start, end in step_bounds(day, step_minutes):
            window = day.window(start, end)
            t1 = time.perf_counter()
            if window.stop > window.start:
                queries = rows_of(day.features, window)
                part = {k: ranks(models[k], index[k], queries) for k in KEYS}
                part[ORACLE] = oracle_ranks(world.truth, queries)
                out.append(_click_rows(day.clicks.iloc[window], world, day.day, start, part))
            t2 = time.perf_counter()
            batch = rows_of(day.intraday, window)
            chain.train(batch)
            carried.train(batch)
            eval_s += t2 - t1
            train_s += time.perf_counter() - t2
        logger.info(f"seed {seed}: day {day.day} replayed ({len(day):,} clicks)")
    training["seconds"] = {"train": round(train_s, 2), "measure": round(eval_s, 2),
                           "total": round(time.perf_counter() - clock, 2)}  # fmt: skip
    clicks = pd.concat(out, ignore_index=True)
    clicks.insert(0, "seed", seed)
    return clicks, training


def _click_rows(clicks: pd.DataFrame, world: World, day, step_start: int, part: dict) -> pd.DataFrame:
    t = clicks["event_timestamp"].to_numpy(np.int64)
    out = pd.DataFrame({
        "day": day.isoformat(),
        "step_start_us": step_start,
        "t_us": t,
        "hour": clicks["hour"].to_numpy(np.int64),
        "user_id": clicks["user_id"].to_numpy(np.int64),
        "item_id": clicks["item_id"].to_numpy(np.int64),
        "category": clicks["category"].to_numpy(np.int64),
        "since_us": new_interest_of(clicks, world.interests),
    })  # fmt: skip
    for k, r in part.items():
        out[f"rank_{k}"] = r
    return out
