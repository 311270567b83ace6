"""The two training modes.

**Full** (nightly): start from the previous *full* model (vocabularies grown by today's new
IDs) or, on day one, from scratch; every variable trainable; exactly one pass over the day's
shuffled examples. The pass runs inside the graph (many steps per ``tf.function`` call), which
keeps the Python interpreter out of the hot loop.

**Incremental** (intraday): start from a full model; only the ID embedding tables train (the
towers - feature embeddings and MLPs - are frozen); examples are consumed in the order given
(time order); own optimizer with ``incremental_learning_rate``. Returns which users were
touched and their new ID embedding rows, which the updater pushes to the online store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

import tensorflow as tf
import tf_keras as keras

from twotower.core.config import ModelSettings
from twotower.core.progress import progress
from tfrs_models.catalog import ItemCatalog
from tfrs_models.checkpoint import clone_model, warm_start
from tfrs_models.model import TwoTowerModel, build_model
from tfrs_models.records import example_columns, frame_to_features, make_dataset
from tfrs_models.vocab import IdVocab
from twotower.core.encode import encode
from twotower.core.features import FeatureSpec, Tower

Data = tf.data.Dataset | Sequence[str | Path] | pd.DataFrame
STEPS_PER_CALL = 64


@dataclass
class TrainingRun:
    model: TwoTowerModel
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0  # wall clock of the whole pass, tracing included
    cpu_seconds: float = 0.0  # CPU time of this process (all threads) over the pass
    mean_loss: float = 0.0
    first_call_seconds: float = 0.0  # tracing + the first step
    first_call_cpu_seconds: float = 0.0
    first_call_examples: int = 0

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_examples_per_second(self) -> float:
        """Throughput after the first step (tracing excluded): what a long day trains at."""
        rest = self.seconds - self.first_call_seconds
        done = self.examples - self.first_call_examples
        return done / rest if rest > 0 and done > 0 else 0.0

    def steady_examples_per_cpu_second(self) -> float:
        """Examples per CPU-second after the first step (x cores = dedicated-machine estimate)."""
        rest = self.cpu_seconds - self.first_call_cpu_seconds
        done = self.examples - self.first_call_examples
        return done / rest if rest > 0 and done > 0 else 0.0


@dataclass
class IncrementalRun(TrainingRun):
    touched: pd.DataFrame | None = None  # user_id, embedding (float32), event_timestamp (newest event)


def make_optimizer(kind: str, learning_rate: float, initial_accumulator: float = 0.1) -> keras.optimizers.Optimizer:
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.Adagrad(learning_rate, initial_accumulator_value=initial_accumulator)


def as_dataset(
    data: Data, settings: ModelSettings, spec: FeatureSpec, shuffle: bool, seed: int | None = None
) -> tf.data.Dataset:
    """TFRecord files, an examples DataFrame or a ready dataset -> batches of example tensors."""
    if isinstance(data, tf.data.Dataset):
        return data
    columns = example_columns(spec, settings.hard_negatives_per_example)
    if isinstance(data, pd.DataFrame):
        if shuffle:
            data = data.sample(frac=1.0, random_state=seed)
        return tf.data.Dataset.from_tensor_slices(frame_to_features(data, columns)).batch(settings.batch_size)
    return make_dataset(
        list(data), settings.batch_size, settings.shuffle_buffer if shuffle else None, columns=columns, seed=seed
    )


def _graph_epoch(
    model: TwoTowerModel, dataset: tf.data.Dataset, total_examples: int | None = None, label: str = "train: one epoch"
) -> TrainingRun:
    """``train_step``s inside the graph, STEPS_PER_CALL per call, until the data ends.

    The first call runs a single step, so the tracing cost is measured apart from the rest.
    """

    @tf.function
    def run_steps(iterator, limit):
        examples = tf.constant(0, tf.int64)
        steps = tf.constant(0, tf.int64)
        loss = tf.constant(0.0)
        for _ in tf.range(limit):
            nxt = iterator.get_next_as_optional()
            if not nxt.has_value():
                break
            batch = nxt.get_value()
            loss += model.train_step(batch)["loss"]
            examples += tf.shape(batch["user_id"], out_type=tf.int64)[0]
            steps += 1
        return examples, steps, loss

    run = TrainingRun(model)
    loss_sum = 0.0
    iterator = iter(dataset)
    start, cpu_start = time.perf_counter(), time.process_time()
    limit = 1
    bar = progress(label, total_examples, unit="ex")
    while True:
        examples, steps, loss = (x.numpy() for x in run_steps(iterator, tf.constant(limit, tf.int64)))
        bar.update(int(examples))
        run.examples += int(examples)
        run.steps += int(steps)
        loss_sum += float(loss)
        if limit == 1:
            run.first_call_seconds = time.perf_counter() - start
            run.first_call_cpu_seconds = time.process_time() - cpu_start
            run.first_call_examples = run.examples
        if steps < limit:
            break
        limit = STEPS_PER_CALL
    bar.close()
    run.seconds = time.perf_counter() - start
    run.cpu_seconds = time.process_time() - cpu_start
    run.mean_loss = loss_sum / max(run.steps, 1)
    return run


def train_full(
    settings: ModelSettings,
    data: Data,
    *,
    spec: FeatureSpec,
    user_ids: np.ndarray,
    catalog: ItemCatalog,
    user_labels: np.ndarray | None = None,
    numeric_stats: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    previous: TwoTowerModel | None = None,
    seed: int | None = None,
    total_examples: int | None = None,
    epochs: int = 1,
) -> TrainingRun:
    """One shuffled epoch over ``data`` with every variable trainable (``epochs`` passes, each
    shuffled anew, for a bootstrap from history: ``twotower backfill``).

    ``data``: TFRecord files (read shuffled), an examples DataFrame (shuffled) or a ready
    ``tf.data.Dataset`` of batches (taken as is). ``user_ids``: the keys of every user known
    today, ``user_labels`` their original IDs; the user vocabulary grows by them, the item
    vocabulary by ``catalog``. ``numeric_stats``: ``{"user"|"item": {feature: (mean, std)}}``
    of a fresh model's numeric inputs (``numeric_stats``; a warm start keeps the previous ones).
    ``previous``: the previous *full* model to warm-start from (``None`` only on day one).
    ``seed``: also seeds Python's, numpy's and TensorFlow's global generators (initialisers, sampled
    negatives, OOV routing), so the same seed and data give the same model in any process.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if previous is None:
        model = build_model(
            settings, spec, IdVocab.build(user_ids, settings.oov_buckets, user_labels),
            IdVocab.build(catalog.item_id, settings.oov_buckets, catalog.labels), catalog, seed=seed,
        )  # fmt: skip
        model.user_tower.set_numeric_stats((numeric_stats or {}).get("user", {}))
        model.item_tower.set_numeric_stats((numeric_stats or {}).get("item", {}))
    else:
        model = warm_start(previous, settings, user_ids, catalog, seed=seed, user_labels=user_labels, spec=spec)
    model.compile(optimizer=make_optimizer(settings.optimizer, settings.learning_rate))
    model.id_optimizer = make_optimizer(settings.id_optimizer, settings.id_learning_rate, settings.id_initial_accumulator)
    dataset = as_dataset(data, settings, spec, shuffle=True, seed=seed)
    if epochs == 1:
        return _graph_epoch(model, dataset, total_examples)
    total = total_examples * epochs if total_examples is not None else None
    return _graph_epoch(model, dataset.repeat(epochs), total, label=f"train: {epochs} epochs")


def numeric_stats(tower: Tower, frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each numeric input over ``frame``'s present values."""
    out = {}
    for f in tower.features:
        if f.kind == "numeric" and f.name in frame.columns:
            x = encode(f, frame[f.name], "numeric statistics")
            x = x[~np.isnan(x)]
            out[f.name] = (float(x.mean()), float(x.std())) if len(x) else (0.0, 1.0)
    return out


class IncrementalTrainer:
    """Embedding-only online learning on one model; keeps its optimizer state across calls.

    The model is frozen in place (towers and task not trainable, no OOV routing): give it a
    copy of the full model (``train_incremental`` does), never the full model itself.
    """

    def __init__(self, model: TwoTowerModel, settings: ModelSettings) -> None:
        self.model = model
        self.settings = settings
        self.labels: dict[int, object] = {}  # user key -> original ID of users outside the vocabulary
        for layer in (model.user_tower, model.item_tower, model.task):
            layer.trainable = False
        for layer in (model.user_ids, model.item_ids):
            layer.trainable = True
            layer.oov_rate = 0.0
        model.id_optimizer = None  # one optimizer, over the ID tables only
        model.compile(
            optimizer=make_optimizer(
                settings.id_optimizer, settings.incremental_learning_rate, settings.incremental_initial_accumulator
            )
        )
        trainable = {id(v) for v in model.trainable_variables}
        if trainable != {id(v) for v in model.id_embedding_variables()}:  # pragma: no cover
            raise AssertionError("incremental mode may train the ID embedding tables only")
        self._step = tf.function(model.train_step, reduce_retracing=True)

    def train_micro_batch(self, features: dict[str, np.ndarray], batch_size: int, seed: int) -> list[float]:
        """One micro-batch of the stream, in the order given, ``batch_size`` examples per step;
        returns each step's loss. Steps run eagerly after seeding TF with ``seed``: the same
        micro-batch replayed (after a crash, in another process) trains bit for bit the same.
        This is the incremental update's one training move (the chain and the replay call it)."""
        tf.random.set_seed(seed)
        n = len(features["user_id"])
        return [
            float(self.model.train_step({k: v[i : i + batch_size] for k, v in features.items()})["loss"])
            for i in range(0, n, batch_size)
        ]

    def train(self, data: Data) -> IncrementalRun:
        """Train on ``data`` in the order given; report the touched users' new embeddings."""
        run = IncrementalRun(self.model)
        users, stamps = [], []
        loss_sum = 0.0
        start = time.perf_counter()
        for batch in as_dataset(data, self.settings, self.model.spec, shuffle=False):
            loss_sum += float(self._step(batch)["loss"])
            users.append(batch["user_id"].numpy())
            stamps.append(batch["event_timestamp"].numpy())
            run.examples += len(users[-1])
            run.steps += 1
        run.seconds = time.perf_counter() - start
        run.mean_loss = loss_sum / max(run.steps, 1)
        newest = pd.DataFrame(
            {"user_id": np.concatenate(users or [np.zeros(0, np.int64)]),
             "ts": np.concatenate(stamps or [np.zeros(0, np.int64)])}
        ).groupby("user_id", sort=True)["ts"].max()  # fmt: skip
        run.touched = touched_user_embeddings(self.model, newest.index.to_numpy(np.int64), self.labels)
        stamps_us = pd.to_datetime(newest.to_numpy(np.int64), unit="us", utc=True).as_unit("us")
        run.touched["event_timestamp"] = stamps_us
        return run


def train_incremental(full_model: TwoTowerModel, data: Data, settings: ModelSettings) -> IncrementalRun:
    """One incremental pass on a copy of ``full_model`` (which stays untouched)."""
    return IncrementalTrainer(clone_model(full_model, settings), settings).train(data)


def touched_user_embeddings(
    model: TwoTowerModel, user_keys: np.ndarray, labels: Mapping[int, object] | None = None
) -> pd.DataFrame:
    """``user_id -> embedding`` rows of the user ID table (OOV row for IDs not in the vocabulary).

    ``user_id`` is the original ID: from the vocabulary, else from ``labels`` (key -> ID, e.g.
    the micro-batch's events), else the key itself (integer IDs are their own keys).
    """
    user_keys = np.asarray(user_keys, dtype=np.int64)
    vocab = model.user_vocab
    rows = vocab.rows(user_keys)
    table = tf.gather(model.user_ids.embeddings, rows).numpy().astype(np.float32)
    known = rows < len(vocab)
    ids = [vocab.labels[r] if k else (labels or {}).get(int(u), u) for u, r, k in zip(user_keys.tolist(), rows.tolist(), known.tolist())]
    if model.spec.user.id_type == "string":
        missing = [u for u, i in zip(user_keys.tolist(), ids) if not isinstance(i, str)]
        if missing:
            raise ValueError(f"no original ID for user key(s) {missing[:5]}: give labels")
    return pd.DataFrame({"user_id": pd.Series(ids, dtype=object if model.spec.user.id_type == "string" else np.int64),
                         "embedding": list(table)})  # fmt: skip
