"""Training examples from the offline tables: pure pandas, one call per (Dask) partition.

One example per click, with the user's and the item's declared features *as they were at click
time* (point-in-time join per feature view: only rows of the view's source with
``timestamp <= click time``; the newest such row wins, as Feast's ``get_historical_features``
does), the request context, the clicked item's click share (logQ correction) and the request's
ranked-out items with their features as hard negatives. Columns: ``tfrs_models.records``.

IDs become int64 keys here (``encode.id_keys``: integer IDs as they are, string IDs hashed),
feature values their encoded form (``encode.encode``).

Partitioning contract for Dask: a request's click and ranked-out events must sit in the same
partition (partition the day's events by ``user_id`` or ``request_id``), and ``frequencies``
must be computed over the whole day (``item_frequencies`` of all partitions' events), not
per partition. The views' tables are the full tables (small next to the events).
"""

from __future__ import annotations

from datetime import date
from typing import Mapping

import numpy as np
import pandas as pd

from tfrs_models.catalog import require_columns
from twotower.core.errors import DataError
from twotower.core.encode import absent, context_values, encode, id_keys
from twotower.core.features import FeatureSpec, Tower
from twotower.core.timeutil import to_us

EVENT_COLUMNS = ("request_id", "user_id", "item_id", "event_type", "event_timestamp")
Tables = pd.DataFrame | Mapping[str, pd.DataFrame]  # one frame for every view, or view -> its source rows


def _utc(ts: pd.Series, where: str, column: str = "event_timestamp") -> pd.Series:
    try:
        return pd.to_datetime(ts, utc=True).dt.as_unit("us")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: column {column!r} is not a timestamp ({exc})") from None


def request_keys(values) -> np.ndarray:
    """Request IDs (integers or strings) -> int64 keys."""
    arr = np.asarray(values)
    return id_keys(arr, "int" if arr.dtype.kind in "iu" else "string", "events column 'request_id'")


def item_frequencies(events: pd.DataFrame, item_ids=None, smoothing: float = 1.0, id_type: str = "int") -> pd.DataFrame:
    """Click share of each item: ``item_id`` (key), ``clicks``, ``prob`` (the logQ correction's q).

    With ``item_ids`` (original IDs) every one of them gets a row and shares are Laplace-smoothed
    (``(clicks + smoothing) / (total + smoothing * n)``), so an item nobody clicked today still
    has a small positive probability; without, only clicked items are listed.
    """
    require_columns(events, ("item_id", "event_type"), "events")
    clicked = events.loc[events["event_type"] == "click", "item_id"].to_numpy()
    counts = pd.Series(id_keys(clicked, id_type, "events column 'item_id'")).value_counts()
    if item_ids is not None:
        known = id_keys(np.asarray(item_ids), id_type, "items")
        ids = np.unique(np.concatenate([known, counts.index.to_numpy(np.int64)]))
        counts = counts.reindex(ids, fill_value=0)
        s = smoothing
    else:
        s = 0.0
    return click_shares(counts, s)


def click_shares(counts: pd.Series, smoothing: float = 1.0) -> pd.DataFrame:
    """Clicks per item key -> the frequency table (``item_id``, ``clicks``, ``prob``), sorted by key."""
    counts = counts.sort_index()
    total = float(counts.sum()) + smoothing * len(counts)
    prob = (counts.to_numpy(np.float64) + smoothing) / total if total > 0 else np.zeros(len(counts))
    return pd.DataFrame(
        {"item_id": counts.index.to_numpy(np.int64), "clicks": counts.to_numpy(np.int64), "prob": prob.astype(np.float32)}
    )


def _view_table(tables: Tables, tower: Tower, view: str) -> tuple[pd.DataFrame, str]:
    """The view's source rows with ``_key`` and ``_valid_from``; and the view's timestamp column."""
    frame = tables if isinstance(tables, pd.DataFrame) else tables[view]
    source = next((s for s in tower.sources if s.view == view), None)
    ts = source.timestamp_field if source is not None and source.timestamp_field in frame.columns else "event_timestamp"
    fields = [f.name for f in tower.features if f.view == view]
    where = f"feature view {view!r}" + (f" ({source.path})" if source is not None else "")
    require_columns(frame, (tower.join_key, ts, *fields), where)
    out = frame.loc[:, [tower.join_key, *fields]].copy()
    out["_key"] = id_keys(frame[tower.join_key].to_numpy(), tower.id_type, f"{where} column {tower.join_key!r}")
    out["_valid_from"] = _utc(frame[ts], where, ts)
    order = ["_valid_from"]
    if source is not None and source.created_timestamp_column and source.created_timestamp_column in frame.columns:
        out["_created"] = _utc(frame[source.created_timestamp_column], where, source.created_timestamp_column)
        order.append("_created")
    out = out.sort_values(order, kind="stable").drop(columns=[tower.join_key, *(["_created"] if len(order) > 1 else [])])
    return out, ts


def _as_of(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """``left`` (``_row``, ``_key``, ``_ts``) + the newest ``right`` row of the same key valid at ``_ts``.

    ``right`` is first cut to the keys ``left`` has: a partition of the day touches a fraction of
    the catalogue, and sorting all of it (1M items) per partition was the join's main cost.
    """
    right = right.loc[right["_key"].isin(left["_key"].unique())]
    merged = pd.merge_asof(
        left.sort_values("_ts", kind="stable"),
        right,
        left_on="_ts",
        right_on="_valid_from",
        by="_key",
        direction="backward",
        allow_exact_matches=True,
    )
    return merged.sort_values("_row", kind="stable").reset_index(drop=True)


def point_in_time(keys: np.ndarray, at: pd.Series, tables: Tables, tower: Tower) -> dict[str, np.ndarray]:
    """Each declared feature of ``tower`` for (key, time) rows, encoded; absent where no row was valid yet."""
    n = len(keys)
    out = {f.name: absent(f, n) for f in tower.features}
    if n == 0:
        return out
    left = pd.DataFrame({"_row": np.arange(n), "_key": keys, "_ts": at.reset_index(drop=True)})
    for view in tower.views():
        right, _ = _view_table(tables, tower, view)
        joined = _as_of(left, right)
        for f in tower.features:
            if f.view == view:
                out[f.name] = encode(f, joined[f.name], f"feature view {view!r}")
    return out


def _hard_negatives(events, clicks, items: Tables, spec: FeatureSpec, hard_negatives: int, prob_of):
    n, h, tower = len(clicks), hard_negatives, spec.item
    out = {"hard_item_id": np.full((n, h), -1, np.int64)}
    for f in tower.features:
        out[f"hard__{f.name}"] = absent(f, n * h).reshape(n, h, *f.shape)
    out["hard_prob"] = np.zeros((n, h), np.float32)
    out["hard_mask"] = np.zeros((n, h), np.int64)
    ranked = events.loc[events["event_type"] == "ranked_out"]
    if h == 0 or n == 0 or ranked.empty:
        return out
    order = ["_request", "event_id"] if "event_id" in ranked.columns else ["_request"]
    ranked = ranked.sort_values(order, kind="stable")
    ranked = ranked.assign(_slot=ranked.groupby("_request").cumcount())
    ranked = ranked.loc[ranked["_slot"] < h, ["_request", "_item", "_slot"]]
    pairs = clicks[["_row", "_request", "_ts"]].merge(ranked, on="_request", how="inner")
    if pairs.empty:
        return out
    r, s = pairs["_row"].to_numpy(), pairs["_slot"].to_numpy()
    keys = pairs["_item"].to_numpy(np.int64)
    feats = point_in_time(keys, pairs["_ts"], items, tower)
    out["hard_item_id"][r, s] = keys
    for f in tower.features:
        out[f"hard__{f.name}"][r, s] = feats[f.name]
    out["hard_prob"][r, s] = prob_of(keys)
    out["hard_mask"][r, s] = 1
    return out


def build_examples(
    events: pd.DataFrame,
    users: Tables,
    items: Tables,
    *,
    spec: FeatureSpec,
    hard_negatives: int,
    day: date | None = None,
    frequencies: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Examples (``tfrs_models.records.example_columns``) of the clicks in ``events``, in time order.

    ``users`` / ``items``: the rows of the towers' feature views (one frame holding every view's
    fields, or view name -> its source's rows). ``day``: keep only clicks of that UTC day.
    ``frequencies``: the day's ``item_frequencies`` (default: computed from ``events`` over
    every item in ``items``).
    """
    require_columns(events, EVENT_COLUMNS, "events")
    events = events.assign(
        event_timestamp=_utc(events["event_timestamp"], "events"),
        _request=request_keys(events["request_id"].to_numpy()),
        _item=id_keys(events["item_id"].to_numpy(), spec.item.id_type, "events column 'item_id'"),
    )
    if frequencies is None:
        frame = items if isinstance(items, pd.DataFrame) else next(iter(items.values()))
        frequencies = item_frequencies(events, frame[spec.item.join_key].to_numpy(), id_type=spec.item.id_type)
    freq = pd.Series(frequencies["prob"].to_numpy(np.float32), index=frequencies["item_id"].to_numpy(np.int64))
    floor = float(freq.min()) if len(freq) else 1.0

    def prob_of(keys: np.ndarray) -> np.ndarray:
        return freq.reindex(keys).fillna(floor).to_numpy(np.float32)

    clicks = events.loc[events["event_type"] == "click"]
    if day is not None:
        clicks = clicks.loc[clicks["event_timestamp"].dt.date == day]
    sort = ["event_timestamp", "event_id"] if "event_id" in clicks.columns else ["event_timestamp"]
    clicks = clicks.sort_values(sort, kind="stable").reset_index(drop=True)
    clicks = clicks.assign(
        _row=np.arange(len(clicks)), _ts=clicks["event_timestamp"],
        _user=id_keys(clicks["user_id"].to_numpy(), spec.user.id_type, "events column 'user_id'"),
    )  # fmt: skip
    n = len(clicks)
    user = point_in_time(clicks["_user"].to_numpy(np.int64), clicks["_ts"], users, spec.user)
    item = point_in_time(clicks["_item"].to_numpy(np.int64), clicks["_ts"], items, spec.item)
    hard = _hard_negatives(events, clicks, items, spec, hard_negatives, prob_of)

    def cell(values: np.ndarray):
        return list(values.reshape(n, int(np.prod(values.shape[1:])))) if values.ndim > 1 else values

    columns = {
        "user_id": clicks["_user"].to_numpy(np.int64),
        "item_id": clicks["_item"].to_numpy(np.int64),
        "request_id": clicks["_request"].to_numpy(np.int64),
        "event_timestamp": to_us(clicks["_ts"]),
        **context_values(clicks["_ts"], spec.context),
    }
    columns.update({spec.user.column(f): cell(user[f.name]) for f in spec.user.features})
    columns.update({spec.item.column(f): cell(item[f.name]) for f in spec.item.features})
    columns["item_prob"] = prob_of(clicks["_item"].to_numpy(np.int64))
    columns.update({k: cell(v) for k, v in hard.items()})
    out = pd.DataFrame(
        {k: pd.Series(v, dtype=object) if isinstance(v, list) else v for k, v in columns.items()}
    )  # list columns stay object dtype even when empty (Dask meta)
    return out
