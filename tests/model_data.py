"""Shared data and models of the ``test_model_*`` modules (built once per test process).

The world is the real simulator's (users with latent daytime/evening category preferences
partly predictable from the profile, items with categories, tags and authors, ranked-out hard
negatives, new users and items every day), small enough to train on in seconds: day 1 and 2
train, day 3 is held out. Models are small (16-d) so each training pass takes a few seconds.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.core.config import ModelSettings, load_settings
from twotower.research.simulate import simulate
from twotower.core.workspace import Workspace

WORLD = dict(users=600, items=400, days=3, seed=7)


def small_settings(**overrides) -> ModelSettings:
    base = dict(
        id_embedding_dim=16, feature_embedding_dim=8, hidden_units=[32], output_dim=16,
        batch_size=64, learning_rate=0.1, incremental_learning_rate=0.1, temperature=0.1,
        num_easy_negatives=32, shuffle_buffer=10_000,
    )  # fmt: skip
    return ModelSettings(**{**base, **overrides})


@lru_cache(maxsize=1)
def default_spec():
    """The feature spec of the package's own feature repo (the simulator's world)."""
    from twotower.core.config import FeatureSettings
    from twotower.feature_store import FEATURE_REPO
    from twotower.feature_store.repo import of_repo

    return of_repo(FEATURE_REPO, FeatureSettings())


def spec_at(ws):
    """The package repo's spec with its sources in workspace ``ws`` (as ``feast apply`` there gives)."""
    return default_spec().bind(ws.root)


@dataclass(frozen=True)
class Data:
    root: Path
    users: pd.DataFrame
    items: pd.DataFrame
    events: dict[date, pd.DataFrame]
    examples: dict[date, pd.DataFrame]
    days: list[date]

    def known_before(self, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Users and items that existed before ``day`` (what a full update the night before knew)."""
        cut = pd.Timestamp(day, tz="UTC")
        return (
            self.users.loc[self.users["event_timestamp"] < cut].reset_index(drop=True),
            self.items.loc[self.items["event_timestamp"] < cut].reset_index(drop=True),
        )


@lru_cache(maxsize=1)
def data() -> Data:
    from materialize.examples import build_examples

    root = Path(tempfile.mkdtemp(prefix="tt-model-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    settings = load_settings(workspace=root / "ws")
    ws = Workspace(settings.workspace)
    simulate(settings, ws, **WORLD)
    users, items = pd.read_parquet(ws.users_path), pd.read_parquet(ws.items_path)
    days = ws.days()
    events = {d: pd.read_parquet(ws.events_day_dir(d)) for d in days}
    s = small_settings()
    examples = {
        d: build_examples(e, users, items, spec=default_spec(), hard_negatives=s.hard_negatives_per_example, day=d)
        for d, e in events.items()
    }
    return Data(root, users, items, events, examples, days)


@lru_cache(maxsize=None)
def trained(objective: str = "listwise"):
    """A full model trained (one epoch) on days 1 + 2, knowing only users/items from before day 3."""
    from materialize.examples import item_frequencies
    from tfrs_models.catalog import ItemCatalog
    from tfrs_models.training import train_full

    d = data()
    s = small_settings(objective=objective)
    users, items = d.known_before(d.days[2])
    train_events = pd.concat([d.events[d.days[0]], d.events[d.days[1]]])
    spec = default_spec()
    catalog = ItemCatalog.from_frames(items, spec.item, item_frequencies(train_events, items["item_id"]))
    train = pd.concat([d.examples[d.days[0]], d.examples[d.days[1]]], ignore_index=True)
    return train_full(s, train, spec=spec, user_ids=users["user_id"].to_numpy(), catalog=catalog, seed=1)


def held_out() -> pd.DataFrame:
    d = data()
    return d.examples[d.days[2]]


def random_recall(model, k: int = 100) -> float:
    """What recall@k chance gives: k / number of items."""
    return min(1.0, k / len(data().items))


def as_int(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)
