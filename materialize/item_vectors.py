"""Item vectors for *all* items through the item tower, as a Dask job over item partitions.

Each worker process loads the checkpoint once (cached per process) and scores its partitions;
vectors travel back as float32 columns (cheap to pickle), and the caller builds the index.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, progress

from tfrs_models.catalog import ITEM_FEATURE_COLUMNS
from twotower.core.config import ModelSettings

_LOADED: dict[str, object] = {}  # checkpoint path -> model, per worker process


def _model(checkpoint: str, settings_json: str):
    key = f"{checkpoint}|{settings_json}"
    if key not in _LOADED:
        from tfrs_models.checkpoint import load_model

        _LOADED.clear()  # one model per worker at a time
        _LOADED[key] = load_model(checkpoint, ModelSettings.model_validate(json.loads(settings_json)))
    return _LOADED[key]


def _vector_columns(dim: int) -> list[str]:
    return [f"v{i}" for i in range(dim)]


def _score_partition(items: pd.DataFrame, checkpoint: str, settings_json: str, dim: int) -> pd.DataFrame:
    from tfrs_models.export import item_vectors

    if len(items) == 0:
        return pd.DataFrame({"item_id": pd.Series(dtype="int64"), **{c: pd.Series(dtype="float32") for c in _vector_columns(dim)}})
    ids, vectors = item_vectors(_model(checkpoint, settings_json), items)
    out = pd.DataFrame(vectors, columns=_vector_columns(dim))
    out.insert(0, "item_id", ids)
    return out


def export_item_vectors(
    client: Client, checkpoint: Path, items: pd.DataFrame, settings: ModelSettings, partitions: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(item_ids [n], unit vectors [n, d])`` of every item in ``items``, sorted by item id."""
    dim = settings.output_dim
    frame = items.loc[:, list(ITEM_FEATURE_COLUMNS) + ["event_timestamp"]]
    parts = dd.from_pandas(frame, npartitions=max(1, min(partitions, len(frame) // 1000 or 1)))
    meta = pd.DataFrame({"item_id": pd.Series(dtype="int64"), **{c: pd.Series(dtype="float32") for c in _vector_columns(dim)}})
    scored = parts.map_partitions(
        _score_partition, str(checkpoint), settings.model_dump_json(), dim, meta=meta
    )
    future = client.compute(scored)
    progress(future, scheduler=client.scheduler.address)
    result = future.result().sort_values("item_id", kind="stable").drop_duplicates("item_id", keep="last")
    return result["item_id"].to_numpy(np.int64), result[_vector_columns(dim)].to_numpy(np.float32)
