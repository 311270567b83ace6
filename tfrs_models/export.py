"""What a trained model hands to the rest of the platform.

* ``user_id_embedding_table`` - user_id -> ID embedding row, the rows of the Feast view
  ``user_id_embedding`` (the caller stamps ``generation`` and the timestamps).
* ``export_user_tower`` - the dense user tower ``f(id_embedding, profile, hour) -> a`` as a
  TF SavedModel *and* as plain numpy weights (``user_tower.npz``) for ``NumpyUserTower``,
  the serving fast path (no TF in the request path; one user in microseconds). The npz also
  carries the OOV rows of the user ID table: a user the online store has no embedding for
  yet (signed up after the last full update) gets ``oov_embedding(user_id)``.
* ``item_vectors`` - items DataFrame -> (item_ids, unit vectors) for the ANN index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import tensorflow as tf

from twotower.core.files import staged_dir
from tfrs_models.catalog import ITEM_FEATURE_COLUMNS, latest_rows, pad_lists, require_columns
from tfrs_models.model import TwoTowerModel
from tfrs_models.numpy_tower import NUMPY_WEIGHTS, NumpyUserTower  # noqa: F401  (re-exported)
from tfrs_models.towers import USER_FEATURES

SAVED_MODEL = "saved_model"


def user_id_embedding_table(model: TwoTowerModel) -> pd.DataFrame:
    """One row per known user: ``user_id`` (int64), ``embedding`` (float32 array)."""
    vocab = model.user_vocab
    table = model.user_ids.embeddings.numpy()[: len(vocab)].astype(np.float32)
    return pd.DataFrame({"user_id": vocab.ids.copy(), "embedding": list(table)})


class _ServingTower(tf.Module):
    def __init__(self, model: TwoTowerModel) -> None:
        super().__init__()
        self.tower = model.user_tower
        d, t = model.settings.id_embedding_dim, model.settings.max_tags
        scalar = lambda name: tf.TensorSpec([None], tf.int64, name=name)  # noqa: E731
        self.serve = tf.function(
            self._serve,
            input_signature=[
                tf.TensorSpec([None, d], tf.float32, name="id_embedding"),
                scalar("age_bucket"),
                scalar("gender"),
                scalar("city_tier"),
                tf.TensorSpec([None, t], tf.int64, name="interest_tags"),
                scalar("hour"),
            ],
        )

    def _serve(self, id_embedding, age_bucket, gender, city_tier, interest_tags, hour):
        inputs = dict(zip(USER_FEATURES, (age_bucket, gender, city_tier, interest_tags, hour)))
        inputs["id_embedding"] = id_embedding
        return {"user_vector": self.tower(inputs)}


def _numpy_weights(model: TwoTowerModel) -> dict[str, np.ndarray]:
    tower = model.user_tower
    out = {f"table/{name}": getattr(tower, name).table.numpy() for name in USER_FEATURES}
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
    """The SavedModel's serving function: ``f(id_embedding=..., age_bucket=..., ...) -> {"user_vector"}``."""
    return tf.saved_model.load(str(Path(directory) / SAVED_MODEL)).signatures["serving_default"]


def item_vectors(model: TwoTowerModel, items: pd.DataFrame, batch_size: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Newest features of every item -> ``(item_ids int64 [n], vectors float32 [n, d])``."""
    require_columns(items, ITEM_FEATURE_COLUMNS, "items")
    items = latest_rows(items, "item_id")
    ids = items["item_id"].to_numpy(np.int64)
    cat = items["category"].to_numpy(np.int64)
    author = items["author_id"].to_numpy(np.int64)
    tags = pad_lists(items["tags"].to_numpy(), model.settings.max_tags)
    out = np.zeros((len(ids), model.settings.output_dim), dtype=np.float32)
    for s in range(0, len(ids), batch_size):
        e = s + batch_size
        out[s:e] = model.item_vectors(ids[s:e], cat[s:e], author[s:e], tags[s:e]).numpy()
    return ids, out


def user_vectors(model: TwoTowerModel, features, batch_size: int = 16384) -> np.ndarray:
    """Unit user vectors for rows carrying ``user_id`` + profile + ``hour`` (e.g. examples)."""
    cols = ("user_id", *USER_FEATURES)
    if isinstance(features, pd.DataFrame):
        features = {
            c: (pad_lists(features[c].to_numpy(), model.settings.max_tags) if c == "interest_tags"
                else features[c].to_numpy(np.int64))
            for c in cols
        }  # fmt: skip
    n = len(features["user_id"])
    out = np.zeros((n, model.settings.output_dim), dtype=np.float32)
    for s in range(0, n, batch_size):
        out[s : s + batch_size] = model.user_vectors({c: features[c][s : s + batch_size] for c in cols}).numpy()
    return out
