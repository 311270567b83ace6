"""Training examples on disk: the one definition of their columns, the writer and the reader.

An *example* is one click with everything the model needs to train on it: the point-in-time
profile of the user, the clicked item's features, its sampling probability (for the logQ
correction) and the request's ranked-out items (hard negatives) with their features.

``EXAMPLE_COLUMNS`` is the single schema. ``materialize.examples.build_examples`` produces a
DataFrame with exactly these columns, ``write_shard`` turns one into a TFRecord file (one
``tf.train.Example`` per row), ``make_dataset`` reads the files back into batches of dense
tensors and ``frame_to_features`` gives the same tensors straight from a DataFrame (stream
micro-batches, evaluation). The lengths of the list columns are ``max_tags`` (T) and
``hard_negatives`` (H) from ``ModelSettings``.

In a DataFrame, list columns hold one fixed-length numpy array per row (``hard_tags`` is the
H x T matrix flattened); in a batch they are ``[B, L]`` tensors (``hard_tags``: ``[B, H, T]``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd

import tensorflow as tf

from tfrs_models.example_codec import encode_examples
from twotower.core.files import atomic_path
from twotower.core.config import ModelSettings
from twotower.core.errors import DataError

_DEFAULTS = ModelSettings()


@dataclass(frozen=True)
class Column:
    name: str
    dtype: Literal["int64", "float32"]
    shape: Literal["scalar", "tags", "hard", "hard_tags"]
    doc: str

    def length(self, max_tags: int, hard_negatives: int) -> int:
        return {"scalar": 1, "tags": max_tags, "hard": hard_negatives, "hard_tags": hard_negatives * max_tags}[
            self.shape
        ]


EXAMPLE_COLUMNS: tuple[Column, ...] = (
    Column("user_id", "int64", "scalar", "who clicked"),
    Column("item_id", "int64", "scalar", "the clicked item (the positive)"),
    Column("request_id", "int64", "scalar", "the request the click belongs to"),
    Column("event_timestamp", "int64", "scalar", "click time, microseconds since epoch (UTC)"),
    Column("hour", "int64", "scalar", "hour of day of the request (UTC), context feature"),
    Column("age_bucket", "int64", "scalar", "user profile valid at click time"),
    Column("gender", "int64", "scalar", "user profile valid at click time"),
    Column("city_tier", "int64", "scalar", "user profile valid at click time"),
    Column("interest_tags", "int64", "tags", "declared interests, 0-padded"),
    Column("category", "int64", "scalar", "clicked item's category"),
    Column("author_id", "int64", "scalar", "clicked item's author"),
    Column("tags", "int64", "tags", "clicked item's tags, 0-padded"),
    Column("item_prob", "float32", "scalar", "clicked item's share of the day's clicks (logQ)"),
    Column("hard_item_id", "int64", "hard", "ranked-out items of the request, -1-padded"),
    Column("hard_category", "int64", "hard", "their categories"),
    Column("hard_author_id", "int64", "hard", "their authors"),
    Column("hard_tags", "int64", "hard_tags", "their tags (H x T flattened), 0-padded"),
    Column("hard_prob", "float32", "hard", "their click shares"),
    Column("hard_mask", "int64", "hard", "1 where a hard negative is present, 0 for padding"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in EXAMPLE_COLUMNS)
_BY_NAME = {c.name: c for c in EXAMPLE_COLUMNS}


def feature_spec(max_tags: int = _DEFAULTS.max_tags, hard_negatives: int = _DEFAULTS.hard_negatives_per_example):
    """``tf.io.parse_example`` spec of one record (every feature fixed-length)."""
    return {
        c.name: tf.io.FixedLenFeature(
            [c.length(max_tags, hard_negatives)], tf.int64 if c.dtype == "int64" else tf.float32
        )
        for c in EXAMPLE_COLUMNS
    }


def empty_examples() -> pd.DataFrame:
    """A zero-row examples frame with the right columns and dtypes (Dask ``meta=``)."""
    return pd.DataFrame(
        {c.name: pd.Series([], dtype=c.dtype if c.shape == "scalar" else object) for c in EXAMPLE_COLUMNS}
    )


# --- DataFrame -> dense arrays ----------------------------------------------------------------


def _column_matrix(df: pd.DataFrame, col: Column, where: str, width: int | None) -> np.ndarray:
    values = df[col.name].to_numpy()
    if col.shape == "scalar":
        return values.astype(col.dtype).reshape(-1, 1)
    if len(values) == 0:
        return np.zeros((0, width or 0), dtype=col.dtype)
    try:
        return np.stack([np.asarray(v, dtype=col.dtype) for v in values])
    except ValueError as exc:
        raise DataError(f"{where}: column {col.name!r} must hold equal-length lists ({exc})") from None


def frame_arrays(
    df: pd.DataFrame, where: str = "examples", max_tags: int | None = None, hard_negatives: int | None = None
) -> dict[str, np.ndarray]:
    """Every example column as a 2-D array ``[rows, length]``.

    Names the first missing column or wrong list length. The lengths are inferred from the data
    unless given (then they are checked, and they shape an empty frame's arrays).
    """
    missing = [n for n in COLUMN_NAMES if n not in df.columns]
    if missing:
        raise DataError(f"{where}: missing example column(s) {', '.join(missing)}")
    widths = {c.name: c.length(max_tags, hard_negatives) if None not in (max_tags, hard_negatives) else None
              for c in EXAMPLE_COLUMNS}  # fmt: skip
    arrays = {c.name: _column_matrix(df, c, where, widths[c.name]) for c in EXAMPLE_COLUMNS}
    t = arrays["tags"].shape[1] if max_tags is None else max_tags
    h = arrays["hard_item_id"].shape[1] if hard_negatives is None else hard_negatives
    for c in EXAMPLE_COLUMNS:
        want = c.length(t, h)
        if len(df) and arrays[c.name].shape[1] != want:
            raise DataError(
                f"{where}: column {c.name!r} has length {arrays[c.name].shape[1]}, expected {want} "
                f"(max_tags={t}, hard_negatives={h})"
            )
    return arrays


def frame_to_features(
    df: pd.DataFrame, where: str = "examples", max_tags: int | None = None, hard_negatives: int | None = None
) -> dict[str, np.ndarray]:
    """The batch ``make_dataset`` would yield for these rows, as numpy arrays."""
    arrays = frame_arrays(df, where, max_tags, hard_negatives)
    out = {k: (v[:, 0] if _BY_NAME[k].shape == "scalar" else v) for k, v in arrays.items()}
    t = out["tags"].shape[1]
    out["hard_tags"] = out["hard_tags"].reshape(len(df), out["hard_item_id"].shape[1], t)
    return out


# --- writer -----------------------------------------------------------------------------------


def write_shard(df: pd.DataFrame, path: str | os.PathLike) -> int:
    """Serialise one examples partition into one TFRecord file; returns the number of records.

    Atomic: the records go to a temporary file in the target directory, which is renamed onto
    ``path`` only when complete, so a crash never leaves a truncated shard behind. A plain
    function of (DataFrame, path) so Dask ``map_partitions`` can call it per partition. The
    records are encoded for the whole frame at once (``example_codec``), not one protobuf
    message per row.
    """
    path = Path(path)
    arrays = frame_arrays(df, where=str(path))
    records = encode_examples(arrays, {n: _BY_NAME[n].dtype for n in arrays})
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for record in records:
            writer.write(record)
    return len(df)


# --- reader -----------------------------------------------------------------------------------


def parse_batch(serialized: tf.Tensor, max_tags: int, hard_negatives: int) -> dict[str, tf.Tensor]:
    """Parse a *batch* of serialized examples (one vectorised op, much faster than per record)."""
    parsed = tf.io.parse_example(serialized, feature_spec(max_tags, hard_negatives))
    out = {k: (tf.squeeze(v, axis=1) if _BY_NAME[k].shape == "scalar" else v) for k, v in parsed.items()}
    out["hard_tags"] = tf.reshape(out["hard_tags"], [tf.shape(serialized)[0], hard_negatives, max_tags])
    return out


def make_dataset(
    files: Sequence[str | os.PathLike],
    batch_size: int,
    shuffle_buffer: int | None = None,
    *,
    max_tags: int = _DEFAULTS.max_tags,
    hard_negatives: int = _DEFAULTS.hard_negatives_per_example,
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
        lambda s: parse_batch(s, max_tags, hard_negatives),
        num_parallel_calls=autotune,
        deterministic=not shuffle_buffer or seed is not None,
    )
    return ds.prefetch(autotune)

