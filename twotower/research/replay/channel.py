"""What the recall channel returns at a moment, measured exactly.

A strategy's channel at a moment = its item index (item vectors computed at midnight, as the
nightly export builds it, frozen all day: intraday updates publish user ID embeddings only)
queried with a user vector from its *current* model (profile + hour at request time + the
newest user ID embedding). Search is exact over the items that exist at the click time, so
the numbers measure the model, not an ANN approximation.

The oracle ranks items by the simulator's true affinity at the click time
(``Truth.oracle_topk``): the best a channel that knew each user's true taste could do.
It is a ceiling for finding what users like, not strictly for recalling logged clicks: a
click also needs an impression, and the logging policy shows popular items more often, which
a model trained on clicks can partly learn and the oracle ignores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfrs_models.evaluate import MISS, exact_ranks
from tfrs_models.export import item_vectors, user_vectors
from tfrs_models.model import TwoTowerModel
from twotower.research.simulate import Truth
from twotower.research.simulate.truth import affinity



@dataclass(frozen=True)
class MidnightVectors:
    """Every item's vector as the nightly export computed it (frozen all day), searched exactly."""

    item_id: np.ndarray  # [n] int64, sorted
    vectors: np.ndarray  # [n, d] float32
    created_us: np.ndarray  # [n] int64

    @classmethod
    def build(cls, model: TwoTowerModel, items: pd.DataFrame, created_us: pd.Series) -> "MidnightVectors":
        ids, vectors = item_vectors(model, items)
        order = np.argsort(ids)
        ids, vectors = ids[order], vectors[order]
        return cls(ids, vectors, created_us.reindex(ids).to_numpy(np.int64))


def ranks(
    model: TwoTowerModel, index: MidnightVectors, features: dict[str, np.ndarray], chunk: int = 512
) -> np.ndarray:
    """Rank (0 = top) of each query's clicked item among the items existing at its click time.

    ``features``: example tensors of the clicks (user_id, profile, hour, item_id,
    event_timestamp). ``MISS`` when the clicked item is not in the index. The evaluation's own
    counter (``tfrs_models.evaluate.exact_ranks``), with the catalogue as of each click.
    """
    clicked = np.asarray(features["item_id"], np.int64)
    if len(clicked) == 0:
        return np.zeros(0, np.int32)
    t = np.asarray(features["event_timestamp"], np.int64)
    out = exact_ranks(user_vectors(model, features), clicked, index.item_id, index.vectors,
                      query_us=t, created_us=index.created_us, chunk=chunk)  # fmt: skip
    return out.astype(np.int32)


def oracle_ranks(truth: Truth, features: dict[str, np.ndarray]) -> np.ndarray:
    """Rank of each clicked item by true affinity at click time among the items existing then.

    The fast form of ``Truth.oracle_topk`` (item in the oracle's top K <=> rank < K;
    ``tests/test_replay.py`` checks they agree). The simulator's affinity (``truth.affinity``)
    is a per-category log-lift plus the item's quality, so the items beating the clicked one
    are counted per category by binary search over qualities instead of scoring every item.
    """
    users = np.asarray(features["user_id"], np.int64)
    n = len(users)
    if n == 0:
        return np.zeros(0, np.int32)
    t = np.asarray(features["event_timestamp"], np.int64)
    pref = truth.preference(users, t)
    n_cat = pref.shape[1]
    lift = affinity(pref, np.zeros(1), n_cat)  # [n, categories]
    alive = truth.created_us <= t.max()
    item_id, category = truth.item_id[alive], truth.category[alive]
    quality, created = truth.quality[alive], truth.created_us[alive]
    order = np.argsort(item_id)
    clicked = np.asarray(features["item_id"], np.int64)
    pos = order[np.minimum(np.searchsorted(item_id, clicked, sorter=order), len(item_id) - 1)]
    known = item_id[pos] == clicked
    rows, own = np.arange(n), category[pos]
    target = lift[rows, own] + quality[pos]
    higher = np.zeros(n, np.int64)
    for c in range(n_cat):
        q = np.sort(quality[category == c])
        higher += len(q) - np.searchsorted(q, target - lift[:, c], side="right")
    higher -= quality[pos] > target - lift[rows, own]  # the clicked item, if rounding counted it
    late = np.nonzero(created > t.min())[0]  # created after some of the clicks: take back the unborn
    if len(late):
        beats = lift[:, category[late]] + quality[late][None, :] > target[:, None]
        higher -= (beats & (created[late][None, :] > t[:, None])).sum(axis=1)
    return np.where(known, np.minimum(higher, MISS), MISS).astype(np.int32)
