"""Exact recall@K of held-out clicks over the whole catalogue (numpy brute force).

For each held-out click (user vector of that request, clicked item) the item counts as
recalled at K if it is among the K items with the highest score ``a . b`` out of *all* items.
recall@K is the share of held-out clicks recalled. Exact, so it is the yardstick the ANN
index is measured against too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from tfrs_models.export import item_vectors, user_vectors
from tfrs_models.model import TwoTowerModel

KS = (10, 50, 100)


MISS = np.iinfo(np.int32).max  # the rank of a positive that is not among the items at all


def exact_ranks(
    query_vectors: np.ndarray,
    positive_item_ids: np.ndarray,
    item_ids: np.ndarray,
    item_matrix: np.ndarray,
    *,
    query_us: np.ndarray | None = None,
    created_us: np.ndarray | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """Rank (0 = top) of each query's positive item among all items by score ``a . b``: the
    number of items scoring strictly higher (ties favour the positive); ``MISS`` for a positive
    not in ``item_ids``. With ``query_us`` / ``created_us``, only items that existed at each
    query's time compete (the replay's catalogue grows during the day).

    The one exact rank counter: evaluation (recall@K) and the replay experiment use it; the
    positive's score is read from the same score matrix, so rounding cannot move it.
    """
    queries = np.asarray(query_vectors, dtype=np.float32)
    positives = np.asarray(positive_item_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    n = len(queries)
    if n == 0 or len(item_ids) == 0:
        return np.full(n, MISS, np.int64)
    order = np.argsort(item_ids, kind="stable")
    pos = order[np.minimum(np.searchsorted(item_ids, positives, sorter=order), len(item_ids) - 1)]
    known = item_ids[pos] == positives
    items_t = np.ascontiguousarray(np.asarray(item_matrix, dtype=np.float32).T)
    late = np.zeros(0, np.int64)
    if created_us is not None:
        created_us = np.asarray(created_us, np.int64)
        query_us = np.asarray(query_us, np.int64)
        late = np.nonzero(created_us > query_us.min())[0]  # created after some query: take back
    ranks = np.zeros(n, np.int64)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        scores = queries[s:e] @ items_t
        target = scores[np.arange(e - s), pos[s:e]][:, None]
        higher = (scores > target).sum(axis=1)
        if len(late):
            higher -= ((scores[:, late] > target) & (created_us[late][None, :] > query_us[s:e, None])).sum(axis=1)
        ranks[s:e] = higher
    return np.where(known, np.minimum(ranks, MISS), MISS)


def recall_at_k(
    query_vectors: np.ndarray,
    positive_item_ids: np.ndarray,
    item_ids: np.ndarray,
    item_matrix: np.ndarray,
    ks: Sequence[int] = KS,
    chunk: int = 1024,
) -> dict[int, float]:
    """``{K: recall@K}``; a positive not in ``item_ids`` counts as a miss."""
    ranks = exact_ranks(query_vectors, positive_item_ids, item_ids, item_matrix, chunk=chunk)
    if len(ranks) == 0:
        return {k: 0.0 for k in ks}
    return {k: float((ranks < k).mean()) for k in ks}


def popularity_ranks(item_ids: np.ndarray, clicks: np.ndarray, positive_item_ids: np.ndarray) -> np.ndarray:
    """Rank of each positive in the popularity baseline's list - every query gets the most
    clicked items (``clicks[i]`` clicks of ``item_ids[i]``; ties by item ID) - ``MISS`` if absent."""
    order = np.lexsort((np.asarray(item_ids, np.int64), -np.asarray(clicks, np.int64)))
    ranked = np.asarray(item_ids, np.int64)[order]
    rank_of = pd.Series(np.arange(len(ranked)), index=ranked)
    return rank_of.reindex(np.asarray(positive_item_ids, np.int64)).fillna(MISS).to_numpy(np.int64)


def popularity_recall_at_k(
    item_ids: np.ndarray, clicks: np.ndarray, positive_item_ids: np.ndarray, ks: Sequence[int] = KS
) -> dict[int, float]:
    """``{K: recall@K}`` of the popularity baseline, the yardstick a personalised model must
    beat on the same held-out clicks."""
    ranks = popularity_ranks(item_ids, clicks, positive_item_ids)
    if len(ranks) == 0:
        return {k: 0.0 for k in ks}
    return {k: float((ranks < k).mean()) for k in ks}


def split_recalls(ranks: np.ndarray, splits: dict[str, np.ndarray], prefix: str = "", ks: Sequence[int] = KS) -> dict[str, float]:
    """``{prefix}{split}_recall@K`` of each split of the clicks (a boolean mask; an empty split
    is left out), e.g. ``cold_users_recall@100``: the promotion gate and the report read them."""
    out = {}
    for name, mask in splits.items():
        if mask.any():
            out.update({f"{prefix}{name}_recall@{k}": float((ranks[mask] < k).mean()) for k in ks})
    return out


def evaluate_model(
    model: TwoTowerModel, examples: pd.DataFrame, items: pd.DataFrame, ks: Sequence[int] = KS
) -> dict[int, float]:
    """recall@K of ``examples`` (held-out clicks, examples columns) over every item in ``items``."""
    ids, matrix = item_vectors(model, items)
    queries = user_vectors(model, examples)
    return recall_at_k(queries, examples["item_id"].to_numpy(np.int64), ids, matrix, ks)


def id_diagnostics(model: TwoTowerModel, examples: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Whether the ID tables learned anything, and whether the user tower uses them.

    * ``user_id_rms_over_init`` / ``item_id_rms_over_init``: RMS of the known IDs' rows over
      the RMS of their initialisation (U(-s, s): s / sqrt(3)). ~1.0 = still at initialisation.
    * ``id_swap_cosine``: mean cosine between each held-out request's user vector and the vector
      of the same request (profile, hour) with another user's ID embedding. 1.0 = the ID part
      moves nothing (the tower serves the profile); the lower, the more of the vector is the ID's.
      The incremental update can only personalise through that part.
    """
    s = model.settings
    init_rms = s.id_init_scale / np.sqrt(3.0)
    out = {}
    for name, layer in (("user", model.user_ids), ("item", model.item_ids)):
        rows = layer.embeddings.numpy()[: len(layer.vocab)]
        out[f"{name}_id_rms_over_init"] = float(np.sqrt(np.mean(rows**2)) / init_rms) if len(rows) else float("nan")
    if len(examples) < 2:
        out["id_swap_cosine"] = float("nan")
        return out
    own = user_vectors(model, examples)
    swapped = examples.assign(user_id=np.random.default_rng(seed).permutation(examples["user_id"].to_numpy()))
    out["id_swap_cosine"] = float(np.mean(np.sum(own * user_vectors(model, swapped), axis=1)))
    return out
