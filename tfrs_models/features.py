"""Input layers: ID tables (trainable in both modes) and one layer per declared feature (full mode).

Each feature of the spec (twotower/core/features.py) gets the layer of its kind. Categorical
and list features are int64 keys (strings already hashed) into a table of the field's
``buckets`` rows, ``key mod buckets``: the hashing trick keeps the tables fixed-size forever
(no vocabulary to grow), at the price of rare collisions, acceptable for side features.
Numeric and vector features are standardised / projected, each with a "missing" indicator.

The ID tables are different: explicit vocabularies (see vocab.py), one row per known ID.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfrs_models.vocab import IdLookup, IdVocab
from twotower.core.encode import ABSENT
from twotower.core.features import Feature


class CategoricalInput(keras.layers.Layer):
    """key -> table[key mod buckets] (``ABSENT`` = -1 lands in the last bucket)."""

    def __init__(self, buckets: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.buckets = buckets
        self.table = self.add_weight(
            name="table", shape=(buckets, dim), initializer=keras.initializers.RandomUniform(-0.05, 0.05)
        )

    def call(self, values: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.table, tf.math.floormod(tf.cast(values, tf.int64), self.buckets))


class MultiInput(CategoricalInput):
    """Mean of the embeddings of a list's present keys (``ABSENT`` = padding; zeros if empty)."""

    def call(self, values: tf.Tensor) -> tf.Tensor:
        values = tf.cast(values, tf.int64)
        vectors = super().call(values)
        mask = tf.cast(values != ABSENT, vectors.dtype)[..., None]
        count = tf.maximum(tf.reduce_sum(mask, axis=-2), 1.0)
        return tf.reduce_sum(vectors * mask, axis=-2) / count


class NumericInput(keras.layers.Layer):
    """x -> ``[(x - mean) / std, missing]``; NaN = missing (then 0 and the indicator 1).

    ``mean`` / ``std`` are non-trainable weights set once from the first full update's data
    (``set_stats``) and carried by warm starts like any weight, so the inputs of a warm-started
    model mean what they meant when it learned them.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mean = self.add_weight(name="mean", shape=(), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(), initializer="ones", trainable=False)

    def set_stats(self, mean: float, std: float) -> None:
        self.mean.assign(mean)
        self.std.assign(std if std > 0 else 1.0)

    def call(self, values: tf.Tensor) -> tf.Tensor:
        x = tf.cast(values, tf.float32)
        missing = tf.math.is_nan(x)
        z = tf.where(missing, 0.0, (x - self.mean) / self.std)
        return tf.stack([z, tf.cast(missing, tf.float32)], axis=-1)


class VectorInput(keras.layers.Layer):
    """A pretrained vector -> ``[dense(x), missing]``; a row with a NaN is missing (zeros, 1)."""

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.project = keras.layers.Dense(dim, name="project")

    def call(self, values: tf.Tensor) -> tf.Tensor:
        x = tf.cast(values, tf.float32)
        missing = tf.reduce_any(tf.math.is_nan(x), axis=-1, keepdims=True)
        projected = self.project(tf.where(tf.math.is_nan(x), 0.0, x))
        return tf.concat([tf.where(missing, 0.0, projected), tf.cast(missing, tf.float32)], axis=-1)


def feature_input(feature: Feature, dim: int) -> keras.layers.Layer:
    """The input layer of one declared feature (twotower/core/features.py)."""
    name = f"{feature.kind}_{feature.name}"
    if feature.kind == "categorical":
        return CategoricalInput(feature.buckets, dim, name=name)
    if feature.kind == "multi":
        return MultiInput(feature.buckets, dim, name=name)
    if feature.kind == "numeric":
        return NumericInput(name=name)
    return VectorInput(dim, name=name)


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
