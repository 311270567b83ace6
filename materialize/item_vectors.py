"""Item vectors for *all* items through the item tower, as a Dask job over item partitions.

Each worker process loads the checkpoint once (cached per process) and scores its partitions;
vectors travel back as float32 columns (cheap to pickle), and the caller builds the index.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, progress

from twotower.core.config import ModelSettings
from twotower.core.features import FeatureSpec
from twotower.core.progress import showing

_LOADED: dict[str, object] = {}  # checkpoint path -> model, per worker process
_LOADING = threading.Lock()  # workers may be threads of one process (small jobs: materialize.cluster)


def _model(checkpoint: str, settings_json: str):
    key = f"{checkpoint}|{settings_json}"
    with _LOADING:
        if key not in _LOADED:
            from tfrs_models.checkpoint import load_model

            _LOADED.clear()  # one model per worker process at a time
            _LOADED[key] = load_model(checkpoint, ModelSettings.model_validate(json.loads(settings_json)))
        return _LOADED[key]


def _vector_columns(dim: int) -> list[str]:
    return [f"v{i}" for i in range(dim)]


def _meta(dim: int, id_dtype) -> pd.DataFrame:
    return pd.DataFrame({"item_id": pd.Series(dtype=id_dtype), **{c: pd.Series(dtype="float32") for c in _vector_columns(dim)}})


def _score_partition(items: pd.DataFrame, checkpoint: str, settings_json: str, dim: int, id_dtype) -> pd.DataFrame:
    from tfrs_models.export import item_vectors

    if len(items) == 0:
        return _meta(dim, id_dtype)
    ids, vectors = item_vectors(_model(checkpoint, settings_json), items)
    out = pd.DataFrame(vectors, columns=_vector_columns(dim))
    out.insert(0, "item_id", pd.Series(ids, dtype=id_dtype))
    return out


def export_item_vectors(
    client: Client, checkpoint: Path, items: pd.DataFrame, settings: ModelSettings, spec: FeatureSpec, partitions: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(item IDs as given [n], unit vectors [n, d])`` of every item in ``items`` (keyed by the
    item tower's join key), sorted by item ID."""
    dim, tower = settings.output_dim, spec.item
    frame = items.loc[:, [tower.join_key, *(f.name for f in tower.features), "event_timestamp"]]
    id_dtype = "int64" if tower.id_type == "int" else object
    parts = dd.from_pandas(frame, npartitions=max(1, min(partitions, len(frame) // 1000 or 1)))
    scored = parts.map_partitions(
        _score_partition, str(checkpoint), settings.model_dump_json(), dim, id_dtype, meta=_meta(dim, id_dtype)
    )
    future = client.compute(scored)
    if showing():  # Dask's own bar, on a terminal only (it prints a line per update otherwise)
        progress(future, scheduler=client.scheduler.address)
    result = future.result().sort_values("item_id", kind="stable").drop_duplicates("item_id", keep="last")
    ids = result["item_id"].to_numpy(np.int64 if tower.id_type == "int" else object)
    return ids, result[_vector_columns(dim)].to_numpy(np.float32)
