"""What a trained model hands to the rest of the platform.

* ``user_id_embedding_table`` - user ID (as given) -> ID embedding row, the rows of the Feast view
  ``user_id_embedding`` (the caller stamps ``generation`` and the timestamps).
* ``export_user_tower`` - the dense user tower ``f(id_embedding, features, context) -> a`` as a
  TF SavedModel *and* as plain numpy weights (``user_tower.npz``) for ``NumpyUserTower``,
  the serving fast path (no TF in the request path; one user in microseconds). The npz also
  carries the feature spec and the OOV rows of the user ID table: a user the online store has no embedding for
  yet (signed up after the last full update) gets ``oov_embedding(user_id)``.
* ``item_vectors`` - items DataFrame -> (original item IDs, unit vectors) for the ANN index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

import tensorflow as tf

from twotower.core.encode import encode_frame, id_keys
from twotower.core.files import staged_dir
from tfrs_models.catalog import latest_rows, require_columns
from tfrs_models.model import TwoTowerModel
from tfrs_models.numpy_tower import NUMPY_WEIGHTS, NumpyUserTower  # noqa: F401  (re-exported)

SAVED_MODEL = "saved_model"


def user_id_embedding_table(model: TwoTowerModel) -> pd.DataFrame:
    """One row per known user: ``user_id`` (the original ID), ``embedding`` (float32 array)."""
    vocab = model.user_vocab
    table = model.user_ids.embeddings.numpy()[: len(vocab)].astype(np.float32)
    return pd.DataFrame({"user_id": vocab.labels.copy(), "embedding": list(table)})


def _input_specs(model: TwoTowerModel) -> dict[str, tf.TensorSpec]:
    spec = model.spec
    out = {"id_embedding": tf.TensorSpec([None, model.settings.id_embedding_dim], tf.float32, name="id_embedding")}
    for f in spec.user.features:
        shape = [None, *f.shape]
        out[f.name] = tf.TensorSpec(shape, tf.int64 if f.is_int else tf.float32, name=f.name)
    for c in spec.context:
        out[c] = tf.TensorSpec([None], tf.int64, name=c)
    return out


class _ServingTower(tf.Module):
    def __init__(self, model: TwoTowerModel) -> None:
        super().__init__()
        self.tower = model.user_tower
        self.spec = model.spec
        self.serve = tf.function(self._serve, input_signature=[_input_specs(model)])

    def _serve(self, inputs):
        features = {f.name: inputs[f.name] for f in self.spec.user.features}
        context = {c: inputs[c] for c in self.spec.context}
        return {"user_vector": self.tower(inputs["id_embedding"], features, context)}


def _numpy_weights(model: TwoTowerModel) -> dict[str, np.ndarray]:
    tower = model.user_tower
    out: dict[str, np.ndarray] = {"spec": np.array(json.dumps(model.spec.to_dict()))}
    for f in model.spec.user.features:
        layer = tower.inputs_by_name[f.name]
        if f.kind in ("categorical", "multi"):
            out[f"table/{f.name}"] = layer.table.numpy()
        elif f.kind == "numeric":
            out[f"numeric/{f.name}/mean"] = layer.mean.numpy()
            out[f"numeric/{f.name}/std"] = layer.std.numpy()
        else:
            out[f"vector/{f.name}/kernel"] = layer.project.kernel.numpy()
            out[f"vector/{f.name}/bias"] = layer.project.bias.numpy()
    for c, layer in tower.context_inputs.items():
        out[f"context/{c}"] = layer.table.numpy()
    layers = [*tower.mlp.hidden, tower.mlp.out]
    for i, layer in enumerate(layers):
        out[f"dense/{i}/kernel"] = layer.kernel.numpy()
        out[f"dense/{i}/bias"] = layer.bias.numpy()
    vocab = model.user_vocab
    out["oov_rows"] = model.user_ids.embeddings.numpy()[len(vocab) :]
    return out


def export_user_tower(model: TwoTowerModel, directory: str | Path) -> Path:
    """Write ``<dir>/saved_model`` and ``<dir>/user_tower.npz`` atomically (all or nothing)."""
    directory = Path(directory)
    with staged_dir(directory) as stage:
        module = _ServingTower(model)
        tf.saved_model.save(module, str(stage / SAVED_MODEL), signatures={"serving_default": module.serve})
        with open(stage / NUMPY_WEIGHTS, "wb") as fh:
            np.savez(fh, **_numpy_weights(model))
    return directory


def load_saved_user_tower(directory: str | Path):
    """The SavedModel's serving function: ``f(id_embedding=..., <feature>=..., hour=...) -> {"user_vector"}``."""
    return tf.saved_model.load(str(Path(directory) / SAVED_MODEL)).signatures["serving_default"]


def item_vectors(model: TwoTowerModel, items: pd.DataFrame, batch_size: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Newest features of every item (keyed by the item join key) -> ``(original item IDs [n],
    vectors float32 [n, d])``."""
    tower = model.spec.item
    require_columns(items, (tower.join_key,), "items")
    items = latest_rows(items, tower.join_key)
    labels = items[tower.join_key].to_numpy()
    keys = id_keys(labels, tower.id_type, f"items column {tower.join_key!r}")
    features = encode_frame(tower, items, "items")
    out = np.zeros((len(keys), model.settings.output_dim), dtype=np.float32)
    for s in range(0, len(keys), batch_size):
        e = s + batch_size
        out[s:e] = model.item_vectors(keys[s:e], {k: v[s:e] for k, v in features.items()}).numpy()
    return labels, out


def user_vectors(model: TwoTowerModel, features: Mapping[str, np.ndarray] | pd.DataFrame, batch_size: int = 16384) -> np.ndarray:
    """Unit user vectors for example rows (``user_id``, ``user__*``, context; a frame of examples
    or ``frame_to_features`` arrays)."""
    spec = model.spec
    cols = ("user_id", *(spec.user.column(f) for f in spec.user.features), *spec.context)
    if isinstance(features, pd.DataFrame):
        features = {c: _stacked(features[c]) for c in cols}
    n = len(features["user_id"])
    out = np.zeros((n, model.settings.output_dim), dtype=np.float32)
    for s in range(0, n, batch_size):
        out[s : s + batch_size] = model.user_vectors({c: features[c][s : s + batch_size] for c in cols}).numpy()
    return out


def _stacked(column: pd.Series) -> np.ndarray:
    """An examples column as an array: scalars as they are, list cells stacked to ``[n, L]``."""
    values = column.to_numpy()
    if values.dtype != object:
        return values
    return np.stack([np.asarray(v) for v in values]) if len(values) else np.zeros((0, 0))
