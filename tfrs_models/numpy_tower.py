"""The dense user tower in numpy: the serving fast path.

Kept free of TensorFlow on purpose: the request path (serving/) imports only this module, so
a server starts in a second and holds no TF runtime. ``tfrs_models.export`` writes the weights
(``user_tower.npz``, with the feature spec the tower was built with) and tests that this
forward pass equals the SavedModel's within 1e-5. The inputs are encoded as in training
(``twotower.core.encode.encode``), one entry per declared user feature, plus the context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from twotower.core.encode import ABSENT
from twotower.core.features import FeatureSpec

NUMPY_WEIGHTS = "user_tower.npz"


class NumpyUserTower:
    """The dense user tower in numpy: the serving path, equal to TF within float rounding."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.spec = FeatureSpec.from_dict(json.loads(str(weights["spec"])))
        self.weights = {k: v.astype(np.float32) for k, v in weights.items() if k != "spec"}
        n = len([k for k in weights if k.startswith("dense/") and k.endswith("/kernel")])
        self.kernels = [self.weights[f"dense/{i}/kernel"] for i in range(n)]
        self.biases = [self.weights[f"dense/{i}/bias"] for i in range(n)]
        self.oov_rows = self.weights["oov_rows"]

    @classmethod
    def load(cls, path: str | Path) -> "NumpyUserTower":
        """``path``: the export directory or its ``user_tower.npz``."""
        path = Path(path)
        if path.is_dir():
            path = path / NUMPY_WEIGHTS
        with np.load(path) as z:
            return cls({k: z[k] for k in z.files})

    @property
    def output_dim(self) -> int:
        return self.kernels[-1].shape[1]

    def oov_embedding(self, user_keys) -> np.ndarray:
        """ID embedding of users with no row of their own (same hash as the model's)."""
        return self.oov_rows[np.mod(np.asarray(user_keys, dtype=np.int64), len(self.oov_rows))]

    def _part(self, f, values: np.ndarray, n: int) -> np.ndarray:
        w = self.weights
        if f.kind == "categorical":
            table = w[f"table/{f.name}"]
            return table[np.mod(np.asarray(values, np.int64).reshape(n), len(table))]
        if f.kind == "multi":
            table = w[f"table/{f.name}"]
            keys = np.asarray(values, np.int64).reshape(n, f.max_len)
            mask = (keys != ABSENT).astype(np.float32)[..., None]
            return (table[np.mod(keys, len(table))] * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
        if f.kind == "numeric":
            x = np.asarray(values, np.float32).reshape(n)
            missing = np.isnan(x)
            z = np.where(missing, 0.0, (x - w[f"numeric/{f.name}/mean"]) / w[f"numeric/{f.name}/std"])
            return np.stack([z, missing], axis=1).astype(np.float32)
        x = np.asarray(values, np.float32).reshape(n, f.dim)
        nan = np.isnan(x)
        missing = nan.any(axis=1, keepdims=True)
        projected = np.where(nan, 0.0, x) @ w[f"vector/{f.name}/kernel"] + w[f"vector/{f.name}/bias"]
        return np.concatenate([np.where(missing, 0.0, projected), missing], axis=1).astype(np.float32)

    def __call__(self, id_embedding, features: Mapping[str, np.ndarray], context: Mapping[str, np.ndarray]) -> np.ndarray:
        """One user (1-D embedding) or a batch (2-D): encoded features and context per user."""
        emb = np.asarray(id_embedding, dtype=np.float32)
        single = emb.ndim == 1
        emb = np.atleast_2d(emb)
        n = len(emb)
        parts = [emb] + [self._part(f, features[f.name], n) for f in self.spec.user.features]
        for c in self.spec.context:
            table = self.weights[f"context/{c}"]
            parts.append(table[np.mod(np.asarray(context[c], np.int64).reshape(n), len(table))])
        x = np.concatenate(parts, axis=1)
        last = len(self.kernels) - 1
        for i, (k, b) in enumerate(zip(self.kernels, self.biases)):
            x = x @ k + b
            if i < last:
                np.maximum(x, 0.0, out=x)
        x = x / np.sqrt(np.maximum((x * x).sum(axis=1, keepdims=True), 1e-12))
        return x[0] if single else x
