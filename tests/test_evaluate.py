"""The one exact rank counter (evaluation and the replay) and the popularity baseline,
against brute force written out longhand."""

import numpy as np

from tfrs_models.evaluate import MISS, exact_ranks, popularity_recall_at_k, recall_at_k


def _world(seed=0):
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(60, 8)).astype(np.float32)
    items = rng.normal(size=(40, 8)).astype(np.float32)
    ids = rng.permutation(np.arange(100, 140))
    positives = rng.choice(np.r_[ids, [999]], 60)  # 999: not an item
    return rng, queries, items, ids, positives


def test_exact_ranks_count_the_items_scoring_higher_among_those_that_existed():
    rng, queries, items, ids, positives = _world()
    created, at = rng.integers(0, 10, len(ids)), rng.integers(0, 10, len(queries))
    scores = queries @ items.T
    for ranks, alive in ((exact_ranks(queries, positives, ids, items, chunk=7), lambda i: np.ones(len(ids), bool)),
                         (exact_ranks(queries, positives, ids, items, query_us=at, created_us=created, chunk=7),
                          lambda i: created <= at[i])):  # fmt: skip
        for i, p in enumerate(positives):
            if p not in ids:
                assert ranks[i] == MISS
            else:
                target = scores[i, list(ids).index(p)]
                assert ranks[i] == ((scores[i] > target) & alive(i)).sum()
    got = recall_at_k(queries, positives, ids, items, ks=(1, 5, 40))
    full = exact_ranks(queries, positives, ids, items)
    assert got == {k: float((full < k).mean()) for k in (1, 5, 40)}
    assert got[40] == float(np.isin(positives, ids).mean())


def test_popularity_recall_ranks_by_clicks_then_id():
    ids, clicks = np.array([5, 6, 7, 8]), np.array([1, 10, 3, 3])
    assert popularity_recall_at_k(ids, clicks, np.array([6, 7, 8, 9, 6]), ks=(1, 2, 3)) == {1: 0.4, 2: 0.6, 3: 0.8}
