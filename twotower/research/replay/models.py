"""The replay's daily cycle, on in-memory models: production's own training moves, other data.

The replay calls exactly the functions the pipelines call - ``train_full`` (the full update),
``grown_from_oov`` (a chain's start model) and ``IncrementalTrainer.train_micro_batch`` (one
micro-batch of the incremental chain) - so a model change reaches both. What differs is only
where the examples come from: arrays of the simulated day instead of TFRecords and the stream.

* ``full_update`` - one epoch over a day's examples from the previous model, all weights;
  ``ordered=False`` shuffles (the seed's way), ``ordered=True`` keeps time order (the seed's
  counter-example: same data, same single pass, no shuffle).
* ``Chain`` - the intraday incremental update on a copy of a model, micro-batch by micro-batch.
* ``grown`` - a chain's starting model (new IDs start from their OOV rows).
"""

from __future__ import annotations

import numpy as np

import tensorflow as tf

from tfrs_models.catalog import ItemCatalog
from tfrs_models.checkpoint import grown_from_oov
from tfrs_models.model import TwoTowerModel
from tfrs_models.training import IncrementalTrainer, train_full
from twotower.core.config import Settings
from twotower.core.features import FeatureSpec
from twotower.research.replay.world import Day


def batches(features: dict[str, np.ndarray], batch_size: int, order: np.ndarray | None = None) -> tf.data.Dataset:
    """Example tensors -> batches, in the given row order (default: as stored, i.e. time order)."""
    if order is not None:
        features = {k: v[order] for k, v in features.items()}
    return tf.data.Dataset.from_tensor_slices(features).batch(batch_size)


def full_update(
    settings: Settings, spec: FeatureSpec, day: Day, previous: TwoTowerModel | None, *, ordered: bool, seed: int
) -> tuple[TwoTowerModel, float]:
    """(the model after one epoch over ``day``, its mean training loss).

    Shuffled = one random permutation of the whole day (a perfect global shuffle, what the
    production prepare step approximates with shuffled shards and a buffer); ordered = the
    clicks in time order. Same examples, same batches sizes, same single pass.
    """
    m = settings.model
    order = None if ordered else np.random.default_rng(seed).permutation(len(day))
    data = batches(day.features, m.batch_size, order)
    run = train_full(m, data, spec=spec, user_ids=day.user_ids, catalog=day.catalog(spec), previous=previous, seed=seed)
    return run.model, float(run.mean_loss)


def grown(model: TwoTowerModel, settings: Settings, user_ids: np.ndarray, catalog: ItemCatalog) -> TwoTowerModel:
    """A chain's start model, as the production chain makes it (``grown_from_oov``)."""
    return grown_from_oov(model, settings.model, user_ids, catalog)


class Chain:
    """One day's incremental chain (its model is a private copy; the start model is untouched)."""

    def __init__(self, start: TwoTowerModel, settings: Settings, seed: int) -> None:
        self.trainer = IncrementalTrainer(start, settings.model)
        self.batch_size = settings.incremental.batch_size
        self.model = start
        self.seed = seed
        self.examples = 0
        self.micro_batches = 0

    def train(self, features: dict[str, np.ndarray]) -> None:
        """One micro-batch, in time order, the production chain's training move."""
        n = len(features["user_id"])
        if n:
            self.trainer.train_micro_batch(features, self.batch_size, self.seed + self.micro_batches)
            self.micro_batches += 1
            self.examples += n
