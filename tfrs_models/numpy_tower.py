"""The dense user tower in numpy: the serving fast path.

Kept free of TensorFlow on purpose: the request path (serving/) imports only this module, so
a server starts in a second and holds no TF runtime. ``tfrs_models.export`` writes the weights
(``user_tower.npz``) and tests that this forward pass equals the SavedModel's within 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUMPY_WEIGHTS = "user_tower.npz"
# Order of the profile inputs of the user tower (tfrs_models.towers imports it from here).
USER_FEATURES = ("age_bucket", "gender", "city_tier", "interest_tags", "hour")


class NumpyUserTower:
    """The dense user tower in numpy: the serving path, equal to TF within float rounding."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.tables = {name: weights[f"table/{name}"].astype(np.float32) for name in USER_FEATURES}
        n = len([k for k in weights if k.startswith("dense/") and k.endswith("/kernel")])
        self.kernels = [weights[f"dense/{i}/kernel"].astype(np.float32) for i in range(n)]
        self.biases = [weights[f"dense/{i}/bias"].astype(np.float32) for i in range(n)]
        self.oov_rows = weights["oov_rows"].astype(np.float32)

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

    def oov_embedding(self, user_ids) -> np.ndarray:
        """ID embedding of users with no row of their own (same hash as the model's)."""
        return self.oov_rows[np.mod(np.asarray(user_ids, dtype=np.int64), len(self.oov_rows))]

    def __call__(self, id_embedding, age_bucket, gender, city_tier, interest_tags, hour) -> np.ndarray:
        """One user (1-D embedding, scalar features) or a batch (2-D / 1-D arrays)."""
        emb = np.asarray(id_embedding, dtype=np.float32)
        single = emb.ndim == 1
        emb = np.atleast_2d(emb)
        tags = np.atleast_2d(np.asarray(interest_tags, dtype=np.int64))
        parts = [emb]
        for name, value in zip(("age_bucket", "gender", "city_tier"), (age_bucket, gender, city_tier)):
            table = self.tables[name]
            parts.append(table[np.mod(np.atleast_1d(np.asarray(value, np.int64)), len(table))])
        t = self.tables["interest_tags"]
        mask = (tags > 0).astype(np.float32)[..., None]
        pooled = (t[np.mod(tags, len(t))] * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
        parts.append(pooled)
        h = self.tables["hour"]
        parts.append(h[np.mod(np.atleast_1d(np.asarray(hour, np.int64)), len(h))])
        x = np.concatenate(parts, axis=1)
        last = len(self.kernels) - 1
        for i, (k, b) in enumerate(zip(self.kernels, self.biases)):
            x = x @ k + b
            if i < last:
                np.maximum(x, 0.0, out=x)
        x = x / np.sqrt(np.maximum((x * x).sum(axis=1, keepdims=True), 1e-12))
        return x[0] if single else x
