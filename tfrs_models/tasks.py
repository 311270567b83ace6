"""The three objectives, each a separate Keras layer: ``task(Candidates) -> loss``.

The model only assembles the vectors (``Candidates``); which loss turns them into a gradient is
this module's business, selected by ``ModelSettings.objective``:

* **listwise** - ``tfrs.tasks.Retrieval``: softmax of each row's clicked item against the
  in-batch positives + the shared uniform easy negatives, with logQ correction and
  accidental-hit removal; plus ``hard_negative_weight`` x a softmax of the clicked item
  against its own request's ranked-out items (the list ranking saw).
* **pointwise** - binary cross-entropy: positive -> 1, each sampled negative -> 0.
* **pairwise** - every (positive, negative) pair: logistic ``log(1 + exp(-(s+ - s-)/T))`` or
  margin ``max(0, m - (cos+ - cos-))``.

Every objective is "easy term + hard_negative_weight x hard term"; logits are cos / T.

Sampling correction (listwise). A candidate j of the softmax is there either as some row's
positive (in-batch, drawn with the click distribution q) or as a uniform extra (1/n). Its
probability under that mixture is ``p_j = (B q_j + N / n) / (B + N)`` and its logit is
corrected by ``-log p_j`` (TFRS ``candidate_sampling_probability``). Hard negatives are not
sampled from a distribution, so their term has no correction. They get their own per-row
softmax rather than extra columns of the batch softmax: the latter would be a
``B x (B + N + B H)`` score matrix, mostly masked, three times the work at H = 2.

Pointwise/pairwise negatives are the uniform extras (unbiased, no correction needed) plus the
row's hard negatives (weight w); with ``num_easy_negatives = 0`` they fall back to the other
rows' positives.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from twotower.core.config import ModelSettings


class Candidates(NamedTuple):
    query: tf.Tensor  # [B, d] unit user vectors
    positive: tf.Tensor  # [B, d] unit vectors of the clicked items
    positive_id: tf.Tensor  # [B]
    positive_prob: tf.Tensor  # [B] click share of the clicked item
    easy: tf.Tensor  # [N, d] uniformly sampled items (shared by the batch)
    easy_id: tf.Tensor  # [N]
    easy_prob: tf.Tensor  # [N] their click shares
    hard: tf.Tensor  # [B, H, d] ranked-out items of each row's request
    hard_id: tf.Tensor  # [B, H]
    hard_prob: tf.Tensor  # [B, H]
    hard_mask: tf.Tensor  # [B, H] float, 1 = present
    num_items: tf.Tensor  # scalar float, catalogue size (uniform probability 1/n)


class ListwiseTask(keras.layers.Layer):
    def __init__(self, s: ModelSettings, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = s.temperature
        self.hard_weight = s.hard_negative_weight
        self.retrieval = tfrs.tasks.Retrieval(
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, reduction=keras.losses.Reduction.SUM_OVER_BATCH_SIZE
            ),
            temperature=s.temperature,
            remove_accidental_hits=True,
            name="retrieval",
        )

    def call(self, c: Candidates) -> tf.Tensor:
        b = tf.cast(tf.shape(c.query)[0], tf.float32)
        n = tf.cast(tf.shape(c.easy)[0], tf.float32)

        def mixture(q):
            return (b * q + n / c.num_items) / (b + n)

        loss = self.retrieval(
            c.query,
            tf.concat([c.positive, c.easy], axis=0),
            candidate_sampling_probability=tf.concat([mixture(c.positive_prob), mixture(c.easy_prob)], axis=0),
            candidate_ids=tf.concat([c.positive_id, c.easy_id], axis=0),
            compute_metrics=False,
            compute_batch_metrics=False,
        )
        if self.hard_weight > 0 and c.hard.shape[1]:
            loss += self.hard_weight * self._request_softmax(c)
        return loss

    def _request_softmax(self, c: Candidates) -> tf.Tensor:
        """Softmax of the clicked item against its own request's ranked-out items."""
        pos = tf.reduce_sum(c.query * c.positive, axis=1, keepdims=True)
        hard = tf.reduce_sum(c.query[:, None, :] * c.hard, axis=-1)
        ok = tf.logical_and(c.hard_mask > 0, tf.not_equal(c.hard_id, c.positive_id[:, None]))
        logits = tf.concat([pos, tf.where(ok, hard, -1e9)], axis=1) / self.temperature
        first = tf.one_hot(tf.zeros_like(c.positive_id), tf.shape(logits)[1])
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(first, logits))


def _negatives(c: Candidates, in_batch: bool):
    """Cosines of (easy, hard) negatives per row and their validity masks (accidental hits out)."""
    if in_batch:  # no uniform negatives configured: the other rows' positives
        easy = tf.matmul(c.query, c.positive, transpose_b=True)
        easy_ok = tf.not_equal(c.positive_id[:, None], c.positive_id[None, :])
    else:
        easy = tf.matmul(c.query, c.easy, transpose_b=True)
        easy_ok = tf.not_equal(c.positive_id[:, None], c.easy_id[None, :])
    hard = tf.reduce_sum(c.query[:, None, :] * c.hard, axis=-1)
    hard_ok = tf.logical_and(c.hard_mask > 0, tf.not_equal(c.hard_id, c.positive_id[:, None]))
    return easy, tf.cast(easy_ok, tf.float32), hard, tf.cast(hard_ok, tf.float32)


def _masked_mean(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(x * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class PointwiseTask(keras.layers.Layer):
    def __init__(self, s: ModelSettings, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = s.temperature
        self.hard_weight = s.hard_negative_weight
        self.in_batch = s.num_easy_negatives == 0

    def call(self, c: Candidates) -> tf.Tensor:
        t = self.temperature
        pos = tf.reduce_sum(c.query * c.positive, axis=1) / t
        easy, easy_ok, hard, hard_ok = _negatives(c, self.in_batch)
        # BCE(logit, 1) = softplus(-logit); BCE(logit, 0) = softplus(logit)
        loss = tf.nn.softplus(-pos) + _masked_mean(tf.nn.softplus(easy / t), easy_ok)
        loss += self.hard_weight * _masked_mean(tf.nn.softplus(hard / t), hard_ok)
        return tf.reduce_mean(loss)


class PairwiseTask(keras.layers.Layer):
    def __init__(self, s: ModelSettings, **kwargs) -> None:
        super().__init__(**kwargs)
        self.temperature = s.temperature
        self.hard_weight = s.hard_negative_weight
        self.in_batch = s.num_easy_negatives == 0
        self.kind = s.pairwise_loss
        self.margin = s.pairwise_margin

    def _pair_loss(self, diff: tf.Tensor) -> tf.Tensor:
        if self.kind == "margin":
            return tf.nn.relu(self.margin - diff)
        return tf.nn.softplus(-diff / self.temperature)

    def call(self, c: Candidates) -> tf.Tensor:
        pos = tf.reduce_sum(c.query * c.positive, axis=1, keepdims=True)
        easy, easy_ok, hard, hard_ok = _negatives(c, self.in_batch)
        loss = _masked_mean(self._pair_loss(pos - easy), easy_ok)
        loss += self.hard_weight * _masked_mean(self._pair_loss(pos - hard), hard_ok)
        return tf.reduce_mean(loss)


TASKS = {"listwise": ListwiseTask, "pointwise": PointwiseTask, "pairwise": PairwiseTask}


def make_task(s: ModelSettings) -> keras.layers.Layer:
    return TASKS[s.objective](s, name=f"{s.objective}_task")
