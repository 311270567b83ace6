"""``twotower full-update DAY``: validate -> prepare -> train -> export -> evaluate -> publish.

The nightly half of the seed. Every step writes into a work directory for the day
(``<workspace>/work/DAY``) atomically and is skipped when its output is already there, so a
crashed run (even kill -9) is completed by running the same command again. Nothing is visible
to serving until the last step: the work directory becomes ``generations/<id>`` by one rename
and ``CURRENT`` is flipped. Training warm-starts from the *served full* generation's
checkpoint (never from incremental state, which lives elsewhere and is discarded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from twotower import generations as gens
from twotower.config import Settings
from twotower.errors import UserError
from twotower.workspace import Workspace, atomic_write_bytes

Log = Callable[[str], None]


class PromotionRefused(UserError):
    """The new model is clearly worse than the served one on the same held-out clicks."""

    exit_code = 4


@dataclass
class DayWork:
    """The day's work directory: one file or folder per finished step."""

    ws: Workspace
    day: date

    @property
    def root(self) -> Path:
        return self.ws.root / "work" / self.day.isoformat()

    checkpoint = property(lambda self: self.root / "checkpoint")
    user_tower = property(lambda self: self.root / "user_tower")
    index = property(lambda self: self.root / "index")
    embeddings = property(lambda self: self.root / "user_id_embedding.parquet")
    popular = property(lambda self: self.root / "popular_items.parquet")
    training = property(lambda self: self.root / "training.json")
    metrics = property(lambda self: self.root / "metrics.json")
    publish = property(lambda self: self.root / "publish.json")

    def write_json(self, path: Path, payload: dict) -> None:
        atomic_write_bytes(path, json.dumps(payload, indent=2, default=str).encode())

    def read_json(self, path: Path) -> dict:
        return json.loads(path.read_text())


@dataclass
class FullUpdateResult:
    day: date
    generation: str
    parent: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds (0 = already done)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def known_users_and_items(ws: Workspace, day: date) -> tuple[np.ndarray, pd.DataFrame]:
    """Users signed up and items created by the end of ``day`` (what the model may know)."""
    _, end = day_bounds(day)
    users = pd.read_parquet(ws.users_path, columns=["user_id", "event_timestamp"])
    items = pd.read_parquet(ws.items_path)
    user_ids = np.unique(users.loc[users["event_timestamp"] < end, "user_id"].to_numpy(np.int64))
    return user_ids, items.loc[items["event_timestamp"] < end].reset_index(drop=True)


def run(settings: Settings, ws: Workspace, day: date, log: Log = print) -> FullUpdateResult:
    from twotower import full_update_steps as steps

    served = gens.current(ws)
    if served is not None and served.day >= day:
        if served.day == day:
            log(f"{day} is already published as {served.id}; nothing to do")
            return FullUpdateResult(day, served.id, served.parent, served.metrics)
        raise UserError(f"DAY {day} is before the served generation's day {served.day}; full updates move forward")
    if day not in ws.days():
        raise UserError(f"DAY {day}: no events in {ws.events_dir} (have: {', '.join(map(str, ws.days())) or 'none'})")

    from materialize.cluster import LazyClient

    pending = steps.unflipped(ws, day, served)
    if pending is not None:  # killed between the rename and the flip: finish the publish
        gens.flip(ws, pending.id)
        log(f"publish: {pending.id} was complete but not served; now serving it")
        return FullUpdateResult(day, pending.id, pending.parent, pending.metrics)
    work = DayWork(ws, day)
    result = FullUpdateResult(day, "", served.id if served else None)
    step = steps.Steps(result.steps, log)
    dask = LazyClient(settings.dask)
    try:
        step("validate", steps.validate, settings, ws, day, log)
        work.root.mkdir(parents=True, exist_ok=True)
        prepared = step("prepare", steps.prepare, settings, ws, day, dask, log)
        step("train", steps.train, settings, ws, work, prepared, served, log,
             done=work.checkpoint.exists() and work.training.exists())  # fmt: skip
        step("export", steps.export, settings, ws, work, prepared, dask, log,
             done=all(p.exists() for p in (work.index, work.user_tower, work.embeddings, work.popular)))  # fmt: skip
        dask.close()
        step("evaluate", steps.evaluate, settings, ws, work, prepared, served, log, done=work.metrics.exists())
        result.metrics = work.read_json(work.metrics)["metrics"]
        result.generation = step("publish", steps.publish, settings, ws, work, served, log)
    finally:
        dask.close()
    from twotower.report import write_report  # never fails the update: it reports what it finds

    log(f"report: {write_report(settings, ws)}")
    return result
