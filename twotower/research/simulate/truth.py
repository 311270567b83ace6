"""Ground truth of a simulated world: what each user really likes at a given moment.

The simulator draws clicks from exactly these functions, and the replay experiment uses them
for the *oracle* recall (the best any recall channel could do), so a model's recall can be
read against a ceiling instead of in a vacuum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.core.timeutil import US_PER_HOUR, to_us

NEW_INTEREST_WEIGHT = 0.6
"""Share of attention a freshly acquired interest takes from the user's other interests."""


def evening_weight(t_us: np.ndarray) -> np.ndarray:
    """0 in the morning and at noon, ~1 in the evening and at night (UTC hours)."""
    hour = (np.asarray(t_us) % (24 * US_PER_HOUR)) / US_PER_HOUR
    evening = 1.0 / (1.0 + np.exp(-(hour - 17.5) / 0.8))
    night = 1.0 / (1.0 + np.exp(-(4.0 - hour) / 0.8))
    return np.clip(evening + night, 0.0, 1.0)


@dataclass
class NewInterests:
    """Interests acquired during a day: (user row, category, since when)."""

    user_idx: np.ndarray
    category: np.ndarray
    since_us: np.ndarray

    @staticmethod
    def empty() -> "NewInterests":
        return NewInterests(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int64))

    def extend(self, other: "NewInterests") -> "NewInterests":
        return NewInterests(
            np.concatenate([self.user_idx, other.user_idx]),
            np.concatenate([self.category, other.category]),
            np.concatenate([self.since_us, other.since_us]),
        )

    def frame(self, user_ids: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": user_ids[self.user_idx],
                "category": self.category,
                "since": pd.to_datetime(self.since_us, unit="us", utc=True),
            }
        )


def preference_at(
    day_pref: np.ndarray,
    eve_pref: np.ndarray,
    interests: NewInterests,
    user_idx: np.ndarray,
    t_us: np.ndarray,
) -> np.ndarray:
    """Category preference (rows sum to 1) of each (user, moment) pair.

    Daytime and evening tastes are blended by the time of day; every new interest acquired
    before ``t_us`` then takes ``NEW_INTEREST_WEIGHT`` of the attention.
    """
    w = evening_weight(t_us)[:, None]
    pref = (1.0 - w) * day_pref[user_idx] + w * eve_pref[user_idx]
    if len(interests.user_idx):
        order = np.argsort(interests.user_idx, kind="stable")
        owners = interests.user_idx[order]
        first = np.searchsorted(owners, user_idx, side="left")
        count = np.searchsorted(owners, user_idx, side="right") - first
        for j in range(int(count.max(initial=0))):
            rows = np.nonzero(count > j)[0]
            rec = order[first[rows] + j]
            active = interests.since_us[rec] <= t_us[rows]
            rows, rec = rows[active], rec[active]
            pref[rows] *= 1.0 - NEW_INTEREST_WEIGHT
            pref[rows, interests.category[rec]] += NEW_INTEREST_WEIGHT
    return pref


def affinity(pref_of_category: np.ndarray, quality: np.ndarray, n_categories: int) -> np.ndarray:
    """True interest of a user in an item: log-lift of its category plus the item's quality."""
    return np.log(np.maximum(pref_of_category * n_categories, 1e-6)) + quality


def click_probability(aff: np.ndarray, position: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(1.3 * aff - 3.6 - 0.08 * position)))


class Truth:
    """Loaded ground truth of a workspace (``ws.truth_dir``)."""

    def __init__(self, root: Path):
        data = np.load(root / "world.npz")
        self.user_id = data["user_id"]
        self.day_pref, self.eve_pref = data["day_pref"], data["eve_pref"]
        self.item_id, self.category = data["item_id"], data["category"]
        self.quality, self.created_us = data["quality"], data["created_us"]
        ni = pd.read_parquet(root / "new_interests.parquet")
        self.interests = NewInterests(
            self.user_index(ni["user_id"].to_numpy()),
            ni["category"].to_numpy(np.int32),
            to_us(ni["since"]),
        )
        self.meta = json.loads((root / "meta.json").read_text())

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.user_id, user_ids)
        idx = np.clip(idx, 0, len(self.user_id) - 1)
        if not np.array_equal(self.user_id[idx], user_ids):
            raise KeyError("user ids not in this world's ground truth")
        return idx

    def preference(self, user_ids: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        return preference_at(
            self.day_pref, self.eve_pref, self.interests, self.user_index(user_ids), np.asarray(t_us)
        )

    def oracle_topk(self, user_ids: np.ndarray, t_us: np.ndarray, k: int) -> np.ndarray:
        """Item ids of the ``k`` highest true affinities among items existing at ``t_us``."""
        pref = self.preference(user_ids, t_us)
        n_cat = pref.shape[1]
        out = np.empty((len(user_ids), k), dtype=np.int64)
        for i in range(len(user_ids)):
            aff = affinity(pref[i, self.category], self.quality, n_cat)
            aff[self.created_us > t_us[i]] = -np.inf
            top = np.argpartition(-aff, k - 1)[:k]
            out[i] = self.item_id[top[np.argsort(-aff[top])]]
        return out


def save_truth(root: Path, users, items, interests: NewInterests, meta: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    np.savez(
        root / "world.npz",
        user_id=users.user_id,
        day_pref=users.day_pref,
        eve_pref=users.eve_pref,
        item_id=items.item_id,
        category=items.category,
        quality=items.quality,
        created_us=items.created_us,
    )
    interests.frame(users.user_id).to_parquet(root / "new_interests.parquet", index=False)
    (root / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
