"""One day of the full update: its work directory and what the model may know by its end.

Shared by the steps (full_update_steps.py), their driver (full_update.py) and the incremental
chain (a generation's day ends where its chain's stream starts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path


import numpy as np
import pandas as pd

from twotower.core.errors import UserError
from twotower.core.files import atomic_write_bytes
from twotower.core.workspace import Workspace



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
