"""The three objective layers against straightforward numpy re-implementations of their math."""

from __future__ import annotations

import numpy as np
import pytest

import twotower  # noqa: F401
import tensorflow as tf
import tensorflow_recommenders as tfrs

from model_data import small_settings
from tfrs_models.tasks import Candidates, ListwiseTask, PairwiseTask, PointwiseTask, make_task

B, N, H, D, ITEMS, T = 6, 4, 2, 5, 50, 0.2


def unit(rng, *shape):
    x = rng.normal(size=(*shape, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def cands():
    rng = np.random.default_rng(0)
    positive_id = np.array([1, 2, 3, 2, 5, 6])  # item 2 clicked twice: an accidental hit
    easy_id = np.array([7, 3, 8, 9])  # item 3 sampled again: another one
    hard_id = np.array([[10, 11], [12, -1], [3, 13], [14, -1], [-1, -1], [15, 16]])  # row 2: hard == positive
    return dict(
        query=unit(rng, B), positive=unit(rng, B), positive_id=positive_id,
        positive_prob=rng.uniform(0.001, 0.1, B).astype(np.float32),
        easy=unit(rng, N), easy_id=easy_id, easy_prob=rng.uniform(0.001, 0.1, N).astype(np.float32),
        hard=unit(rng, B, H), hard_id=hard_id, hard_prob=rng.uniform(0.001, 0.1, (B, H)).astype(np.float32),
        hard_mask=(hard_id >= 0).astype(np.float32), num_items=np.float32(ITEMS),
    )  # fmt: skip


def run(task, c) -> float:
    return float(task(Candidates(**{k: tf.constant(v) for k, v in c.items()})))


def softplus(x):
    return np.logaddexp(0.0, x)


def hard_parts(c):
    hard = np.einsum("bd,bhd->bh", c["query"], c["hard"])
    ok = (c["hard_mask"] > 0) & (c["hard_id"] != c["positive_id"][:, None])
    return hard, ok


def test_listwise_is_corrected_in_batch_softmax_plus_request_softmax(cands):
    c, w = cands, 0.7
    task = ListwiseTask(small_settings(temperature=T, hard_negative_weight=w))
    assert isinstance(task.retrieval, tfrs.tasks.Retrieval)
    cand = np.concatenate([c["positive"], c["easy"]])
    ids = np.concatenate([c["positive_id"], c["easy_id"]])
    q = np.concatenate([c["positive_prob"], c["easy_prob"]])
    p = np.clip((B * q + N / ITEMS) / (B + N), 1e-6, 1.0)  # mixture of in-batch and uniform sampling
    logits = c["query"] @ cand.T / T - np.log(p)
    hit = (ids[None, :] == c["positive_id"][:, None]) & ~np.eye(B, B + N, dtype=bool)
    logits = np.where(hit, -np.inf, logits)
    easy = np.mean(np.logaddexp.reduce(logits, axis=1) - logits[np.arange(B), np.arange(B)])
    hard, ok = hard_parts(c)
    pos = np.sum(c["query"] * c["positive"], axis=1)
    row = np.concatenate([pos[:, None], np.where(ok, hard, -np.inf)], axis=1) / T
    request = np.mean(np.logaddexp.reduce(row, axis=1) - row[:, 0])
    assert run(task, c) == pytest.approx(easy + w * request, rel=1e-4)


def test_listwise_correction_and_hit_removal_change_the_loss(cands):
    task = ListwiseTask(small_settings(temperature=T, hard_negative_weight=0.0))
    base = run(task, cands)
    skewed = dict(cands, positive_prob=cands["positive_prob"] * 10)
    assert run(task, skewed) != pytest.approx(base, rel=1e-3)  # logQ correction is applied
    no_hit = dict(cands, positive_id=np.array([1, 2, 3, 4, 5, 6]), easy_id=np.array([7, 20, 8, 9]))
    assert run(task, no_hit) != pytest.approx(base, rel=1e-3)  # accidental hits are removed


def test_pointwise_is_balanced_binary_cross_entropy(cands):
    c, w = cands, 1.5
    task = PointwiseTask(small_settings(temperature=T, hard_negative_weight=w))
    pos = np.sum(c["query"] * c["positive"], axis=1) / T
    easy = c["query"] @ c["easy"].T / T
    easy_ok = c["easy_id"][None, :] != c["positive_id"][:, None]
    hard, ok = hard_parts(c)
    loss = (
        softplus(-pos)
        + np.sum(softplus(easy) * easy_ok, 1) / easy_ok.sum(1)
        + w * np.sum(softplus(hard / T) * ok, 1) / np.maximum(ok.sum(1), 1)
    )
    assert run(task, c) == pytest.approx(loss.mean(), rel=1e-4)


@pytest.mark.parametrize("kind", ["logistic", "margin"])
def test_pairwise_scores_every_positive_negative_pair(cands, kind):
    c, w, m = cands, 1.0, 0.3
    task = PairwiseTask(small_settings(temperature=T, hard_negative_weight=w, pairwise_loss=kind, pairwise_margin=m))
    pos = np.sum(c["query"] * c["positive"], axis=1, keepdims=True)
    easy = c["query"] @ c["easy"].T
    easy_ok = c["easy_id"][None, :] != c["positive_id"][:, None]
    hard, ok = hard_parts(c)

    def pair(diff):
        return np.maximum(m - diff, 0.0) if kind == "margin" else softplus(-diff / T)

    loss = np.sum(pair(pos - easy) * easy_ok, 1) / easy_ok.sum(1)
    loss += w * np.sum(pair(pos - hard) * ok, 1) / np.maximum(ok.sum(1), 1)
    assert run(task, c) == pytest.approx(loss.mean(), rel=1e-4)


def test_pointwise_without_easy_negatives_falls_back_to_in_batch(cands):
    c = dict(cands, easy=np.zeros((0, D), np.float32), easy_id=np.zeros(0, np.int64),
             easy_prob=np.zeros(0, np.float32))  # fmt: skip
    task = PointwiseTask(small_settings(temperature=T, hard_negative_weight=0.0, num_easy_negatives=0))
    pos = np.sum(c["query"] * c["positive"], axis=1) / T
    other = c["query"] @ c["positive"].T / T
    ok = c["positive_id"][None, :] != c["positive_id"][:, None]
    loss = softplus(-pos) + np.sum(softplus(other) * ok, 1) / ok.sum(1)
    assert run(task, c) == pytest.approx(loss.mean(), rel=1e-4)


def test_objective_is_selected_by_settings():
    for name, cls in (("listwise", ListwiseTask), ("pointwise", PointwiseTask), ("pairwise", PairwiseTask)):
        assert isinstance(make_task(small_settings(objective=name)), cls)
