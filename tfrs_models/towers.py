"""The two towers' dense parts: declared features (+ the ID embedding as an input) -> MLP -> unit vector.

A tower is built from its part of the feature spec: one input layer per declared feature, in
the spec's order (features.py), the user tower also the request context (hour of day, day of
week), then the MLP. Nothing here names a feature.

The ID embedding tables are *not* inside the towers. That split is what serving needs: the
user ID embedding lives in the online store (refreshed every few minutes by the incremental
updater) and the user tower of the generation computes ``a = f(id_embedding, profile, context)``
at request time. It is also what the incremental mode needs: the towers are frozen as a whole
while the ID tables keep training.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf
import tf_keras as keras

from tfrs_models.features import CategoricalInput, feature_input
from twotower.core.config import ModelSettings
from twotower.core.features import CONTEXT, Tower as TowerSpec


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


class Tower(keras.layers.Layer):
    """``(id_embedding, {feature name: encoded values}, {context name: values}) -> unit vector``."""

    def __init__(self, spec: TowerSpec, s: ModelSettings, context: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        d = s.feature_embedding_dim
        self.spec = spec
        self.context_names = tuple(context)
        self.inputs_by_name = {f.name: feature_input(f, d) for f in spec.features}
        self.context_inputs = {c: CategoricalInput(CONTEXT[c], d, name=f"context_{c}") for c in self.context_names}
        self.mlp = MLP(s.hidden_units, s.output_dim, name="mlp")

    def call(self, id_embedding: tf.Tensor, features: Mapping[str, tf.Tensor], context: Mapping[str, tf.Tensor] | None = None) -> tf.Tensor:
        parts = [tf.cast(id_embedding, tf.float32)]
        parts += [self.inputs_by_name[f.name](features[f.name]) for f in self.spec.features]
        parts += [self.context_inputs[c](context[c]) for c in self.context_names]
        return self.mlp(tf.concat(parts, axis=-1))

    def set_numeric_stats(self, stats: Mapping[str, tuple[float, float]]) -> None:
        """Standardisation of the numeric inputs: ``{feature: (mean, std)}``."""
        for name, (mean, std) in stats.items():
            self.inputs_by_name[name].set_stats(mean, std)
