"""The request path as pure functions: online rows -> which path each user takes -> top-k.

Paths (the response says which one served a user):

* ``embedding``   - the user's own ID embedding of the loaded generation + profile.
* ``oov_profile`` - no embedding of *this* generation (a new user, or a row stamped by another
  generation): the tower's OOV row for the ID + the profile (DESIGN invariant 8).
* ``popular``     - no profile either: the generation's most clicked items (decayed over
  ``full_update.popular_decay_days``). With a user tower that takes no profile at all (an
  ID-only tower) that is also the path of a user without an embedding, unless
  ``serving.cold_without_profile`` says ``oov_profile``: the OOV row alone is one vector for
  every such user, and what is popular now answers them better (MovieTweetings: cold users'
  recall@100 0.264 through the OOV row, see bench/bench_real_data.py). Also every user's
  path while the online store cannot be read; the result's ``degraded`` then says why
  (serving/online_health.py).

An embedding stamped by another generation is never fed to this generation's tower (it was
trained against other dense weights), which is what keeps a request on one generation even
if the online store holds rows of several.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from serving.online import OnlineRows

EMBEDDING, OOV_PROFILE, POPULAR = "embedding", "oov_profile", "popular"
PATHS = (EMBEDDING, OOV_PROFILE, POPULAR)


@dataclass(frozen=True)
class Recall:
    """One user's result of this channel."""

    user_id: int | str  # as asked for
    item_ids: np.ndarray  # the items' IDs as given (int64 or str), best first
    scores: np.ndarray  # float32: cosine (embedding/oov_profile) or click share (popular)
    generation: str
    channel: str
    path: str
    degraded: str | None = None  # why the online store was not used (None: it was)

    def items(self) -> list[tuple[int, float]]:
        return list(zip(self.item_ids.tolist(), self.scores.tolist()))

    def to_json(self) -> str:
        """``as_dict`` as JSON, ~3x faster than ``json.dumps`` of it (the per-request hot spot
        after the index query at k=100). Scores keep 7 significant digits (float32 precision)."""
        ids = self.item_ids.tolist()
        if self.item_ids.dtype.kind in "iu":
            items = ",".join(['{"item_id":%d,"score":%.7g}' % p for p in zip(ids, self.scores.tolist())])
        else:
            items = ",".join(['{"item_id":%s,"score":%.7g}' % (json.dumps(i), v) for i, v in zip(ids, self.scores.tolist())])
        degraded = "" if self.degraded is None else ',"degraded":' + json.dumps(self.degraded)
        return '{"user_id":%s,"generation":%s,"channel":%s,"path":"%s"%s,"items":[%s]}' % (
            json.dumps(self.user_id), json.dumps(self.generation), json.dumps(self.channel), self.path, degraded, items
        )

    def as_dict(self) -> dict:
        out = {
            "user_id": self.user_id, "generation": self.generation, "channel": self.channel, "path": self.path,
        }  # fmt: skip
        if self.degraded is not None:
            out["degraded"] = self.degraded
        out["items"] = [{"item_id": i, "score": s} for i, s in self.items()]
        return out


@dataclass
class TowerInputs:
    """Users that go through the tower (rows of ``OnlineRows`` in ``rows``) and their ID embeddings."""

    paths: list[str]  # per user of the batch
    rows: np.ndarray  # int indices of users with a profile
    id_embeddings: np.ndarray  # float32 [len(rows), d]
    mismatched: int  # embeddings present but stamped by another generation


def plan(online: OnlineRows, generation: str, tower, cold_without_profile: str = "popular") -> TowerInputs:
    """Decide each user's path and gather the ID embedding the tower will take."""
    d = tower.oov_rows.shape[1]
    cold_popular = cold_without_profile == POPULAR and not tower.spec.user.features  # an ID-only tower
    paths: list[str] = []
    rows: list[int] = []
    embs: list[np.ndarray | None] = []
    mismatched = 0
    for i, has_profile in enumerate(online.has_profile.tolist()):
        emb, stamp = online.embeddings[i], online.generations[i]
        if emb is not None and stamp != generation:
            mismatched += 1
        if not has_profile:
            paths.append(POPULAR)
            continue
        own = emb is not None and stamp == generation and emb.shape == (d,)
        if not own and cold_popular:
            paths.append(POPULAR)
            continue
        rows.append(i)
        paths.append(EMBEDDING if own else OOV_PROFILE)
        embs.append(emb if own else None)
    out = np.zeros((len(rows), d), dtype=np.float32)
    oov = [j for j, e in enumerate(embs) if e is None]
    for j, e in enumerate(embs):
        if e is not None:
            out[j] = e
    if oov:
        out[oov] = tower.oov_embedding(online.keys[np.asarray(rows)[oov]])
    return TowerInputs(paths, np.asarray(rows, dtype=np.int64), out, mismatched)


def unseen(ids: np.ndarray, scores: np.ndarray, seen: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` results that are not in ``seen`` (the user's recently clicked item IDs)."""
    keep = ~np.isin(ids, np.asarray(seen, dtype=ids.dtype))
    return ids[keep][:k], scores[keep][:k]


def user_vectors(online: OnlineRows, inputs: TowerInputs, tower, context: dict[str, int]) -> np.ndarray:
    """One batched tower forward for every user with a profile: unit vectors ``a``.

    ``context``: the request's context values (``hour``, ``weekday``); the tower takes those its
    generation was trained with."""
    r = inputs.rows
    if len(r) == 0:
        return np.zeros((0, tower.output_dim), dtype=np.float32)
    features = {name: values[r] for name, values in online.features.items()}
    return tower(inputs.id_embeddings, features, {c: np.full(len(r), context[c], dtype=np.int64) for c in tower.spec.context})
