"""The two training modes.

**Full** (nightly): start from the previous *full* model (vocabularies grown by today's new
IDs) or, on day one, from scratch; every variable trainable; exactly one pass over the day's
shuffled examples.

**Incremental** (intraday): start from a full model; only the ID embedding tables train (the
towers - feature embeddings and MLPs - are frozen); examples are consumed in the order given
(time order); own optimizer with ``incremental_learning_rate``. Returns which users were
touched and their new ID embedding rows, which the updater pushes to the online store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

import twotower  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from twotower.config import ModelSettings
from tfrs_models.catalog import ItemCatalog
from tfrs_models.checkpoint import clone_model, warm_start
from tfrs_models.model import TwoTowerModel, build_model
from tfrs_models.records import frame_batches, make_dataset
from tfrs_models.vocab import IdVocab

Batches = tf.data.Dataset | Iterable[Mapping[str, np.ndarray]]


@dataclass
class TrainingRun:
    model: TwoTowerModel
    examples: int
    steps: int
    seconds: float  # the whole pass, first step (tracing) included
    mean_loss: float
    first_step_seconds: float = 0.0  # tracing + the first batch
    first_batch: int = 0  # examples in the first batch

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_examples_per_second(self) -> float:
        """Throughput after the first step (what a long day's training runs at)."""
        rest = self.seconds - self.first_step_seconds
        return (self.examples - self.first_batch) / rest if rest > 0 and self.steps > 1 else 0.0


@dataclass
class IncrementalRun(TrainingRun):
    touched: pd.DataFrame = None  # user_id, embedding (float32 array), event_timestamp (newest event)


def make_optimizer(kind: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.Adagrad(learning_rate)


def _as_batches(data, settings: ModelSettings, shuffle: bool, seed: int | None) -> Batches:
    if isinstance(data, pd.DataFrame):
        if shuffle:
            data = data.sample(frac=1.0, random_state=seed)
        return frame_batches(data, settings.batch_size)
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], (str, Path)):
        return make_dataset(
            data,
            settings.batch_size,
            settings.shuffle_buffer if shuffle else None,
            max_tags=settings.max_tags,
            hard_negatives=settings.hard_negatives_per_example,
            seed=seed,
        )
    return data


def _step_function(model: TwoTowerModel):
    return tf.function(model.train_step, reduce_retracing=True)


def _run_epoch(model: TwoTowerModel, step, batches: Batches, on_batch=None) -> TrainingRun:
    run = TrainingRun(model, 0, 0, 0.0, 0.0)
    loss_sum = tf.constant(0.0)
    start = time.perf_counter()
    for batch in batches:
        loss_sum += step(batch)["loss"]
        run.examples += int(batch["user_id"].shape[0])
        run.steps += 1
        if run.steps == 1:
            float(loss_sum)  # wait for it: the first step includes tracing
            run.first_step_seconds, run.first_batch = time.perf_counter() - start, run.examples
        if on_batch is not None:
            on_batch(batch)
    run.mean_loss = float(loss_sum) / max(run.steps, 1)
    run.seconds = time.perf_counter() - start
    return run


def train_full(
    settings: ModelSettings,
    data: tf.data.Dataset | Sequence[str | Path] | pd.DataFrame,
    *,
    user_ids: np.ndarray,
    catalog: ItemCatalog,
    previous: TwoTowerModel | None = None,
    seed: int | None = None,
) -> TrainingRun:
    """One shuffled epoch over ``data`` with every variable trainable.

    ``data``: TFRecord files (read shuffled), an examples DataFrame (shuffled) or a ready
    ``tf.data.Dataset`` of batches (taken as is). ``user_ids``: every user known today (the
    users table); the user vocabulary grows by them, the item vocabulary by ``catalog``.
    ``previous``: the previous *full* model to warm-start from (``None`` only on day one).
    """
    if previous is None:
        model = build_model(
            settings, IdVocab.build(user_ids, settings.oov_buckets),
            IdVocab.build(catalog.item_id, settings.oov_buckets), catalog, seed=seed,
        )  # fmt: skip
    else:
        model = warm_start(previous, settings, user_ids, catalog, seed=seed)
    model.compile(optimizer=make_optimizer(settings.optimizer, settings.learning_rate))
    return _run_epoch(model, _step_function(model), _as_batches(data, settings, True, seed))


class IncrementalTrainer:
    """Embedding-only online learning on one model; keeps its optimizer state across calls.

    The model is frozen in place (towers and task not trainable, no OOV routing): give it a
    copy of the full model (``train_incremental`` does), never the full model itself.
    """

    def __init__(self, model: TwoTowerModel, settings: ModelSettings) -> None:
        self.model = model
        self.settings = settings
        for layer in (model.user_tower, model.item_tower, model.task):
            layer.trainable = False
        for layer in (model.user_ids, model.item_ids):
            layer.trainable = True
            layer.oov_rate = 0.0
        model.compile(optimizer=make_optimizer(settings.optimizer, settings.incremental_learning_rate))
        trainable = {id(v) for v in model.trainable_variables}
        assert trainable == {id(v) for v in model.id_embedding_variables()}, "only ID tables may train"
        self._step = _step_function(model)

    def train(self, data: tf.data.Dataset | Sequence[str | Path] | pd.DataFrame) -> IncrementalRun:
        """Train on ``data`` in the order given; report the touched users' new embeddings."""
        users: list[np.ndarray] = []
        stamps: list[np.ndarray] = []

        def remember(batch) -> None:
            users.append(np.asarray(batch["user_id"]))
            stamps.append(np.asarray(batch["event_timestamp"]))

        batches = _as_batches(data, self.settings, False, None)
        run = _run_epoch(self.model, self._step, batches, remember)
        newest = (
            pd.DataFrame({"user_id": np.concatenate(users), "ts": np.concatenate(stamps)})
            .groupby("user_id", sort=True)["ts"].max()
            if users else pd.Series([], dtype=np.int64)
        )  # fmt: skip
        touched = touched_user_embeddings(self.model, newest.index.to_numpy(np.int64))
        touched["event_timestamp"] = pd.to_datetime(newest.to_numpy(np.int64), unit="us", utc=True)
        return IncrementalRun(**run.__dict__, touched=touched)


def train_incremental(
    full_model: TwoTowerModel, data: tf.data.Dataset | Sequence[str | Path] | pd.DataFrame, settings: ModelSettings
) -> IncrementalRun:
    """One incremental pass on a copy of ``full_model`` (which stays untouched)."""
    return IncrementalTrainer(clone_model(full_model, settings), settings).train(data)


def touched_user_embeddings(model: TwoTowerModel, user_ids: np.ndarray) -> pd.DataFrame:
    """``user_id -> embedding`` rows of the user ID table (OOV row for IDs not in the vocabulary)."""
    user_ids = np.asarray(user_ids, dtype=np.int64)
    rows = model.user_vocab.rows(user_ids)
    table = tf.gather(model.user_ids.embeddings, rows).numpy().astype(np.float32)
    return pd.DataFrame({"user_id": user_ids, "embedding": list(table)})
