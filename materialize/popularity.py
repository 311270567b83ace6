"""Each item's recent clicks, decayed: the generation's popular items and the optional
``features.popularity_view`` of the item service.

What is popular *now* is a strong signal of the next click (a new release, a story of the day),
and one the ID embeddings carry badly: an item's row keeps yesterday's popularity until it is
clicked again. So the platform counts it, like it writes the user ID embeddings:

* every prepared day *d* keeps a **state**, per item key, of its clicks decayed by
  ``exp(-age / tau)`` for each time constant ``tau`` in use: ``state_d = state_prev *
  exp(-gap / tau) + clicks_d`` (``gap``: days since the previous prepared day). Held-out
  requests are not counted: the evaluation must not see its own clicks in a feature.
  (``<tfrecords>/<d>/item_popularity.parquet``; a missing or narrower previous state is
  rebuilt from the prepared days' click counts.)
* the generation's **popular items** (the serving fallback) are the state sorted by
  ``full_update.popular_decay_days``;
* if the item service declares the **popularity view**, each of its fields is
  ``log1p(decayed clicks)`` over its ``decay_days`` tag, written into the view's batch source
  (one parquet file per day, stamped just before midnight UTC of *d*, rows whose value changed
  at 0.01). A click on day *d + 1* is then joined with the state of *d* - what serving knew -
  and the export of day *d*'s generation reads the state of *d*. An item never clicked has no
  row: the tower's "missing" input.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.core import schema
from twotower.core.encode import id_keys
from twotower.core.features import FeatureSpec
from twotower.core.files import atomic_path
from twotower.core.workspace import Workspace

STATE = "item_popularity.parquet"
ROUND = 100  # the view's values are kept at 0.01 (a row is written when that changes)


def horizons(spec: FeatureSpec, popular_decay_days: float) -> list[float]:
    """The time constants (days) the state keeps: the popularity view's fields' and the popular items'."""
    taus = {f.decay_days for f in spec.item.features if f.decay_days > 0}
    if popular_decay_days > 0:
        taus.add(popular_decay_days)
    return sorted(taus)


def column(tau: float) -> str:
    return f"decay_{tau:g}d"


def advance(previous: pd.DataFrame | None, gap_days: float, clicks: pd.Series, taus: list[float]) -> pd.DataFrame:
    """``previous`` state (``item_id`` key + a column per tau) ``gap_days`` later, plus ``clicks``
    (item key -> clicks of the new day): the new state, sorted by key, items with any weight left."""
    counts = clicks[clicks > 0].astype(np.float64)
    if previous is None:
        previous = pd.DataFrame({"item_id": np.zeros(0, np.int64), **{column(t): np.zeros(0) for t in taus}})
    keys = np.union1d(previous["item_id"].to_numpy(np.int64), counts.index.to_numpy(np.int64))
    old = previous.set_index("item_id").reindex(keys, fill_value=0.0)
    new = counts.reindex(keys, fill_value=0.0).to_numpy(np.float64)
    out = pd.DataFrame({"item_id": keys})
    for tau in taus:
        out[column(tau)] = old[column(tau)].to_numpy(np.float64) * np.exp(-gap_days / tau) + new
    keep = (out[[column(t) for t in taus]] >= 1e-3).any(axis=1).to_numpy()  # a click 7 tau ago weighs < 1e-3
    return out.loc[keep].reset_index(drop=True)


def _counts(frequencies: pd.DataFrame) -> pd.Series:
    """A prepared day's counted clicks per item key (held-out requests excluded when recorded)."""
    column_name = "trained_clicks" if "trained_clicks" in frequencies.columns else "clicks"
    return pd.Series(frequencies[column_name].to_numpy(np.int64), index=frequencies["item_id"].to_numpy(np.int64))


def previous_state(ws: Workspace, day: date, taus: list[float], prepared: list[date],
                   frequencies: str) -> tuple[date | None, pd.DataFrame | None]:  # fmt: skip
    """The newest of the ``prepared`` days before ``day`` and its state with every tau, rebuilt
    from the prepared days' click counts (their ``frequencies`` tables) when it is missing or
    lacks a tau."""
    before = sorted(d for d in prepared if d < day)
    if not before:
        return None, None
    last = ws.tfrecords_dir(before[-1]) / STATE
    if last.exists():
        state = pd.read_parquet(last)
        if all(column(t) in state.columns for t in taus):
            return before[-1], state[["item_id", *(column(t) for t in taus)]]
    state, at = None, None
    for d in before:
        gap = (d - at).days if at else 0
        state, at = advance(state, gap, _counts(pd.read_parquet(ws.tfrecords_dir(d) / frequencies)), taus), d
    return at, state


def popular(state: pd.DataFrame, tau: float, n: int) -> pd.DataFrame:
    """The ``n`` items of most decayed clicks over ``tau`` (``item_id`` key, ``clicks``), best first."""
    out = pd.DataFrame({"item_id": state["item_id"].to_numpy(np.int64), "clicks": state[column(tau)].to_numpy()})
    return out.sort_values(["clicks", "item_id"], ascending=[False, True], kind="stable").head(n).reset_index(drop=True)


def _values(state: pd.DataFrame | None, spec: FeatureSpec) -> pd.DataFrame:
    """The view's rounded field values per item key (empty without a state)."""
    fields = [f for f in spec.item.features if f.view == spec.popularity_view]
    if state is None:
        return pd.DataFrame({"item_id": np.zeros(0, np.int64), **{f.name: np.zeros(0) for f in fields}})
    out = pd.DataFrame({"item_id": state["item_id"].to_numpy(np.int64)})
    for f in fields:
        out[f.name] = np.round(np.log1p(state[column(f.decay_days)].to_numpy(np.float64)) * ROUND) / ROUND
    return out


def write_view(spec: FeatureSpec, day: date, state: pd.DataFrame, previous: pd.DataFrame | None,
               item_labels: np.ndarray) -> int:  # fmt: skip
    """The day's rows into the popularity view's batch source: those that changed since the
    ``previous`` state (every row without one); returns how many."""
    tower = spec.item
    fields = [f for f in tower.features if f.view == spec.popularity_view]
    now, before = _values(state, spec), _values(previous, spec)
    # An item that fell out of the state reads 0 from now on (once).
    gone = np.setdiff1d(before["item_id"].to_numpy(np.int64), now["item_id"].to_numpy(np.int64))
    now = pd.concat([now, pd.DataFrame({"item_id": gone, **{f.name: 0.0 for f in fields}})], ignore_index=True)
    merged = now.merge(before, on="item_id", how="left", suffixes=("", "_before"))
    changed = np.zeros(len(merged), bool)
    for f in fields:
        changed |= ~np.isclose(merged[f.name].to_numpy(), merged[f"{f.name}_before"].to_numpy(), atol=0.5 / ROUND)
    rows = merged.loc[changed]
    label_of = pd.Series(item_labels, index=id_keys(item_labels, tower.id_type, "items"))
    rows = rows.loc[rows["item_id"].isin(label_of.index)]  # an item without a row of its own is not written
    labels = label_of[~label_of.index.duplicated()].loc[rows["item_id"].to_numpy(np.int64)].to_numpy()
    arrow_schema = schema.popularity(tower, spec.popularity_view)
    stamp = datetime.combine(day + timedelta(days=1), datetime.min.time(), timezone.utc) - timedelta(microseconds=1)
    n = len(rows)
    columns = {tower.join_key: pa.array(labels.tolist(), arrow_schema.field(tower.join_key).type)}
    for f in fields:
        columns[f.name] = pa.array(rows[f.name].to_numpy(), arrow_schema.field(f.name).type)
    columns["event_timestamp"] = pa.array(np.full(n, stamp), schema.TS)
    columns["created_timestamp"] = pa.array(np.full(n, datetime.now(timezone.utc)), schema.TS)
    directory = popularity_dir(spec)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / f"{day.isoformat()}.parquet") as tmp:
        pq.write_table(pa.table(columns, schema=arrow_schema), tmp)
    return n


def written_before(spec: FeatureSpec, day: date) -> bool:
    """Whether the view's source holds a day before ``day`` (else a day's file holds every row)."""
    directory = popularity_dir(spec)
    return any(p.stem < day.isoformat() for p in directory.glob("????-??-??.parquet")) if directory.is_dir() else False


def popularity_dir(spec: FeatureSpec) -> Path:
    return Path(spec.item.source(spec.popularity_view).path)
