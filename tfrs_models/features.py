"""Embedding layers: ID tables (trainable in both modes) and feature tables (full mode only).

Categorical profile/item features are small integers or IDs (authors); each gets a table of a
fixed number of buckets (``ModelSettings.*_buckets``) and value -> ``value mod buckets``. The
hashing trick keeps those tables fixed-size forever (no vocabulary to grow), at the price of
rare collisions, which is acceptable for side features. Missing values are written as -1 and
so land in the last bucket. Tag lists are 0-padded (tag ids are > 0) and mean-pooled.

The ID tables are different: explicit vocabularies (see vocab.py), one row per known ID.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfrs_models.vocab import IdLookup, IdVocab


class HashedEmbedding(keras.layers.Layer):
    """value -> table[value mod buckets]."""

    def __init__(self, buckets: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.buckets = buckets
        self.table = self.add_weight(
            name="table", shape=(buckets, dim), initializer=keras.initializers.RandomUniform(-0.05, 0.05)
        )

    def call(self, values: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.table, tf.math.floormod(tf.cast(values, tf.int64), self.buckets))


class PooledEmbedding(HashedEmbedding):
    """Mean of the embeddings of the non-zero values of a 0-padded list (zero vector if empty)."""

    def call(self, values: tf.Tensor) -> tf.Tensor:
        values = tf.cast(values, tf.int64)
        vectors = super().call(values)
        mask = tf.cast(values > 0, vectors.dtype)[..., None]
        count = tf.maximum(tf.reduce_sum(mask, axis=-2), 1.0)
        return tf.reduce_sum(vectors * mask, axis=-2) / count


class IdEmbedding(keras.layers.Layer):
    """ID -> its row of the table (own row if in the vocabulary, else an OOV row).

    ``oov_rate``: in full-mode training, that share of lookups is routed to the ID's OOV row
    instead, so the OOV rows learn an "unknown user/item" vector and the dense tower learns to
    lean on profile features when the ID carries nothing - which is exactly the situation of an
    ID that appears between two full updates.
    """

    def __init__(self, vocab: IdVocab, dim: int, oov_rate: float = 0.0, init_scale: float = 0.05, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vocab = vocab
        self.oov_rate = oov_rate
        self.lookup = IdLookup(vocab, name="lookup")
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(vocab.num_rows, dim),
            initializer=keras.initializers.RandomUniform(-init_scale, init_scale),
        )

    def rows(self, ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        ids = tf.cast(ids, tf.int64)
        rows = self.lookup(ids)
        if training and self.oov_rate > 0:
            drop = tf.random.uniform(tf.shape(rows)) < self.oov_rate
            rows = tf.where(drop, self.lookup.oov_rows(ids), rows)
        return rows

    def call(self, ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.nn.embedding_lookup(self.embeddings, self.rows(ids, training))
