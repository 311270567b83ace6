"""The two-tower model: ID tables + dense towers + a swappable task; it only writes compute_loss.

Layers (attribute names are part of the checkpoint and of the freezing rules):

* ``user_ids`` / ``item_ids`` - ID embedding tables over explicit vocabularies (+ OOV rows).
  The only variables the incremental mode trains.
* ``user_tower`` / ``item_tower`` - the declared features' input layers + MLP -> unit vectors
  (towers.py, built from the feature spec). Frozen in the incremental mode.
* ``task`` - the objective (tasks.py), no variables.

The item catalogue (every item's features and click share) is held as constants so easy
negatives can be drawn uniformly from all items inside the training step.

Inputs are the example columns of ``tfrs_models.records``: ``user_id`` / ``item_id`` (ID keys),
``user__<feature>`` / ``item__<feature>`` / ``hard__<feature>`` (encoded values), the context
names, and the sampling columns.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from twotower.core.config import ModelSettings
from twotower.core.encode import absent
from twotower.core.features import FeatureSpec
from tfrs_models.catalog import ItemCatalog
from tfrs_models.features import IdEmbedding
from tfrs_models.tasks import Candidates, make_task
from tfrs_models.towers import Tower
from tfrs_models.vocab import IdVocab


class TwoTowerModel(tfrs.Model):
    def __init__(
        self, settings: ModelSettings, spec: FeatureSpec, user_vocab: IdVocab, item_vocab: IdVocab, catalog: ItemCatalog
    ) -> None:
        super().__init__(name="two_tower")
        self.settings = settings
        self.spec = spec
        self.catalog = catalog
        s = settings
        self.user_ids = IdEmbedding(
            user_vocab, s.id_embedding_dim, s.oov_training_rate, s.id_init_scale, name="user_id_embedding"
        )
        self.item_ids = IdEmbedding(
            item_vocab, s.id_embedding_dim, s.oov_training_rate, s.id_init_scale, name="item_id_embedding"
        )
        self.id_optimizer: keras.optimizers.Optimizer | None = None
        self.user_tower = Tower(spec.user, s, spec.context, name="user_tower")
        self.item_tower = Tower(spec.item, s, name="item_tower")
        self.task = make_task(s)
        self._items = {"item_id": tf.constant(catalog.item_id), "prob": tf.constant(catalog.prob)}
        self._item_features = {f.name: tf.constant(catalog.features[f.name]) for f in spec.item.features}
        self._build_variables()

    # --- vocabularies -------------------------------------------------------------------------
    @property
    def user_vocab(self) -> IdVocab:
        return self.user_ids.vocab

    @property
    def item_vocab(self) -> IdVocab:
        return self.item_ids.vocab

    # --- towers -------------------------------------------------------------------------------
    def user_vectors(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Unit user vectors from the example columns ``user_id``, ``user__*`` and the context."""
        u = self.spec.user
        return self.user_tower(
            self.user_ids(features["user_id"], training=training),
            {f.name: features[u.column(f)] for f in u.features},
            {c: features[c] for c in self.spec.context},
        )

    def item_vectors(self, item_id, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Unit item vectors from ID keys and ``{feature name: values}``; any leading shape."""
        return self.item_tower(self.item_ids(item_id, training=training), features)

    def _build_variables(self) -> None:
        one = {"user_id": tf.zeros([1], tf.int64), **{c: tf.zeros([1], tf.int64) for c in self.spec.context}}
        one.update({self.spec.user.column(f): tf.constant(absent(f, 1)) for f in self.spec.user.features})
        self.user_vectors(one)
        self.item_vectors(tf.zeros([1], tf.int64), {f.name: tf.constant(absent(f, 1)) for f in self.spec.item.features})

    # --- training -----------------------------------------------------------------------------
    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        s = self.settings
        query = self.user_vectors(inputs, training)
        pick = tf.random.uniform([s.num_easy_negatives], 0, len(self.catalog), dtype=tf.int64)
        easy = {k: tf.gather(v, pick) for k, v in self._items.items()}
        # One item-tower pass over positives, easy and hard negatives (fewer, bigger ops).
        rows, hard_count = tf.shape(query)[0], inputs["hard_item_id"].shape[1]
        n_easy = s.num_easy_negatives

        def stack(positive: tf.Tensor, easy_values: tf.Tensor, hard: tf.Tensor) -> tf.Tensor:
            tail = positive.shape[1:]  # [] or [width]
            hard = tf.reshape(tf.cast(hard, positive.dtype), [-1, *tail])
            return tf.concat([positive, tf.cast(easy_values, positive.dtype), hard], axis=0)

        item = self.spec.item
        features = {}
        for f in item.features:
            dtype = tf.int64 if f.is_int else tf.float32
            positive = tf.cast(inputs[item.column(f)], dtype)
            features[f.name] = stack(positive, tf.gather(self._item_features[f.name], pick), inputs[f"hard__{f.name}"])
        vectors = self.item_vectors(
            stack(tf.cast(inputs["item_id"], tf.int64), easy["item_id"], inputs["hard_item_id"]), features, training
        )
        positive, easy_vectors, hard = tf.split(vectors, [rows, n_easy, rows * hard_count], axis=0)
        return self.task(
            Candidates(
                query=query,
                positive=positive,
                positive_id=tf.cast(inputs["item_id"], tf.int64),
                positive_prob=tf.cast(inputs["item_prob"], tf.float32),
                easy=easy_vectors,
                easy_id=easy["item_id"],
                easy_prob=easy["prob"],
                hard=tf.reshape(hard, [rows, hard_count, s.output_dim]),
                hard_id=tf.cast(inputs["hard_item_id"], tf.int64),
                hard_prob=tf.cast(inputs["hard_prob"], tf.float32),
                hard_mask=tf.cast(inputs["hard_mask"], tf.float32),
                num_items=tf.constant(float(len(self.catalog))),
            )
        )

    def train_step(self, inputs) -> dict[str, tf.Tensor]:
        """One step; with ``id_optimizer`` set, the ID tables are stepped by it, the rest by ``optimizer``.

        Why two: an ID row is touched by a handful of examples a day and gets ~1/batch of a
        step's gradient, while a dense weight sees every example; one optimizer tuned for the
        dense layers leaves the ID rows at their initialisation (see ``ModelSettings.id_*``).
        """
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
        pairs = list(zip(tape.gradient(total, self.trainable_variables), self.trainable_variables))
        if self.id_optimizer is None:
            self.optimizer.apply_gradients(pairs)
        else:
            ids = {id(v) for v in self.id_embedding_variables()}
            self.id_optimizer.apply_gradients([p for p in pairs if id(p[1]) in ids])
            dense = [p for p in pairs if id(p[1]) not in ids]
            if dense:
                self.optimizer.apply_gradients(dense)
        return {"loss": loss}

    # --- variable groups (freezing, warm start, export) ---------------------------------------
    def id_embedding_variables(self) -> list[tf.Variable]:
        return [self.user_ids.embeddings, self.item_ids.embeddings]

    def dense_variables(self) -> list[tf.Variable]:
        """Everything that is not an ID table (feature embeddings, MLPs, task)."""
        ids = {id(v) for v in self.id_embedding_variables()}
        return [v for v in self.variables if id(v) not in ids]


def build_model(
    settings: ModelSettings, spec: FeatureSpec, user_vocab: IdVocab, item_vocab: IdVocab, catalog: ItemCatalog,
    seed: int | None = None,
) -> TwoTowerModel:
    """A freshly initialised model (all variables created)."""
    if seed is not None:
        # Python's, numpy's and TF's generators: unseeded Keras initialisers draw from Python's,
        # so tf.random.set_seed alone left two processes with different models.
        keras.utils.set_random_seed(seed)
    return TwoTowerModel(settings, spec, user_vocab, item_vocab, catalog)
