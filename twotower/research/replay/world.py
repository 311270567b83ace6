"""A simulated world laid out for the replay: each day's clicks as training examples.

Read once per seed and shared by every strategy, so all of them train and are measured on
exactly the same examples. Pure pandas (plus the simulator's ground truth), no TensorFlow.

Each day's examples are built once (``build_examples``, the production point-in-time join)
and kept as the training tensors (``frame_to_features``) in time order, with two versions of
the click shares (logQ), because the two training modes know different ones:

* ``features`` - the day's own item frequencies: what the nightly full update computes once
  the day is over (``materialize.prepare`` does the same).
* ``intraday`` - the *previous* day's frequencies: all an incremental chain knows while the
  day is running (the generation's catalogue; see ``twotower/pipelines/incremental/examples.py``).

Step-by-step queries are rows of the same examples: the user's profile at click time and the
hour of day, i.e. what the user tower sees at request time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from materialize.examples import build_examples, item_frequencies
from tfrs_models.catalog import ItemCatalog
from tfrs_models.records import example_columns, frame_to_features
from twotower import feature_store
from twotower.core.config import Settings
from twotower.core.features import FeatureSpec
from twotower.core.timeutil import US_PER_HOUR, US_PER_MINUTE, day_start_us, to_us
from twotower.research.simulate import Truth
from twotower.core.workspace import Workspace



@dataclass
class Day:
    day: date
    start_us: int
    clicks: pd.DataFrame  # one row per click, time order: user_id, item_id, category, hour, event_timestamp
    features: dict[str, np.ndarray]  # the clicks' example tensors, the day's own click shares
    intraday: dict[str, np.ndarray]  # the same with the previous day's click shares
    frequencies: pd.DataFrame  # item_id, clicks, prob (this day)
    user_ids: np.ndarray  # users signed up by the end of the day
    items: pd.DataFrame  # items created by the end of the day (newest rows)

    def __len__(self) -> int:
        return len(self.clicks)

    def window(self, start_us: int, end_us: int) -> slice:
        """Rows of the clicks in [start, end)."""
        lo, hi = np.searchsorted(self.clicks["event_timestamp"].to_numpy(np.int64), [start_us, end_us])
        return slice(int(lo), int(hi))

    def catalog(self, spec: FeatureSpec) -> ItemCatalog:
        """What a full update at the end of this day trains against."""
        return ItemCatalog.from_frames(self.items, spec.item, self.frequencies)


@dataclass
class World:
    spec: FeatureSpec  # the simulator's feature repo (the package's own)
    days: list[Day]
    items: pd.DataFrame  # every item, all days
    item_created_us: pd.Series  # item_id -> creation time (us)
    truth: Truth
    interests: pd.DataFrame  # user_id, category, since_us


def with_click_shares(features: dict[str, np.ndarray], frequencies: pd.DataFrame) -> dict[str, np.ndarray]:
    """The same example tensors with the click shares of another frequency table (its smallest
    share for items it does not list, as ``build_examples`` does)."""
    freq = pd.Series(frequencies["prob"].to_numpy(np.float32), index=frequencies["item_id"].to_numpy(np.int64))
    floor = np.float32(freq.min()) if len(freq) else np.float32(1.0)

    def prob(ids: np.ndarray) -> np.ndarray:
        return freq.reindex(ids.ravel()).fillna(floor).to_numpy(np.float32).reshape(ids.shape)

    hard = features["hard_item_id"]
    return {**features, "item_prob": prob(features["item_id"]), "hard_prob": prob(hard) * (hard >= 0)}


def rows(features: dict[str, np.ndarray], where: slice) -> dict[str, np.ndarray]:
    return {k: v[where] for k, v in features.items()}


def load_world(settings: Settings, ws: Workspace) -> World:
    """The offline store and ground truth of ``ws`` as replay days."""
    m = settings.model
    spec = feature_store.read_spec(settings, ws)
    columns = example_columns(spec, m.hard_negatives_per_example)
    users = pd.read_parquet(ws.users_path)
    items = pd.read_parquet(ws.items_path)
    items_created = pd.Series(to_us(items["event_timestamp"]), index=items["item_id"].to_numpy(np.int64))
    users_since = to_us(users["event_timestamp"])
    items_since = items_created.to_numpy()
    days: list[Day] = []
    previous_freq: pd.DataFrame | None = None
    for day in ws.days():
        start = day_start_us(day)
        end = start + 24 * US_PER_HOUR
        events = pd.read_parquet(ws.events_day_dir(day))
        events = events[events["event_type"].isin(["click", "ranked_out"])]
        known_items = items.loc[items_since < end].reset_index(drop=True)
        frequencies = item_frequencies(events, known_items["item_id"].to_numpy())
        examples = build_examples(
            events, users, items, spec=spec, hard_negatives=m.hard_negatives_per_example,
            day=day, frequencies=frequencies,
        )  # fmt: skip
        features = frame_to_features(examples, columns)
        intraday = with_click_shares(features, previous_freq if previous_freq is not None else frequencies)
        clicks = examples[["user_id", "item_id", spec.item.column("category"), "hour", "event_timestamp"]]
        clicks = clicks.rename(columns={spec.item.column("category"): "category"}).reset_index(drop=True)
        user_ids = np.unique(users.loc[users_since < end, "user_id"].to_numpy(np.int64))
        days.append(Day(day, start, clicks, features, intraday, frequencies, user_ids, known_items))
        previous_freq = frequencies
    truth = Truth(ws.truth_dir)
    ni = pd.read_parquet(ws.truth_dir / "new_interests.parquet")
    interests = pd.DataFrame(
        {"user_id": ni["user_id"].to_numpy(np.int64), "category": ni["category"].to_numpy(np.int64),
         "since_us": to_us(ni["since"])}
    )  # fmt: skip
    return World(spec, days, items, items_created, truth, interests)


def step_bounds(day: Day, step_minutes: int) -> list[tuple[int, int]]:
    """[start, end) of each replay step of the day, in microseconds."""
    step = step_minutes * US_PER_MINUTE
    return [(s, s + step) for s in range(day.start_us, day.start_us + 24 * US_PER_HOUR, step)]


def new_interest_of(clicks: pd.DataFrame, interests: pd.DataFrame) -> np.ndarray:
    """``since`` (us) of the new interest each click belongs to, or -1.

    A click belongs to a new interest when its item is in a category the user acquired *the
    same day, before the click* (the seed's "a new interest in the morning, served at noon?").
    """
    out = np.full(len(clicks), -1, np.int64)
    if not len(clicks) or not len(interests):
        return out
    left = pd.DataFrame({
        "_row": np.arange(len(clicks)), "user_id": clicks["user_id"].to_numpy(np.int64),
        "category": clicks["category"].to_numpy(np.int64), "t": clicks["event_timestamp"].to_numpy(np.int64),
    })  # fmt: skip
    hits = left.merge(interests, on=["user_id", "category"], how="inner")
    day = 24 * US_PER_HOUR
    hits = hits[(hits["since_us"] <= hits["t"]) & (hits["since_us"] // day == hits["t"] // day)]
    hits = hits.sort_values("since_us").drop_duplicates("_row", keep="last")
    out[hits["_row"].to_numpy()] = hits["since_us"].to_numpy(np.int64)
    return out
