"""Training examples from the offline tables: pure pandas, one call per (Dask) partition.

One example per click, with the user's profile and the item's features *as they were at click
time* (point-in-time join: only profile/item rows with ``event_timestamp <= click time``; the
newest such row wins), the hour of day, the clicked item's click share (logQ correction) and
the request's ranked-out items with their features as hard negatives.

Partitioning contract for Dask: a request's click and ranked-out events must sit in the same
partition (partition the day's events by ``user_id`` or ``request_id``), and ``frequencies``
must be computed over the whole day (``item_frequencies`` of all partitions' events), not
per partition. ``users`` and ``items`` are the full tables (small next to the events).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from twotower.core.timeutil import to_us
from twotower.core.errors import DataError
from tfrs_models.catalog import pad_lists, require_columns
from tfrs_models.records import COLUMN_NAMES

EVENT_COLUMNS = ("request_id", "user_id", "item_id", "event_type", "event_timestamp")
USER_COLUMNS = ("user_id", "age_bucket", "gender", "city_tier", "interest_tags", "event_timestamp")
ITEM_COLUMNS = ("item_id", "category", "author_id", "tags", "event_timestamp")
MISSING = -1  # categorical value of a profile/item row that did not exist yet at click time


def _utc(ts: pd.Series, where: str) -> pd.Series:
    try:
        return pd.to_datetime(ts, utc=True).dt.as_unit("us")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: column 'event_timestamp' is not a timestamp ({exc})") from None


def item_frequencies(events: pd.DataFrame, item_ids=None, smoothing: float = 1.0) -> pd.DataFrame:
    """Click share of each item: ``item_id, clicks, prob`` (the logQ correction's q).

    With ``item_ids`` every one of them gets a row and shares are Laplace-smoothed
    (``(clicks + smoothing) / (total + smoothing * n)``), so an item nobody clicked today still
    has a small positive probability; without, only clicked items are listed.
    """
    require_columns(events, ("item_id", "event_type"), "events")
    clicks = events.loc[events["event_type"] == "click", "item_id"].astype(np.int64)
    counts = clicks.value_counts()
    if item_ids is not None:
        ids = np.unique(np.concatenate([np.asarray(item_ids, np.int64), counts.index.to_numpy(np.int64)]))
        counts = counts.reindex(ids, fill_value=0)
        s = smoothing
    else:
        s = 0.0
    counts = counts.sort_index()
    total = float(counts.sum()) + s * len(counts)
    prob = (counts.to_numpy(np.float64) + s) / total if total > 0 else np.zeros(len(counts))
    return pd.DataFrame(
        {"item_id": counts.index.to_numpy(np.int64), "clicks": counts.to_numpy(np.int64), "prob": prob.astype(np.float32)}
    )


def _as_of(left: pd.DataFrame, right: pd.DataFrame, key: str) -> pd.DataFrame:
    """``left`` (with ``_ts``) + the newest ``right`` row of the same key valid at ``_ts``.

    ``right`` is first cut to the keys ``left`` has: a partition of the day touches a fraction of
    the catalogue, and sorting all of it (1M items) per partition was the join's main cost.
    """
    right = right.loc[right[key].isin(left[key].unique())]
    right = right.rename(columns={"event_timestamp": "_valid_from"}).sort_values("_valid_from", kind="stable")
    merged = pd.merge_asof(
        left.sort_values("_ts", kind="stable"),
        right,
        left_on="_ts",
        right_on="_valid_from",
        by=key,
        direction="backward",
        allow_exact_matches=True,
    )
    return merged.sort_values("_row", kind="stable").reset_index(drop=True)


def _hard_negatives(events, clicks, items, hard_negatives, max_tags, prob_of):
    n, h, t = len(clicks), hard_negatives, max_tags
    out = {
        "hard_item_id": np.full((n, h), -1, np.int64),
        "hard_category": np.full((n, h), MISSING, np.int64),
        "hard_author_id": np.full((n, h), MISSING, np.int64),
        "hard_tags": np.zeros((n, h, t), np.int64),
        "hard_prob": np.zeros((n, h), np.float32),
        "hard_mask": np.zeros((n, h), np.int64),
    }
    ranked = events.loc[events["event_type"] == "ranked_out"]
    if h == 0 or n == 0 or ranked.empty:
        return out
    order = ["request_id", "event_id"] if "event_id" in ranked.columns else ["request_id"]
    ranked = ranked.sort_values(order, kind="stable")
    ranked = ranked.assign(_slot=ranked.groupby("request_id").cumcount())
    ranked = ranked.loc[ranked["_slot"] < h, ["request_id", "item_id", "_slot"]]
    pairs = clicks[["_row", "request_id", "_ts"]].merge(ranked, on="request_id", how="inner")
    if pairs.empty:
        return out
    pairs = pairs.reset_index(drop=True).assign(_pair=lambda d: np.arange(len(d)))
    feats = _as_of(pairs.rename(columns={"_row": "_click", "_pair": "_row"}), items, "item_id")
    r, s = feats["_click"].to_numpy(), feats["_slot"].to_numpy()
    out["hard_item_id"][r, s] = feats["item_id"].to_numpy(np.int64)
    out["hard_category"][r, s] = feats["category"].fillna(MISSING).to_numpy(np.int64)
    out["hard_author_id"][r, s] = feats["author_id"].fillna(MISSING).to_numpy(np.int64)
    out["hard_tags"][r, s] = pad_lists(feats["tags"].to_numpy(), t)
    out["hard_prob"][r, s] = prob_of(feats["item_id"].to_numpy(np.int64))
    out["hard_mask"][r, s] = 1
    return out


def build_examples(
    events: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    *,
    max_tags: int,
    hard_negatives: int,
    day: date | None = None,
    frequencies: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Examples (``tfrs_models.records.EXAMPLE_COLUMNS``) of the clicks in ``events``, in time order.

    ``day``: keep only clicks of that UTC day. ``frequencies``: the day's ``item_frequencies``
    (default: computed from ``events`` over every item in ``items``).
    """
    require_columns(events, EVENT_COLUMNS, "events")
    require_columns(users, USER_COLUMNS, "users")
    require_columns(items, ITEM_COLUMNS, "items")
    events = events.assign(event_timestamp=_utc(events["event_timestamp"], "events"))
    users = users.loc[:, list(USER_COLUMNS)].assign(event_timestamp=_utc(users["event_timestamp"], "users"))
    items = items.loc[:, list(ITEM_COLUMNS)].assign(event_timestamp=_utc(items["event_timestamp"], "items"))
    if frequencies is None:
        frequencies = item_frequencies(events, items["item_id"].to_numpy())
    freq = pd.Series(frequencies["prob"].to_numpy(np.float32), index=frequencies["item_id"].to_numpy(np.int64))
    floor = float(freq.min()) if len(freq) else 1.0

    def prob_of(ids: np.ndarray) -> np.ndarray:
        return freq.reindex(ids).fillna(floor).to_numpy(np.float32)

    clicks = events.loc[events["event_type"] == "click"]
    if day is not None:
        clicks = clicks.loc[clicks["event_timestamp"].dt.date == day]
    sort = ["event_timestamp", "event_id"] if "event_id" in clicks.columns else ["event_timestamp"]
    clicks = clicks.sort_values(sort, kind="stable").reset_index(drop=True)
    clicks = clicks[["request_id", "user_id", "item_id", "event_timestamp"]].rename(columns={"event_timestamp": "_ts"})
    clicks = clicks.assign(_row=np.arange(len(clicks)), user_id=clicks["user_id"].astype(np.int64),
                           item_id=clicks["item_id"].astype(np.int64))  # fmt: skip
    users = users.assign(user_id=users["user_id"].astype(np.int64))
    items = items.assign(item_id=items["item_id"].astype(np.int64))
    with_user = _as_of(clicks, users, "user_id")
    with_item = _as_of(clicks[["_row", "item_id", "_ts"]], items, "item_id")
    hard = _hard_negatives(events, clicks, items, hard_negatives, max_tags, prob_of)
    n = len(clicks)

    def cat(frame: pd.DataFrame, col: str) -> np.ndarray:
        return frame[col].fillna(MISSING).to_numpy(np.int64) if n else np.zeros(0, np.int64)

    columns = {
        "user_id": clicks["user_id"].to_numpy(np.int64),
        "item_id": clicks["item_id"].to_numpy(np.int64),
        "request_id": clicks["request_id"].to_numpy(np.int64),
        "event_timestamp": to_us(clicks["_ts"]),
        "hour": clicks["_ts"].dt.hour.to_numpy(np.int64),
        "age_bucket": cat(with_user, "age_bucket"),
        "gender": cat(with_user, "gender"),
        "city_tier": cat(with_user, "city_tier"),
        "interest_tags": list(pad_lists(with_user["interest_tags"].to_numpy(), max_tags)),
        "category": cat(with_item, "category"),
        "author_id": cat(with_item, "author_id"),
        "tags": list(pad_lists(with_item["tags"].to_numpy(), max_tags)),
        "item_prob": prob_of(clicks["item_id"].to_numpy(np.int64)),
        "hard_item_id": list(hard["hard_item_id"]),
        "hard_category": list(hard["hard_category"]),
        "hard_author_id": list(hard["hard_author_id"]),
        "hard_tags": list(hard["hard_tags"].reshape(n, hard_negatives * max_tags)),
        "hard_prob": list(hard["hard_prob"]),
        "hard_mask": list(hard["hard_mask"]),
    }
    out = pd.DataFrame(
        {k: pd.Series(v, dtype=object) if isinstance(v, list) else v for k, v in columns.items()}
    )  # list columns stay object dtype even when empty (Dask meta)
    assert tuple(out.columns) == COLUMN_NAMES
    return out
