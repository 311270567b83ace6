"""The training moves of the replay, on in-memory models (no checkpoints, no Dask).

The same ``tfrs_models`` calls the production pipeline makes, minus the I/O:

* ``full_update`` - one epoch over a day's examples from the previous model, all weights;
  ``ordered=False`` shuffles (the seed's way), ``ordered=True`` keeps time order (the seed's
  counter-example: same data, same single pass, no shuffle).
* ``Chain`` - the intraday incremental update: a copy of a model whose ID tables alone train
  on micro-batches in time order, ``incremental.batch_size`` examples per step, at
  ``model.incremental_learning_rate`` (``IncrementalTrainer``).
* ``grown`` - a chain's starting model: vocabularies grown by the users/items that appeared
  since, each new row a copy of its OOV row (the vector serving gave that ID until then, as
  ``twotower/incremental/chain.py`` does), and a new catalogue (easy negatives, logQ).
"""

from __future__ import annotations

import numpy as np

import twotower  # noqa: F401
import tensorflow as tf

from tfrs_models.catalog import ItemCatalog
from tfrs_models.checkpoint import warm_start
from tfrs_models.model import TwoTowerModel
from tfrs_models.training import IncrementalTrainer, train_full
from twotower.config import Settings
from twotower.replay.world import Day


def batches(features: dict[str, np.ndarray], batch_size: int, order: np.ndarray | None = None) -> tf.data.Dataset:
    """Example tensors -> batches, in the given row order (default: as stored, i.e. time order)."""
    if order is not None:
        features = {k: v[order] for k, v in features.items()}
    return tf.data.Dataset.from_tensor_slices(features).batch(batch_size)


def full_update(
    settings: Settings, day: Day, previous: TwoTowerModel | None, *, ordered: bool, seed: int
) -> tuple[TwoTowerModel, float]:
    """(the model after one epoch over ``day``, its mean training loss).

    Shuffled = one random permutation of the whole day (a perfect global shuffle, what the
    production prepare step approximates with shuffled shards and a buffer); ordered = the
    clicks in time order. Same examples, same batches sizes, same single pass.
    """
    m = settings.model
    order = None if ordered else np.random.default_rng(seed).permutation(len(day))
    data = batches(day.features, m.batch_size, order)
    run = train_full(m, data, user_ids=day.user_ids, catalog=day.catalog(m.max_tags), previous=previous, seed=seed)
    return run.model, float(run.mean_loss)


def grown(model: TwoTowerModel, settings: Settings, user_ids: np.ndarray, catalog: ItemCatalog) -> TwoTowerModel:
    """A copy of ``model`` knowing ``user_ids`` and ``catalog``'s items; new rows = their OOV rows."""
    out = warm_start(model, settings.model, user_ids, catalog)
    for name in ("user_ids", "item_ids"):
        old, new = getattr(model, name), getattr(out, name)
        fresh = new.vocab.ids[~old.vocab.contains(new.vocab.ids)]
        if len(fresh):
            table = new.embeddings.numpy()
            table[new.vocab.rows(fresh)] = old.embeddings.numpy()[old.vocab.oov_rows(fresh)]
            new.embeddings.assign(table)
    return out


class Chain:
    """One day's incremental chain (its model is a private copy; the start model is untouched)."""

    def __init__(self, start: TwoTowerModel, settings: Settings, seed: int) -> None:
        tf.random.set_seed(seed)
        self.trainer = IncrementalTrainer(start, settings.model)
        self.batch_size = settings.incremental.batch_size
        self.model = start
        self.examples = 0

    def train(self, features: dict[str, np.ndarray]) -> None:
        """One micro-batch, in time order, ``incremental.batch_size`` examples per step."""
        n = len(features["user_id"])
        if n:
            self.trainer.train(batches(features, self.batch_size))
            self.examples += n
