"""One simulated day of the feed: requests, impressions, clicks and ranked-out candidates.

The *logging policy* (the production system whose logs we are simulating) recalls candidates
partly from the user's current interests (other, fast channels follow the user), partly from
global popularity and partly at random; a noisy ranker shows the best ones (impressions) and
eliminates the rest (ranked-out: the seed's hard negatives). Users click shown items with a
probability driven by their true affinity. All of it is vectorised over requests, in chunks
so memory stays bounded at 10M events a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from twotower.core import schema
from twotower.research.simulate.truth import (
    NewInterests,
    affinity,
    click_probability,
    preference_at,
)
from twotower.core.timeutil import US_PER_DAY, US_PER_MINUTE, day_start_us
from twotower.research.simulate.world import Items, Latent, Users

CHUNK = 200_000


def _activity_cdf() -> np.ndarray:
    """Requests per minute of the day (UTC): a quiet night, a lunch peak, a bigger evening peak."""
    h = np.arange(1440) / 60.0
    density = (
        0.05
        + 0.5 * np.exp(-0.5 * ((h - 8.0) / 1.0) ** 2)
        + 1.0 * np.exp(-0.5 * ((h - 12.5) / 1.5) ** 2)
        + 1.4 * np.exp(-0.5 * ((h - 20.5) / 1.8) ** 2)
    )
    cdf = np.cumsum(density)
    return cdf / cdf[-1]


ACTIVITY_CDF = _activity_cdf()


@dataclass
class Policy:
    impressions: int
    ranked_out: int
    share_current_interest: float = 0.55
    share_popular: float = 0.25  # the rest is uniform over categories


class Catalogue:
    """Items sorted by (category, creation time) so 'items of c existing at t' is a prefix."""

    def __init__(self, items: Items, n_categories: int):
        order = np.lexsort((items.created_us, items.category))
        self.order = order
        self.category = items.category[order]
        self.created = items.created_us[order]
        self.cum_pop = np.cumsum(items.popularity[order])
        self.start = np.searchsorted(self.category, np.arange(n_categories), side="left")
        self.end = np.searchsorted(self.category, np.arange(n_categories), side="right")
        self.by_time = np.argsort(items.created_us, kind="stable")
        self.created_by_time = items.created_us[self.by_time]

    def sample(self, cats: np.ndarray, t_us: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item index per (category, time), popularity-weighted among existing items."""
        out = np.empty(len(cats), dtype=np.int64)
        for c in np.unique(cats):
            m = np.nonzero(cats == c)[0]
            s, e = self.start[c], self.end[c]
            stop = s + np.searchsorted(self.created[s:e], t_us[m], side="right")
            base = self.cum_pop[s - 1] if s > 0 else 0.0
            top = np.where(stop > s, self.cum_pop[np.maximum(stop - 1, 0)], base)
            r = base + rng.random(len(m)) * (top - base)
            pos = np.minimum(np.searchsorted(self.cum_pop, r, side="right"), stop - 1)
            empty = stop <= s
            if empty.any():  # no item of c exists yet: fall back to any existing item
                n_avail = np.searchsorted(self.created_by_time, t_us[m][empty], side="right")
                pick = (rng.random(empty.sum()) * np.maximum(n_avail, 1)).astype(np.int64)
                out[m[empty]] = self.by_time[pick]
            out[m[~empty]] = self.order[pos[~empty]]
        return out


def draw_new_interests(
    users: Users, eligible: np.ndarray, share: float, day: date, rng: np.random.Generator
) -> NewInterests:
    """Some users discover a category they never cared about, in the morning (06:00-11:00)."""
    chosen = eligible[rng.random(len(eligible)) < share]
    k = users.day_pref.shape[1]
    # A category outside the user's top 3 (daytime and evening alike).
    liked = np.maximum(users.day_pref[chosen], users.eve_pref[chosen])
    noise = rng.random((len(chosen), k))
    noise[np.arange(len(chosen))[:, None], np.argsort(-liked, axis=1)[:, :3]] = -1.0
    category = noise.argmax(axis=1).astype(np.int32)
    since = day_start_us(day) + rng.integers(6 * 60, 11 * 60, len(chosen)) * US_PER_MINUTE
    return NewInterests(chosen.astype(np.int64), category, since.astype(np.int64))


def request_times(users: Users, idx: np.ndarray, day0: int, rng: np.random.Generator) -> np.ndarray:
    minute = np.searchsorted(ACTIVITY_CDF, rng.random(len(idx)), side="right")
    t = day0 + minute * US_PER_MINUTE + rng.integers(0, US_PER_MINUTE, len(idx))
    late = users.signup_us[idx] > t  # users who sign up today: requests only after signup
    if late.any():
        s = users.signup_us[idx][late]
        t[late] = s + (rng.random(late.sum()) * (day0 + US_PER_DAY - s)).astype(np.int64)
    return np.minimum(t, day0 + US_PER_DAY - 1)


def simulate_day(
    day: date,
    users: Users,
    items: Items,
    interests: NewInterests,
    latent: Latent,
    policy: Policy,
    new_interest_share: float,
    rng: np.random.Generator,
) -> tuple[pa.Table, NewInterests]:
    """Events of one day (sorted by time) and the interests acquired that day."""
    day0 = day_start_us(day)
    eligible = np.nonzero(users.signup_us < day0 + US_PER_DAY)[0]
    today = draw_new_interests(users, eligible, new_interest_share, day, rng)
    interests = interests.extend(today)

    n_req = rng.poisson(users.activity[eligible])
    req_user = np.repeat(eligible, n_req)
    req_t = request_times(users, req_user, day0, rng)
    order = np.argsort(req_t, kind="stable")
    req_user, req_t = req_user[order], req_t[order]

    catalogue = Catalogue(items, latent.params.categories)
    day_number = day0 // US_PER_DAY
    parts = [
        _events_for_requests(
            req_user[s : s + CHUNK], req_t[s : s + CHUNK], s, users, items, interests,
            latent, policy, catalogue, day_number, rng,
        )
        for s in range(0, len(req_user), CHUNK)
    ]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else None
    if cols is None or len(cols["ts"]) == 0:
        return schema.EVENTS.empty_table(), today
    order = np.argsort(cols["ts"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    n = len(order)
    event_type = pa.DictionaryArray.from_arrays(
        pa.array(cols["type"], pa.int8()), pa.array(schema.EVENT_TYPES)
    ).cast(pa.string())
    table = pa.table(
        {
            "event_id": pa.array(day_number * 10**11 + np.arange(n, dtype=np.int64)),
            "request_id": pa.array(cols["request"]),
            "user_id": pa.array(users.user_id[cols["user"]]),
            "item_id": pa.array(items.item_id[cols["item"]]),
            "event_type": event_type,
            "position": pa.array(cols["position"], pa.int32()),
            "event_timestamp": pa.array(cols["ts"], schema.TS),
        },
        schema=schema.EVENTS,
    )
    return table, today


def _events_for_requests(
    user, t, first_request, users, items, interests, latent, policy, catalogue, day_number, rng
) -> dict[str, np.ndarray]:
    n, k = len(user), latent.params.categories
    s, r = policy.impressions, policy.ranked_out
    c = s + r
    pref = preference_at(users.day_pref, users.eve_pref, interests, user, t)

    # Recall: candidate categories from the user's current interests, popularity or chance.
    source = rng.random((n, c))
    cum = np.cumsum(pref, axis=1)
    u = rng.random((n, c))
    from_user = (cum[:, None, :] < u[:, :, None]).sum(axis=2)
    from_pop = rng.choice(k, (n, c), p=latent.category_pop)
    uniform = rng.integers(0, k, (n, c))
    cats = np.where(
        source < policy.share_current_interest,
        from_user,
        np.where(source < policy.share_current_interest + policy.share_popular, from_pop, uniform),
    )
    cats = np.minimum(cats, k - 1)
    cand = catalogue.sample(cats.ravel(), np.repeat(t, c), rng).reshape(n, c)

    # Ranking: a noisy view of the true affinity; the top s are shown, the rest ranked out.
    aff = affinity(np.take_along_axis(pref, items.category[cand], axis=1), items.quality[cand], k)
    ranked = np.argsort(-(aff + rng.normal(0, 1.0, (n, c))), axis=1)
    cand = np.take_along_axis(cand, ranked, axis=1)
    aff = np.take_along_axis(aff, ranked, axis=1)
    position = np.broadcast_to(np.arange(c), (n, c))
    clicked = rng.random((n, s)) < click_probability(aff[:, :s], position[:, :s])

    req_id = day_number * 10**10 + first_request + np.arange(n, dtype=np.int64)
    rows_imp = (np.repeat(np.arange(n), s), np.tile(np.arange(s), n))
    ci, cj = np.nonzero(clicked)
    ri, rj = np.repeat(np.arange(n), r), np.tile(np.arange(s, c), n)
    end_of_day = (day_number + 1) * US_PER_DAY - 1
    click_ts = np.minimum(t[ci] + 1_000_000 + rng.exponential(20e6, len(ci)).astype(np.int64), end_of_day)
    return {
        "request": np.concatenate([req_id[rows_imp[0]], req_id[ci], req_id[ri]]),
        "user": np.concatenate([user[rows_imp[0]], user[ci], user[ri]]),
        "item": np.concatenate([cand[rows_imp], cand[ci, cj], cand[ri, rj]]),
        "type": np.concatenate(
            [np.zeros(n * s, np.int8), np.ones(len(ci), np.int8), np.full(n * r, 2, np.int8)]
        ),
        "position": np.concatenate([rows_imp[1], cj, np.full(n * r, -1)]).astype(np.int32),
        "ts": np.concatenate([t[rows_imp[0]] + rows_imp[1] * 1000, click_ts, t[ri]]),
    }
