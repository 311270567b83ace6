"""The item catalogue the model samples easy negatives from, and the frame helpers it needs.

Easy negatives are drawn uniformly from *all* items, not just from the clicked ones in the
batch, so the model must know every item's features. The catalogue is therefore an explicit
model input given at build time (and saved with the checkpoint): IDs, features and each
item's click share (for the sampling-bias correction). Pure numpy/pandas, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.core.errors import DataError

ITEM_FEATURE_COLUMNS = ("item_id", "category", "author_id", "tags")


def pad_lists(values, length: int, fill: int = 0, dtype=np.int64) -> np.ndarray:
    """Ragged lists (None / list / array per row) -> ``[n, length]`` matrix, truncated or padded."""
    out = np.full((len(values), length), fill, dtype=dtype)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        v = np.asarray(v, dtype=dtype).reshape(-1)[:length]
        out[i, : len(v)] = v
    return out


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
    item_id: np.ndarray  # [n] int64
    category: np.ndarray  # [n] int64
    author_id: np.ndarray  # [n] int64
    tags: np.ndarray  # [n, T] int64, 0-padded
    prob: np.ndarray  # [n] float32, click share (smoothed)

    def __len__(self) -> int:
        return len(self.item_id)

    @classmethod
    def from_frames(
        cls, items: pd.DataFrame, max_tags: int, frequencies: pd.DataFrame | None = None
    ) -> "ItemCatalog":
        """Newest features of every item; ``prob`` from an ``item_frequencies`` table.

        Items missing from the frequency table (none clicked yet) get its smallest share, so
        they are never treated as impossible.
        """
        require_columns(items, ITEM_FEATURE_COLUMNS, "items")
        if len(items) == 0:
            raise DataError("items: the catalogue is empty")
        items = latest_rows(items, "item_id")
        ids = items["item_id"].to_numpy(np.int64)
        prob = np.full(len(ids), 1.0 / len(ids), dtype=np.float64)
        if frequencies is not None and len(frequencies):
            require_columns(frequencies, ("item_id", "prob"), "item frequencies")
            freq = pd.Series(frequencies["prob"].to_numpy(np.float64), index=frequencies["item_id"].to_numpy())
            prob = freq.reindex(ids).fillna(float(freq.min())).to_numpy()
        return cls(
            item_id=ids,
            category=items["category"].to_numpy(np.int64),
            author_id=items["author_id"].to_numpy(np.int64),
            tags=pad_lists(items["tags"].to_numpy(), max_tags),
            prob=prob.astype(np.float32),
        )

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, **self.__dict__)

    @classmethod
    def load(cls, path: Path) -> "ItemCatalog":
        with np.load(path) as z:
            return cls(**{k: z[k] for k in ("item_id", "category", "author_id", "tags", "prob")})
