"""Training examples of one micro-batch of stream events.

The same point-in-time join the full update uses (``materialize.examples.build_examples``):
one example per click, with the user's profile and the item's features valid at click time and
the request's ranked-out items as hard negatives. Three stream-specific rules:

* **Covered events are skipped.** Events up to the end of the generation's day are in the
  full model already; only later ones train the chain.
* **Hard negatives may precede the batch.** A request's ranked-out events are logged when the
  request is served, its clicks seconds later, so they often land in an earlier micro-batch.
  ``RecentRankedOut`` keeps the ranked-out events of the last ``lookback`` stream entries. The
  window is defined by stream positions only, so a consumer restarted at a position rebuilds
  exactly the window an uninterrupted one had (``read_before``) - same examples, same training.
* **logQ uses the generation's click shares** (the model's catalogue), not the batch's: a few
  seconds of clicks are far too few to estimate them, and the full model was trained with these.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from materialize.examples import build_examples
from materialize.sources import view_tables
from tfrs_models.records import empty_examples, example_columns
from twotower.core.features import FeatureSpec, Tower
from twotower.core.timeutil import to_us
from twotower.stream.base import empty_events

CONTEXT_COLUMNS = ("event_id", "request_id", "user_id", "item_id", "event_type", "event_timestamp")


class RecentRankedOut:
    """Ranked-out events among the last ``lookback`` stream entries before the next batch."""

    def __init__(self, lookback: int, before: pd.DataFrame | None = None):
        self.lookback = lookback
        self.seen = 0  # entries added so far (the seed's entries count as -len .. -1)
        self._rows = empty_events()[list(CONTEXT_COLUMNS)].assign(_k=np.zeros(0, np.int64))
        if before is not None and len(before):
            self._add(before.tail(lookback), -min(len(before), lookback))

    def _add(self, events: pd.DataFrame, first_k: int) -> None:
        ranked = events["event_type"].to_numpy() == "ranked_out"
        rows = events.loc[ranked, list(CONTEXT_COLUMNS)].assign(_k=first_k + np.nonzero(ranked)[0])
        keep = self._rows.loc[self._rows["_k"] >= first_k + len(events) - self.lookback] if len(self._rows) else self._rows
        self._rows = pd.concat([keep, rows], ignore_index=True) if len(keep) else rows.reset_index(drop=True)

    def frame(self) -> pd.DataFrame:
        """The window's ranked-out events (call before ``add`` of the batch they precede)."""
        return self._rows.loc[self._rows["_k"] >= self.seen - self.lookback, list(CONTEXT_COLUMNS)]

    def add(self, events: pd.DataFrame) -> None:
        self._add(events, self.seen)
        self.seen += len(events)


class OfflineTables:
    """The towers' feature views from their offline sources (re-read when their files change:
    new signups), cut to the entities a micro-batch needs."""

    def __init__(self, spec: FeatureSpec):
        self.spec = spec

    def rows(self, tower: Tower, ids) -> dict[str, pd.DataFrame]:
        keep = pd.Index(pd.unique(np.asarray(ids)))
        return {view: frame.loc[frame[tower.join_key].isin(keep)] for view, frame in view_tables(tower).items()}


def micro_batch_examples(
    events: pd.DataFrame,
    context: pd.DataFrame,
    tables: OfflineTables,
    frequencies: pd.DataFrame,
    not_before_us: int,
    *,
    hard_negatives: int,
) -> pd.DataFrame:
    """Examples of the batch's clicks after ``not_before_us``, in time order."""
    spec = tables.spec
    ts = to_us(events["event_timestamp"]) if len(events) else np.zeros(0, np.int64)
    fresh = events.loc[ts >= not_before_us]
    clicks = fresh.loc[fresh["event_type"] == "click"]
    if clicks.empty:
        return empty_examples(example_columns(spec, hard_negatives))
    # Ranked-out events of a request count even if logged before the cut (request served at
    # 23:59:59, clicked after midnight): they describe the click being trained.
    ranked = events.loc[events["event_type"] == "ranked_out"]
    requests = clicks["request_id"].unique()
    earlier = context.loc[context["request_id"].isin(requests)] if len(context) else context
    used = pd.concat([clicks, ranked.loc[ranked["request_id"].isin(requests)], earlier], ignore_index=True)
    used = used[list(CONTEXT_COLUMNS)].astype({"event_id": np.int64})
    return build_examples(
        used,
        tables.rows(spec.user, clicks["user_id"].unique()),
        tables.rows(spec.item, used["item_id"].unique()),
        spec=spec,
        hard_negatives=hard_negatives,
        frequencies=frequencies,
    )
