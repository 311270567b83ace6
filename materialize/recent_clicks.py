"""Each user's recently clicked items: the optional ``features.history_view`` of the user service.

Serving reads it with the user's other online rows to leave out what the user already clicked
(``serving.exclude_seen``). Two writers keep it, like the user ID embeddings:

* the **full update** rebuilds the rows of the day's clicking users from the offline events of
  the last ``features.history_days`` days (``build``; a backfill: every user's), writes one
  parquet file per day into the view's batch source
  (``<workspace>/offline/recent_clicks``) and materializes it at publish;
* the **incremental update** merges each micro-batch's clicks into the online rows and pushes
  them through the view's push source (``merge``), seconds after the click.

A list holds at most ``features.history_len`` distinct items, newest first; merging the same
clicks twice gives the same list, so a replayed micro-batch changes nothing.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.core import schema
from twotower.core.features import FeatureSpec
from twotower.core.files import atomic_path
from twotower.core.workspace import Workspace


def newest_distinct(clicks: pd.DataFrame, length: int) -> pd.Series:
    """``user_id``, ``item_id``, ``event_timestamp`` clicks -> per user the list of distinct
    items, newest first, at most ``length`` long."""
    ordered = clicks.sort_values("event_timestamp", ascending=False, kind="stable")
    ordered = ordered.drop_duplicates(["user_id", "item_id"], keep="first")
    ordered = ordered.groupby("user_id", sort=True).head(length)
    return ordered.groupby("user_id", sort=True)["item_id"].agg(list)


def build(ws: Workspace, day: date, length: int, days: int, everyone: bool = False) -> pd.Series:
    """The lists as of the end of ``day``, from the clicks of the ``days`` days ending with it:
    of the users who clicked on ``day`` (the rows that changed; the others' rows stay as the
    online store has them, until the view's ttl), or of ``everyone`` in the window."""
    window = [d for d in ws.days() if day - timedelta(days=days) < d <= day]
    parts = [pd.read_parquet(ws.events_day_dir(d), columns=["user_id", "item_id", "event_type", "event_timestamp"])
             for d in window]  # fmt: skip
    if not parts:
        return pd.Series([], dtype=object)
    clicks = pd.concat(parts, ignore_index=True)
    clicks = clicks[clicks["event_type"] == "click"]
    if not everyone:
        clicks = clicks[clicks["user_id"].isin(pd.unique(parts[-1].loc[parts[-1]["event_type"] == "click", "user_id"]))]
    return newest_distinct(clicks, length)


def write_offline(ws: Workspace, lists: pd.Series, day: date, as_of: datetime, spec: FeatureSpec) -> int:
    """The day's lists as the view's batch source (one file per day, stamped ``as_of``); rows."""
    arrow_schema = schema.recent_clicks(spec.user.join_key, spec.user.id_type, spec.item.id_type)
    n = len(lists)
    now = datetime.now(timezone.utc)
    table = pa.table(
        {
            spec.user.join_key: pa.array(lists.index.tolist(), arrow_schema.field(0).type),
            "items": pa.array(lists.tolist(), arrow_schema.field("items").type),
            "event_timestamp": pa.array(np.full(n, as_of), schema.TS),
            "created_timestamp": pa.array(np.full(n, now), schema.TS),
        },
        schema=arrow_schema,
    )
    ws.recent_clicks_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(ws.recent_clicks_dir / f"{day.isoformat()}.parquet") as tmp:
        pq.write_table(table, tmp)
    return n


def merge(current: list | None, clicks: list, length: int) -> list:
    """A user's online list with newer ``clicks`` (oldest first) in front: distinct, newest first."""
    out: list = []
    for item in [*reversed(clicks), *(current or [])]:
        if item not in out:
            out.append(item)
            if len(out) == length:
                break
    return out
