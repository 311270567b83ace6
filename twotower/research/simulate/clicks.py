"""``twotower emit --user U --category C --count N`` in the simulator's world: one user clicks N
items of category C *now* - realistic requests (impressions, clicks on the shown items of C,
ranked-out items of other categories as the ranking's rejects), with current timestamps. What
tests and the demo use to watch an interest move within seconds.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.workspace import Workspace
from twotower.stream.emit import Emitted, append_events

REQUEST_GAP_US = 3_000_000  # requests of one emitted session are 3 s apart
CLICK_DELAY_US = 1_000_000  # a click comes 1 s after its request
CLICKS_PER_REQUEST = 2


def user_click_events(
    user_id: int,
    category: int,
    count: int,
    items: pd.DataFrame,
    now: datetime,
    *,
    impressions: int,
    ranked_out: int,
    seed: int | None = None,
) -> pd.DataFrame:
    """Requests of one user ending at ``now`` in which they click ``count`` items of ``category``.

    Each request shows ``impressions`` items: up to two of the category (clicked), the rest of
    other categories (shown, not clicked); ``ranked_out`` items of other categories were recalled
    but eliminated by ranking (hard negatives). Only items that exist at ``now`` are used.
    """
    if count < 1:
        raise UserError(f"--count must be >= 1, got {count}")
    now_us = int(pd.Timestamp(now).as_unit("us").value // 1000)
    created = pd.to_datetime(items["event_timestamp"], utc=True)
    live = items.loc[created <= pd.Timestamp(now)]
    pool = live.loc[live["category"] == category, "item_id"].to_numpy(np.int64)
    others = live.loc[live["category"] != category, "item_id"].to_numpy(np.int64)
    if len(pool) == 0:
        have = sorted(int(c) for c in live["category"].unique())
        raise UserError(f"--category {category}: no item of that category exists (categories: {have})")
    rng = np.random.default_rng(seed)
    n_requests = -(-count // CLICKS_PER_REQUEST)
    rows = []
    for r in range(n_requests):
        t = now_us - CLICK_DELAY_US - (n_requests - 1 - r) * REQUEST_GAP_US
        clicks = min(CLICKS_PER_REQUEST, count - r * CLICKS_PER_REQUEST)
        shown = list(rng.choice(pool, clicks, replace=len(pool) < clicks))
        if len(others):
            shown += list(rng.choice(others, max(impressions - clicks, 0), replace=len(others) < impressions))
            rejected = rng.choice(others, ranked_out, replace=len(others) < ranked_out) if ranked_out else []
        else:
            rejected = []
        request = now_us * 1000 + r
        for pos, item in enumerate(shown):
            rows.append((request, item, "impression", pos, t + pos * 1000))
        for pos in range(clicks):
            rows.append((request, shown[pos], "click", pos, t + CLICK_DELAY_US + pos * 1000))
        for item in rejected:
            rows.append((request, item, "ranked_out", -1, t))
    frame = pd.DataFrame(rows, columns=["request_id", "item_id", "event_type", "position", "ts"])
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    return pd.DataFrame({
        "event_id": now_us * 1000 + np.arange(len(frame), dtype=np.int64),
        "request_id": frame["request_id"].astype(np.int64),
        "user_id": np.full(len(frame), user_id, dtype=np.int64),
        "item_id": frame["item_id"].astype(np.int64),
        "event_type": frame["event_type"],
        "position": frame["position"].astype(np.int32),
        "event_timestamp": pd.to_datetime(frame["ts"].to_numpy(np.int64), unit="us", utc=True),
    })  # fmt: skip



def emit_user(
    settings: Settings, ws: Workspace, user_id: int, category: int, count: int, seed: int | None = None
) -> Emitted:
    if not ws.users_path.exists() or not ws.items_path.exists():
        raise UserError(f"no offline store in {ws.root}: run `twotower simulate` or `twotower ingest` first")
    users = pd.read_parquet(ws.users_path, columns=["user_id"])
    if not (users["user_id"] == user_id).any():
        raise UserError(f"--user {user_id}: no such user in {ws.users_path}")
    items = pd.read_parquet(ws.items_path, columns=["item_id", "category", "event_timestamp"])
    sim = settings.simulator
    events = user_click_events(
        user_id, category, count, items, datetime.now(timezone.utc),
        impressions=sim.impressions_per_request, ranked_out=sim.ranked_out_per_request, seed=seed,
    )  # fmt: skip
    return append_events(settings, ws, events)
