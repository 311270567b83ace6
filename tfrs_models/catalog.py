"""The item catalogue the model samples easy negatives from, and the frame helpers it needs.

Easy negatives are drawn uniformly from *all* items, not just from the clicked ones in the
batch, so the model must know every item's features. The catalogue is therefore an explicit
model input given at build time (and saved with the checkpoint): ID keys, the original IDs,
every declared item feature (encoded, twotower/core/features.py) and each item's click share
(for the sampling-bias correction). Pure numpy/pandas, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.core.errors import DataError
from twotower.core.encode import encode_frame, id_array, id_keys
from twotower.core.features import Tower


def latest_rows(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """The newest row (by ``event_timestamp`` when present) of each ``key``, ordered by key."""
    if "event_timestamp" in df.columns:
        df = df.sort_values("event_timestamp", kind="stable")
    return df.drop_duplicates(key, keep="last").sort_values(key, kind="stable").reset_index(drop=True)


def require_columns(df: pd.DataFrame, columns, where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}")


@dataclass(frozen=True)
class ItemCatalog:
    item_id: np.ndarray  # [n] int64 keys (encode.id_keys of the original IDs)
    labels: np.ndarray  # [n] the original IDs (int64 or str), as given
    features: dict[str, np.ndarray]  # declared item feature -> encoded [n] or [n, width]
    prob: np.ndarray  # [n] float32, click share (smoothed)

    def __len__(self) -> int:
        return len(self.item_id)

    @classmethod
    def from_frames(
        cls, items: pd.DataFrame, tower: Tower, frequencies: pd.DataFrame | None = None
    ) -> "ItemCatalog":
        """Newest features of every item (``items`` keyed by the tower's join key); ``prob`` from
        an ``item_frequencies`` table (keyed by ID key).

        Items missing from the frequency table (none clicked yet) get its smallest share, so
        they are never treated as impossible.
        """
        key = tower.join_key
        require_columns(items, (key,), "items")
        if len(items) == 0:
            raise DataError("items: the catalogue is empty")
        items = latest_rows(items, key)
        ids = id_keys(items[key].to_numpy(), tower.id_type, f"items column {key!r}")
        prob = np.full(len(ids), 1.0 / len(ids), dtype=np.float64)
        if frequencies is not None and len(frequencies):
            require_columns(frequencies, ("item_id", "prob"), "item frequencies")
            freq = pd.Series(frequencies["prob"].to_numpy(np.float64), index=frequencies["item_id"].to_numpy())
            prob = freq.reindex(ids).fillna(float(freq.min())).to_numpy()
        return cls(
            item_id=ids,
            labels=id_array(items[key].to_numpy()),
            features=encode_frame(tower, items, "items"),
            prob=prob.astype(np.float32),
        )

    def labels_of(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """The IDs as given of item ``keys``, and which of the keys the catalogue has."""
        pos = pd.Index(self.item_id).get_indexer(np.asarray(keys, dtype=np.int64))
        known = pos >= 0
        return self.labels[pos[known]], known

    def save(self, path: Path) -> None:
        arrays = {"item_id": self.item_id, "labels": self.labels, "prob": self.prob}
        arrays.update({f"feature/{k}": v for k, v in self.features.items()})
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> "ItemCatalog":
        with np.load(path) as z:
            features = {k.removeprefix("feature/"): z[k] for k in z.files if k.startswith("feature/")}
            return cls(item_id=z["item_id"], labels=z["labels"], features=features, prob=z["prob"])
