"""The two towers' dense parts: features (+ the ID embedding as an input) -> MLP -> unit vector.

The ID embedding tables are *not* inside the towers. That split is what serving needs: the
user ID embedding lives in the online store (refreshed every few minutes by the incremental
updater) and the user tower of the generation computes ``a = f(id_embedding, profile, hour)``
at request time. It is also what the incremental mode needs: the towers are frozen as a whole
while the ID tables keep training.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from twotower.core.config import ModelSettings
from tfrs_models.features import HashedEmbedding, PooledEmbedding

from tfrs_models.numpy_tower import USER_FEATURES  # one definition, shared with the numpy path
ITEM_FEATURES = ("category", "author_id", "tags")
HOURS = 24


class MLP(keras.layers.Layer):
    """ReLU hidden layers, a linear output layer, then L2 normalisation (score = cosine)."""

    def __init__(self, hidden_units: list[int], output_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = [keras.layers.Dense(u, activation="relu", name=f"hidden_{i}") for i, u in enumerate(hidden_units)]
        self.out = keras.layers.Dense(output_dim, name="output")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        for layer in self.hidden:
            x = layer(x)
        return tf.math.l2_normalize(self.out(x), axis=-1)


class UserTower(keras.layers.Layer):
    """``{"id_embedding", age_bucket, gender, city_tier, interest_tags, hour} -> a`` (unit)."""

    def __init__(self, s: ModelSettings, **kwargs) -> None:
        super().__init__(**kwargs)
        d = s.feature_embedding_dim
        self.age_bucket = HashedEmbedding(s.age_buckets, d, name="age_bucket")
        self.gender = HashedEmbedding(s.gender_buckets, d, name="gender")
        self.city_tier = HashedEmbedding(s.city_tier_buckets, d, name="city_tier")
        self.interest_tags = PooledEmbedding(s.tag_buckets, d, name="interest_tags")
        self.hour = HashedEmbedding(HOURS, d, name="hour")
        self.mlp = MLP(s.hidden_units, s.output_dim, name="mlp")

    def call(self, inputs: dict) -> tf.Tensor:
        parts = [tf.cast(inputs["id_embedding"], tf.float32)]
        parts += [getattr(self, name)(inputs[name]) for name in USER_FEATURES]
        return self.mlp(tf.concat(parts, axis=-1))


class ItemTower(keras.layers.Layer):
    """``{"id_embedding", category, author_id, tags} -> b`` (unit)."""

    def __init__(self, s: ModelSettings, **kwargs) -> None:
        super().__init__(**kwargs)
        d = s.feature_embedding_dim
        self.category = HashedEmbedding(s.category_buckets, d, name="category")
        self.author_id = HashedEmbedding(s.author_buckets, d, name="author_id")
        self.tags = PooledEmbedding(s.tag_buckets, d, name="tags")
        self.mlp = MLP(s.hidden_units, s.output_dim, name="mlp")

    def call(self, inputs: dict) -> tf.Tensor:
        parts = [tf.cast(inputs["id_embedding"], tf.float32)]
        parts += [getattr(self, name)(inputs[name]) for name in ITEM_FEATURES]
        return self.mlp(tf.concat(parts, axis=-1))
