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

from materialize.sources import tower_frame
from twotower.core.errors import UserError
from twotower.core.encode import id_array, id_keys
from twotower.core.features import FeatureSpec
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
    _known: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def known(self, spec: FeatureSpec) -> "Known":
        """``known(spec, ws, day)``, read once for the steps of this day's run."""
        if spec not in self._known:
            self._known[spec] = known(spec, self.ws, self.day)
        return self._known[spec]

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


@dataclass
class Known:
    """What the model may know by the end of a day: users with a profile row, items with features."""

    user_keys: np.ndarray  # int64 ID keys, sorted
    user_labels: np.ndarray  # the same users' IDs as given
    users: pd.DataFrame  # newest row of each user (join key + user features)
    items: pd.DataFrame  # newest row of each item (join key + item features + event_timestamp)


def known(spec: FeatureSpec, ws: Workspace, day: date) -> Known:
    """Users and items whose feature rows exist by the end of ``day`` (``materialize.sources``);
    for an ID-only user tower (no profile view), the users of the events up to that day."""
    _, end = day_bounds(day)
    users = tower_frame(spec.user, pd.Timestamp(end))
    items = tower_frame(spec.item, pd.Timestamp(end))
    if not spec.user.views():
        seen = [pd.read_parquet(ws.events_day_dir(d), columns=["user_id"])["user_id"] for d in ws.days() if d <= day]
        ids = pd.unique(pd.concat(seen, ignore_index=True)) if seen else np.zeros(0, np.int64)
        users = pd.DataFrame({spec.user.join_key: ids})
    labels = users[spec.user.join_key].to_numpy()
    keys = id_keys(labels, spec.user.id_type, f"users column {spec.user.join_key!r}")
    order = np.argsort(keys, kind="stable")
    return Known(keys[order], id_array(labels)[order], users, items)
