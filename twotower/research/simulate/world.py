"""The simulated notes feed: users with latent interests, items with categories.

Everything the model could learn is planted here, on purpose:

- each user has *daytime* and *evening* category preferences (the seed: noon is not evening),
  partly predictable from the profile (age, gender, city) so a brand-new user can be served
  from profile features alone;
- items belong to a category; tags and the author are noisy signals of it; quality varies;
- new users and new items appear every day (so OOV handling and vocabulary growth matter).

Preferences are kept as ground truth so an oracle recall can be computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from twotower.core.timeutil import day_start_us


import numpy as np
import pandas as pd

AGE_BUCKETS, GENDERS, CITY_TIERS = 7, 3, 5


@dataclass
class WorldParams:
    categories: int
    tags_per_category: int
    evening_shift: float
    seed: int


@dataclass
class Users:
    user_id: np.ndarray  # int64
    age_bucket: np.ndarray
    gender: np.ndarray
    city_tier: np.ndarray
    interest_tags: list[np.ndarray]
    signup_us: np.ndarray  # int64 microseconds
    day_pref: np.ndarray  # (n, K) float32, rows sum to 1
    eve_pref: np.ndarray  # (n, K)
    activity: np.ndarray  # expected requests per day

    def __len__(self) -> int:
        return len(self.user_id)

    @staticmethod
    def concat(parts: list["Users"]) -> "Users":
        return Users(
            *(
                sum((p.interest_tags for p in parts), [])
                if name == "interest_tags"
                else np.concatenate([getattr(p, name) for p in parts])
                for name in Users.__dataclass_fields__
            )
        )


@dataclass
class Items:
    item_id: np.ndarray
    category: np.ndarray
    tags: list[np.ndarray]
    author_id: np.ndarray
    created_us: np.ndarray
    quality: np.ndarray  # latent, drives clicks
    popularity: np.ndarray  # exposure weight of the logging policy

    def __len__(self) -> int:
        return len(self.item_id)

    @staticmethod
    def concat(parts: list["Items"]) -> "Items":
        return Items(
            *(
                sum((p.tags for p in parts), [])
                if name == "tags"
                else np.concatenate([getattr(p, name) for p in parts])
                for name in Items.__dataclass_fields__
            )
        )


class Latent:
    """Population-level structure shared by all users and items of one world."""

    def __init__(self, params: WorldParams, rng: np.random.Generator):
        k = params.categories
        self.params = params
        self.category_pop = rng.dirichlet(np.full(k, 2.0))
        # How profile attributes tilt interests (what a new user's profile tells the model).
        self.age_effect = rng.normal(0, 1.0, (AGE_BUCKETS, k))
        self.gender_effect = rng.normal(0, 0.8, (GENDERS, k))
        self.city_effect = rng.normal(0, 0.5, (CITY_TIERS, k))

    def tag_ids(self, category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random tag of each category; tag ids start at 1 (0 is padding)."""
        t = self.params.tags_per_category
        return (1 + category * t + rng.integers(0, t, len(category))).astype(np.int32)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def make_users(
    latent: Latent,
    rng: np.random.Generator,
    first_id: int,
    n: int,
    signup_from_us: int,
    signup_to_us: int,
    requests_per_day: float,
) -> Users:
    k = latent.params.categories
    age = rng.choice(AGE_BUCKETS, n, p=[0.05, 0.2, 0.25, 0.2, 0.15, 0.1, 0.05]).astype(np.int32)
    gender = rng.choice(GENDERS, n, p=[0.05, 0.45, 0.5]).astype(np.int32)
    city = rng.choice(CITY_TIERS, n, p=[0.1, 0.2, 0.3, 0.25, 0.15]).astype(np.int32)
    prior = (
        np.log(latent.category_pop)[None, :]
        + latent.age_effect[age]
        + latent.gender_effect[gender]
        + latent.city_effect[city]
    )
    logits = prior + rng.normal(0, 1.5, (n, k))
    day_pref = _softmax(1.5 * logits)
    # Evening interests: the same person, partly different tastes.
    s = latent.params.evening_shift
    eve_logits = (1 - s) * logits + s * (prior + rng.normal(0, 1.5, (n, k)))
    eve_pref = _softmax(1.5 * eve_logits)
    # Declared interest tags: a noisy view of the top daytime categories.
    top = np.argsort(-day_pref, axis=1)[:, :3]
    keep = rng.random((n, 3)) < np.array([0.9, 0.6, 0.3])
    tags = latent.tag_ids(top.ravel(), rng).reshape(n, 3)
    interest_tags = [row[m] for row, m in zip(tags, keep)]
    return Users(
        user_id=np.arange(first_id, first_id + n, dtype=np.int64),
        age_bucket=age,
        gender=gender,
        city_tier=city,
        interest_tags=interest_tags,
        signup_us=np.sort(rng.integers(signup_from_us, signup_to_us, n)).astype(np.int64),
        day_pref=day_pref.astype(np.float32),
        eve_pref=eve_pref.astype(np.float32),
        activity=rng.gamma(2.0, requests_per_day / 2.0, n),
    )


def make_items(
    latent: Latent,
    rng: np.random.Generator,
    first_id: int,
    n: int,
    created_from_us: int,
    created_to_us: int,
    authors_per_category: int,
) -> Items:
    k = latent.params.categories
    category = rng.choice(k, n, p=latent.category_pop).astype(np.int32)
    n_tags = rng.integers(1, 4, n)
    own = latent.tag_ids(np.repeat(category, 3), rng).reshape(n, 3)
    stray = latent.tag_ids(rng.integers(0, k, n), rng)
    own[:, 2] = np.where(rng.random(n) < 0.3, stray, own[:, 2])  # tags are a noisy signal
    tags = [row[:m] for row, m in zip(own, n_tags)]
    # Authors mostly write in one category.
    home = np.where(rng.random(n) < 0.85, category, rng.integers(0, k, n))
    author = home.astype(np.int64) * authors_per_category + rng.integers(0, authors_per_category, n)
    quality = rng.normal(0, 0.5, n)
    return Items(
        item_id=np.arange(first_id, first_id + n, dtype=np.int64),
        category=category,
        tags=tags,
        author_id=author + 1,
        created_us=np.sort(rng.integers(created_from_us, created_to_us, n)).astype(np.int64),
        quality=quality,
        popularity=np.exp(quality + rng.normal(0, 1.0, n)),
    )


def _ts(us: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(us, unit="us", utc=True))


def users_frame(users: Users) -> pd.DataFrame:
    signup = _ts(users.signup_us)
    return pd.DataFrame(
        {
            "user_id": users.user_id,
            "age_bucket": users.age_bucket,
            "gender": users.gender,
            "city_tier": users.city_tier,
            "interest_tags": users.interest_tags,
            "activity": np.round(users.activity, 3),
            "signup_date": signup.dt.date,
            "event_timestamp": signup,
        }
    )


def items_frame(items: Items) -> pd.DataFrame:
    created = _ts(items.created_us)
    return pd.DataFrame(
        {
            "item_id": items.item_id,
            "category": items.category,
            "tags": items.tags,
            "author_id": items.author_id,
            "created_at": created,
            "event_timestamp": created,
        }
    )


def previous_days_us(start: date, days: int) -> tuple[int, int]:
    """[start - days, start) in microseconds: history that exists before the first day."""
    return day_start_us(start - timedelta(days=days)), day_start_us(start)
