"""Explicit ID vocabularies: ID -> embedding row, saved with every checkpoint, grown at full updates.

IDs are int64 *keys* here (the integer IDs themselves, or a stable hash of string IDs:
``twotower.core.encode.id_keys``); ``labels`` keeps the original IDs row by row, so what
leaves the model (the user ID embeddings written to Feast, pushes) carries the user's own IDs.

Rows ``0 .. n-1`` belong to the known IDs in the order they were first seen (a row never moves
once assigned, so growing a vocabulary only appends). Rows ``n .. n+oov_buckets-1`` are the
OOV rows: an ID that is not (yet) in the vocabulary - a user who signed up after the last full
update - maps to row ``n + hash(id) % oov_buckets``. The hash is ``id mod oov_buckets``
(floor-mod, so negative IDs too): identical in numpy and TensorFlow, and sequential new IDs
spread evenly over the buckets. At the next full update the new IDs get their own rows.

A TensorFlow hash table is *built from* the vocabulary each time a model is constructed; the
table itself is never the saved artefact, so nothing baked has to be grown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tensorflow as tf
import tf_keras as keras

from twotower.core.errors import DataError


@dataclass(frozen=True)
class IdVocab:
    ids: np.ndarray  # int64 keys (encode.id_keys), unique; position = row
    oov_buckets: int
    labels: np.ndarray | None = None  # the original IDs of the rows (int64 or str); None = the keys
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)
    _order: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        if len(np.unique(ids)) != len(ids):
            raise DataError("vocabulary: IDs must be unique (two string IDs with one hash key?)")
        if self.oov_buckets < 1:
            raise DataError("vocabulary: oov_buckets must be >= 1")
        labels = ids if self.labels is None else np.asarray(self.labels).reshape(-1)
        if len(labels) != len(ids):
            raise DataError(f"vocabulary: {len(labels)} labels for {len(ids)} IDs")
        order = np.argsort(ids, kind="stable")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_sorted", ids[order])

    @classmethod
    def build(cls, ids: np.ndarray, oov_buckets: int, labels: np.ndarray | None = None) -> "IdVocab":
        """A fresh vocabulary of the distinct IDs, in first-seen order (``labels``: their originals)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        _, first = np.unique(ids, return_index=True)
        keep = np.sort(first)
        return cls(ids[keep], oov_buckets, None if labels is None else np.asarray(labels).reshape(-1)[keep])

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_rows(self) -> int:
        return len(self.ids) + self.oov_buckets

    def contains(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self._sorted, ids)
        pos = np.minimum(pos, max(len(self._sorted) - 1, 0))
        return (self._sorted[pos] == ids) if len(self._sorted) else np.zeros(ids.shape, bool)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each ID: its own row if known, else its OOV row."""
        ids = np.asarray(ids, dtype=np.int64)
        known = self.contains(ids)
        pos = np.minimum(np.searchsorted(self._sorted, ids), max(len(self._sorted) - 1, 0))
        own = self._order[pos] if len(self._sorted) else np.zeros(ids.shape, np.int64)
        return np.where(known, own, self.oov_rows(ids)).astype(np.int64)

    def oov_rows(self, ids: np.ndarray) -> np.ndarray:
        return len(self.ids) + np.mod(np.asarray(ids, dtype=np.int64), self.oov_buckets)

    def grow(self, ids: np.ndarray, labels: np.ndarray | None = None) -> "IdVocab":
        """This vocabulary plus the new IDs appended (existing rows keep their index)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        new = ~self.contains(ids)
        fresh = IdVocab.build(ids[new], self.oov_buckets, None if labels is None else np.asarray(labels).reshape(-1)[new])
        joined = np.concatenate([self.labels, fresh.labels]) if len(fresh) else self.labels
        return IdVocab(np.concatenate([self.ids, fresh.ids]), self.oov_buckets, joined)

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, ids=self.ids, oov_buckets=np.int64(self.oov_buckets), labels=self.labels)

    @classmethod
    def load(cls, path: Path) -> "IdVocab":
        with np.load(path) as z:
            return cls(z["ids"], int(z["oov_buckets"]), z["labels"] if "labels" in z.files else None)


class IdLookup(keras.layers.Layer):
    """ID -> row, in the graph: a static hash table built from the vocabulary, OOV by floor-mod."""

    def __init__(self, vocab: IdVocab, **kwargs) -> None:
        super().__init__(trainable=False, **kwargs)
        self.size = len(vocab)
        self.oov_buckets = vocab.oov_buckets
        self.table = None
        if self.size:
            init = tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocab.ids, tf.int64), tf.range(self.size, dtype=tf.int64)
            )
            self.table = tf.lookup.StaticHashTable(init, default_value=-1)

    def oov_rows(self, ids: tf.Tensor) -> tf.Tensor:
        return self.size + tf.math.floormod(ids, self.oov_buckets)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(ids, tf.int64)
        if self.table is None:
            return self.oov_rows(ids)
        rows = self.table.lookup(ids)
        return tf.where(rows < 0, self.oov_rows(ids), rows)
