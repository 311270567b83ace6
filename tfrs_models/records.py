"""Training examples on disk: their columns (from the feature spec), the writer and the reader.

An *example* is one click with everything the model needs to train on it: the point-in-time
features of the user, the clicked item's features, its sampling probability (for the logQ
correction) and the request's ranked-out items (hard negatives) with their features.

``example_columns(spec, H)`` is the single schema: ``user_id``, ``item_id``, ``request_id``
(int64 keys), ``event_timestamp`` (µs), the context (``hour``, ...), ``user__<feature>`` and
``item__<feature>`` per declared feature, ``item_prob``, and for the H hard negatives
``hard_item_id``, ``hard__<item feature>``, ``hard_prob``, ``hard_mask``. Every column is a
fixed-length int64 or float32 list (strings were hashed to keys before, features.py).
``materialize.examples.build_examples`` produces a DataFrame with these columns, ``write_shard``
turns one into a TFRecord file (one ``tf.train.Example`` per row), ``make_dataset`` reads the
files back into batches of dense tensors and ``frame_to_features`` gives the same tensors
straight from a DataFrame (stream micro-batches, evaluation).

In a DataFrame, list columns hold one fixed-length numpy array per row (a hard list feature
is the H x L matrix flattened); in a batch a column has the shape ``[B, *Column.shape]``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

import tensorflow as tf

from tfrs_models.example_codec import encode_examples
from twotower.core.errors import DataError
from twotower.core.features import FeatureSpec
from twotower.core.files import atomic_path


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # "int64" | "float32"
    shape: tuple[int, ...]  # per example: () scalar, (L,), (H,), (H, L)
    doc: str = ""

    @property
    def length(self) -> int:
        return math.prod(self.shape) if self.shape else 1


def example_columns(spec: FeatureSpec, hard_negatives: int) -> tuple[Column, ...]:
    """The example schema of a feature spec (see the module docstring)."""
    h = hard_negatives

    def dtype(f) -> str:
        return "int64" if f.is_int else "float32"

    cols = [
        Column("user_id", "int64", (), "who clicked (ID key)"),
        Column("item_id", "int64", (), "the clicked item (the positive, ID key)"),
        Column("request_id", "int64", (), "the request the click belongs to (key)"),
        Column("event_timestamp", "int64", (), "click time, microseconds since epoch (UTC)"),
    ]
    cols += [Column(c, "int64", (), "request context (UTC)") for c in spec.context]
    cols += [Column(spec.user.column(f), dtype(f), f.shape, f"user feature {f.ref} at click time") for f in spec.user.features]
    cols += [Column(spec.item.column(f), dtype(f), f.shape, f"clicked item's {f.ref}") for f in spec.item.features]
    cols.append(Column("item_prob", "float32", (), "clicked item's share of the day's clicks (logQ)"))
    cols.append(Column("hard_item_id", "int64", (h,), "ranked-out items of the request, -1-padded"))
    cols += [Column(f"hard__{f.name}", dtype(f), (h, *f.shape), f"their {f.ref}") for f in spec.item.features]
    cols.append(Column("hard_prob", "float32", (h,), "their click shares"))
    cols.append(Column("hard_mask", "int64", (h,), "1 where a hard negative is present, 0 for padding"))
    return tuple(cols)


def parse_spec(columns: Sequence[Column]):
    """``tf.io.parse_example`` spec of one record (every feature fixed-length)."""
    return {c.name: tf.io.FixedLenFeature([c.length], tf.int64 if c.dtype == "int64" else tf.float32) for c in columns}


def empty_examples(columns: Sequence[Column]) -> pd.DataFrame:
    """A zero-row examples frame with the right columns and dtypes (Dask ``meta=``)."""
    return pd.DataFrame({c.name: pd.Series([], dtype=c.dtype if not c.shape else object) for c in columns})


# --- DataFrame -> dense arrays ----------------------------------------------------------------


def _column_matrix(df: pd.DataFrame, col: Column, where: str) -> np.ndarray:
    values = df[col.name].to_numpy()
    if not col.shape:
        return values.astype(col.dtype).reshape(-1, 1)
    if len(values) == 0:
        return np.zeros((0, col.length), dtype=col.dtype)
    try:
        out = np.stack([np.asarray(v, dtype=col.dtype).reshape(-1) for v in values])
    except ValueError as exc:
        raise DataError(f"{where}: column {col.name!r} must hold equal-length lists ({exc})") from None
    if out.shape[1] != col.length:
        raise DataError(f"{where}: column {col.name!r} has length {out.shape[1]}, expected {col.length} {col.shape}")
    return out


def frame_arrays(df: pd.DataFrame, columns: Sequence[Column], where: str = "examples") -> dict[str, np.ndarray]:
    """Every example column as a 2-D array ``[rows, length]``; names a missing column or a wrong length."""
    missing = [c.name for c in columns if c.name not in df.columns]
    if missing:
        raise DataError(f"{where}: missing example column(s) {', '.join(missing)}")
    return {c.name: _column_matrix(df, c, where) for c in columns}


def frame_to_features(df: pd.DataFrame, columns: Sequence[Column], where: str = "examples") -> dict[str, np.ndarray]:
    """The batch ``make_dataset`` would yield for these rows, as numpy arrays."""
    arrays = frame_arrays(df, columns, where)
    return {c.name: arrays[c.name].reshape(len(df), *c.shape) for c in columns}


# --- writer -----------------------------------------------------------------------------------


def write_shard(df: pd.DataFrame, path: str | os.PathLike, columns: Sequence[Column]) -> int:
    """Serialise one examples partition into one TFRecord file; returns the number of records.

    Atomic: the records go to a temporary file in the target directory, which is renamed onto
    ``path`` only when complete, so a crash never leaves a truncated shard behind. A plain
    function of (DataFrame, path) so Dask ``map_partitions`` can call it per partition. The
    records are encoded for the whole frame at once (``example_codec``), not one protobuf
    message per row.
    """
    path = Path(path)
    arrays = frame_arrays(df, columns, where=str(path))
    records = encode_examples(arrays, {c.name: c.dtype for c in columns})
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for record in records:
            writer.write(record)
    return len(df)


# --- reader -----------------------------------------------------------------------------------


def parse_batch(serialized: tf.Tensor, columns: Sequence[Column]) -> dict[str, tf.Tensor]:
    """Parse a *batch* of serialized examples (one vectorised op, much faster than per record)."""
    parsed = tf.io.parse_example(serialized, parse_spec(columns))
    n = tf.shape(serialized)[0]
    return {c.name: tf.reshape(parsed[c.name], [n, *c.shape]) for c in columns}


def make_dataset(
    files: Sequence[str | os.PathLike],
    batch_size: int,
    shuffle_buffer: int | None = None,
    *,
    columns: Sequence[Column],
    seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of example tensors from TFRecord shards.

    ``shuffle_buffer=None`` keeps the given order exactly (files one after another, records in
    file order): the incremental mode trains in time order. With a buffer, the file order is
    shuffled, several files are read interleaved and records are shuffled before batching (the
    full mode's one shuffled epoch). Parsing happens after batching, in parallel, and batches
    are prefetched so the trainer never waits on I/O.
    """
    files = [str(f) for f in files]
    if not files:
        raise DataError("make_dataset: no TFRecord files given")
    for f in files:
        if not Path(f).is_file():
            raise DataError(f"make_dataset: no such TFRecord file {f}")
    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_buffer:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
            cycle_length=min(len(files), 4),
            block_length=16,
            num_parallel_calls=autotune,
            deterministic=seed is not None,
        )
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
            cycle_length=1,
            num_parallel_calls=autotune,
            deterministic=True,
        )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(
        lambda s: parse_batch(s, columns),
        num_parallel_calls=autotune,
        deterministic=not shuffle_buffer or seed is not None,
    )
    return ds.prefetch(autotune)

