"""``twotower simulate``: a notes feed with planted, measurable behaviour.

Writes a complete offline store (users, items, events partitioned by day) plus the ground
truth. Deterministic per seed. See ``world`` (who likes what), ``day`` (what happens in a day)
and ``truth`` (the oracle).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, timedelta


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.core.timeutil import US_PER_DAY, day_start_us
from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.research.simulate import tables
from twotower.research.simulate.day import Policy, simulate_day
from twotower.research.simulate.truth import NewInterests, Truth, save_truth
from twotower.research.simulate.world import (
    Items,
    Latent,
    Users,
    WorldParams,
    items_frame,
    make_items,
    make_users,
    previous_days_us,
    users_frame,
)
from twotower.core.files import staged_dir
from twotower.core.workspace import Workspace

logger = logging.getLogger(__name__)

__all__ = ["simulate", "SimulationSummary", "Truth", "world_signature"]


@dataclass
class SimulationSummary:
    days: list[date]
    users: int
    items: int
    events: int
    clicks: int
    new_interests: int
    seconds: float
    events_per_day: list[int] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else float("nan")


def world_signature(settings: Settings, users: int, items: int, days: int, seed: int) -> dict:
    """Everything that determines a simulated world (to tell whether one can be reused)."""
    sim = settings.simulator.model_dump(mode="json", exclude={"users", "items", "days", "seed"})
    return {"users": users, "items": items, "days": days, "seed": seed, **sim}


def simulate(
    settings: Settings,
    ws: Workspace,
    *,
    users: int | None = None,
    items: int | None = None,
    days: int | None = None,
    seed: int | None = None,
    force: bool = False,
) -> SimulationSummary:
    cfg = settings.simulator
    users = cfg.users if users is None else users
    items = cfg.items if items is None else items
    days = cfg.days if days is None else days
    seed = cfg.seed if seed is None else seed
    for name, value, low in (("--users", users, 10), ("--items", items, 10), ("--days", days, 1)):
        if value < low:
            raise UserError(f"{name} must be >= {low} (got {value})")
    if ws.offline.exists() and any(ws.offline.iterdir()) and not force:
        raise UserError(
            f"workspace {ws.root} already holds an offline store; pass --force to replace the "
            "whole world (offline store, models, generations, online store)"
        )

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    params = WorldParams(cfg.categories, cfg.tags_per_category, cfg.evening_shift, seed)
    latent = Latent(params, rng)
    authors_per_category = max(1, (cfg.authors or max(items // 20, cfg.categories)) // cfg.categories)
    policy = Policy(cfg.impressions_per_request, cfg.ranked_out_per_request)

    hist_from, hist_to = previous_days_us(cfg.start_date, 365)
    all_users = make_users(latent, rng, 1, users, hist_from, hist_to, cfg.requests_per_user_day)
    item_from, item_to = previous_days_us(cfg.start_date, 30)
    all_items = make_items(latent, rng, 1, items, item_from, item_to, authors_per_category)
    interests = NewInterests.empty()

    summary = SimulationSummary([], 0, 0, 0, 0, 0, 0.0)
    with staged_dir(ws.offline) as offline:
        for d in range(days):
            day = cfg.start_date + timedelta(days=d)
            day0 = day_start_us(day)
            t0 = time.perf_counter()
            new_u = make_users(
                latent, rng, len(all_users) + 1, int(round(users * cfg.new_users_per_day)),
                day0, day0 + US_PER_DAY, cfg.requests_per_user_day,
            )
            new_i = make_items(
                latent, rng, len(all_items) + 1, int(round(items * cfg.new_items_per_day)),
                day0, day0 + US_PER_DAY, authors_per_category,
            )
            all_users, all_items = Users.concat([all_users, new_u]), Items.concat([all_items, new_i])
            events, today = simulate_day(
                day, all_users, all_items, interests, latent, policy, cfg.new_interest_share, rng
            )
            interests = interests.extend(today)
            _write_day(offline, day, events, settings.ingest.rows_per_file)
            clicks = pa.compute.sum(pa.compute.equal(events["event_type"], "click")).as_py() or 0
            summary.days.append(day)
            summary.events_per_day.append(events.num_rows)
            summary.events += events.num_rows
            summary.clicks += clicks
            secs = time.perf_counter() - t0
            logger.info(
                f"day {day}: {events.num_rows:,} events ({clicks:,} clicks), "
                f"{len(today.user_idx):,} new interests, {events.num_rows / max(secs, 1e-9):,.0f} events/s"
            )
        _write_table(offline / "users.parquet", users_frame(all_users), tables.USERS)
        _write_table(offline / "items.parquet", items_frame(all_items), tables.ITEMS)
        if force:
            _clear_derived(ws)
        meta = {"signature": world_signature(settings, users, items, days, seed),
                "days": [d.isoformat() for d in summary.days]}
        with staged_dir(ws.truth_dir) as truth:
            save_truth(truth, all_users, all_items, interests, meta)

    summary.users, summary.items = len(all_users), len(all_items)
    summary.new_interests = len(interests.user_idx)
    summary.seconds = time.perf_counter() - started
    return summary


def _write_day(offline, day: date, events: pa.Table, rows_per_file: int) -> None:
    """One part file per ``rows_per_file`` events (one Dask partition each downstream)."""
    out = offline / "events" / f"day={day.isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, max(events.num_rows, 1), rows_per_file)):
        pq.write_table(events.slice(start, rows_per_file), out / f"part-{part:05d}.parquet")


def _write_table(path, frame, arrow_schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pandas(frame, schema=arrow_schema, preserve_index=False), path)


def _clear_derived(ws: Workspace) -> None:
    """A new world invalidates everything trained or served from the old one."""
    for path in (ws.root / "tfrecords", ws.checkpoints_dir, ws.generations_dir, ws.feast_dir,
                 ws.gx_dir, ws.stream_dir, ws.reports_dir):
        shutil.rmtree(path, ignore_errors=True)
