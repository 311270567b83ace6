"""Online features of the user tower: one read of the Feast online store per request batch.

The feature service of the user tower (``features.user_service``, default ``user_tower``) is
the contract: the views and feature names come from it and the generation's feature spec, so
serving never copies a feature list. Each view is keyed by its own join keys: profile views by
the user entity's join key, the embedding view by ``(join key, embedding_slot)`` - the slot is
the loaded generation's, so a request reads only the embeddings of the generation it serves.
Values are encoded exactly as in training (``twotower.core.encode.encode``).

Why two readers. ``FeatureStore.get_online_features`` (``SdkReader``) re-resolves the feature
service, builds response protos and converts them to Python on every call: measured on the
test world, one user costs p50 0.26 ms / p99 4.5 ms, a batch of 100 users 11 ms - the p99
alone is twice the whole 2 ms recall budget. ``DirectReader`` resolves everything once and
calls the online store's own ``online_read`` (the provider API, the same call Feast's SDK
makes underneath, for SQLite and Redis alike): p50 0.05 ms / p99 0.1 ms for one user. This
module is the ONE place that reaches below the SDK; ``serving.online_read = "sdk"`` switches
back (the benchmark measures both).

When the store cannot answer, both readers raise ``OnlineStoreError`` (the retriever then serves
the generation's popular items, marked degraded: serving/online_health.py), and
``bound_waits`` makes that happen within ``online_store.timeout_s``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from twotower.adapters.feast_store import online_store_of, redis_client, sqlite_connection
from twotower.core.errors import UserError
from twotower.core.encode import encode, id_keys
from twotower.core.features import FeatureSpec

EMBEDDING, GENERATION = "embedding", "generation"  # the fields of features.embedding_view
HISTORY = "items"  # the field of features.history_view: the user's recently clicked items
logger = logging.getLogger(__name__)
SLOT = "embedding_slot"


class OnlineStoreError(RuntimeError):
    """The online store did not answer (unreachable, timed out, locked): serving degrades."""


def _store_errors() -> tuple[type[BaseException], ...]:
    """What the stores raise when they cannot answer (not our own bugs: those still raise)."""
    import sqlite3

    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    try:
        from redis.exceptions import RedisError

        errors += (RedisError,)
    except ImportError:  # pragma: no cover - feast[redis] is a dependency
        pass
    return errors


def _named(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def bound_waits(store, timeout_s: float) -> None:
    """Make a dead or hung online store fail fast for this process's reads.

    Redis: the socket timeouts come from the rendered connection string
    (``online_store.timeout_s``/``connect_timeout_s``); here redis-py's retries are turned off -
    by default it retries 3 times with up to 14 s of backoff, which would hold a request that
    long. A failed read is answered degraded; the next request is the retry. SQLite: Python
    waits 5 s for a lock by default; serving waits ``timeout_s``.
    """
    config = store.config
    online = online_store_of(store)
    if config.online_store.type == "redis":
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis_client(online, config)  # lazy: does not connect
        if hasattr(client, "set_retry"):
            client.set_retry(Retry(NoBackoff(), 0))
    elif config.online_store.type == "sqlite":
        try:
            sqlite_connection(online, config).execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        except _store_errors():
            pass  # the first read will fail the same way and be answered degraded


@dataclass
class OnlineRows:
    """The tower's online inputs for a batch of users (row i = user_ids[i])."""

    user_ids: list  # the IDs as asked for
    keys: np.ndarray  # int64 ID keys (encode.id_keys): the OOV row of a user without an embedding
    has_profile: np.ndarray  # bool [n]: some profile view has a row for the user
    features: dict[str, np.ndarray]  # declared user feature -> encoded values [n] / [n, width]
    embeddings: list  # float32 [d] or None per user
    generations: list  # str or None per user
    histories: list  # recently clicked item IDs (newest first) or None per user (features.history_view)

    @classmethod
    def missing(cls, user_ids: Sequence, spec: FeatureSpec) -> "OnlineRows":
        """No online row for anyone (the store could not be read): every user takes ``popular``."""
        n = len(user_ids)
        cols = {name: [None] * n for name in (*(f.name for f in spec.user.features), EMBEDDING, GENERATION)}
        return cls.from_columns(user_ids, cols, spec)

    @classmethod
    def from_columns(cls, user_ids: Sequence, cols: dict[str, list], spec: FeatureSpec) -> "OnlineRows":
        """Columns of Python values (None = missing) -> encoded arrays, as in training."""
        user = spec.user
        cols = {**{f.name: [None] * len(user_ids) for f in user.features}, **cols}  # a field gone from the service: missing
        present = [[v is not None for v in cols[f.name]] for f in user.features]
        # An ID-only tower (no profile view) has no profile to miss: every user goes through it.
        has_profile = np.any(np.array(present, dtype=bool), axis=0) if present else np.ones(len(user_ids), bool)
        embeddings = [None if v is None else np.asarray(v, dtype=np.float32) for v in cols[EMBEDDING]]
        return cls(
            user_ids=list(user_ids), keys=id_keys(np.asarray(list(user_ids)), user.id_type, "user_id"),
            has_profile=has_profile, features={f.name: encode(f, cols[f.name], "online store") for f in user.features},
            embeddings=embeddings, generations=list(cols[GENERATION]),
            histories=list(cols.get(HISTORY) or [None] * len(user_ids)) if spec.history_view else [None] * len(user_ids),
        )  # fmt: skip


def _value(proto) -> Any:
    """A Feast ValueProto -> Python (lists as lists, missing as None)."""
    kind = proto.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    value = getattr(proto, kind)
    return value.val if kind.endswith("_list_val") else value


@dataclass
class _View:
    view: Any  # feast FeatureView
    features: list[str]
    join_keys: list[str]


def resolve(store, spec: FeatureSpec) -> list[_View]:
    """The user service's views with their features; checks the tower's inputs are there."""
    name = spec.user.service
    try:
        service = store.get_feature_service(name)
    except Exception as exc:  # Feast raises its own FeatureServiceNotFoundException
        raise UserError(f"features.user_service: Feast has no feature service {name!r} ({exc})") from None
    known = (spec.user.join_key, SLOT)
    views, found = [], set()
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        join_keys = list(view.join_keys)
        unknown = [k for k in join_keys if k not in known]
        if unknown:
            raise UserError(f"feature service {name!r}: view {view.name!r} is keyed by {unknown}; serving knows {list(known)}")
        features = [f.name for f in projection.features]
        views.append(_View(view, features, join_keys))
        found.update(features)
    missing = [f for f in (EMBEDDING, GENERATION) if f not in found]
    if missing:
        raise UserError(f"feature service {name!r} lacks the user tower's input(s) {missing}")
    gone = [f.name for f in spec.user.features if f.name not in found]
    if gone:  # the repo moved on (a fresh model is being trained): the generation reads them as missing
        logger.warning(f"feature service {name!r} no longer has {gone}: the served generation takes them as missing")
    return views


class DirectReader:
    """Reads through the online store's ``online_read`` (see the module docstring for why)."""

    def __init__(self, store):
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._EntityKey, self._Value = EntityKey, Value
        self.store = store
        self.config = store.config
        self.online_store = online_store_of(store)
        self._views: dict[FeatureSpec, list[_View]] = {}
        self.errors = _store_errors()

    def views(self, spec: FeatureSpec) -> list[_View]:
        if spec not in self._views:  # once per generation's spec (a swap may bring another)
            self._views[spec] = resolve(self.store, spec)
        return self._views[spec]

    def read(self, user_ids: Sequence, slot: int, spec: FeatureSpec, history: bool = False) -> OnlineRows:
        """The users' online rows; ``OnlineStoreError`` if the store cannot answer. ``history``:
        also their recently clicked items (one more read, only when a request excludes them)."""
        views = [v for v in self.views(spec) if history or v.view.name != spec.history_view]
        try:
            return self._read(user_ids, slot, spec, views)
        except self.errors as exc:
            raise OnlineStoreError(_named(exc)) from exc

    def _read(self, user_ids: Sequence, slot: int, spec: FeatureSpec, views: list[_View]) -> OnlineRows:
        n = len(user_ids)
        cols: dict[str, list] = {}
        user_key = spec.user.join_key
        if spec.user.id_type == "string":
            uid_values = [self._Value(string_val=str(u)) for u in user_ids]
        else:
            uid_values = [self._Value(int64_val=int(u)) for u in user_ids]
        slot_value = self._Value(int64_val=int(slot))
        for v in views:
            keys = [
                self._EntityKey(
                    join_keys=v.join_keys,
                    entity_values=[u if k == user_key else slot_value for k in v.join_keys],
                )
                for u in uid_values
            ]
            # A copy: Feast's Redis store appends its timestamp field to the list it is given, so
            # passing ours grew it by one entry per request (slower and slower reads).
            rows = self.online_store.online_read(self.config, v.view, keys, list(v.features))
            for name in v.features:
                cols[name] = [None] * n
            for i, (_ts, values) in enumerate(rows):
                if values:
                    for name in v.features:
                        proto = values.get(name)
                        if proto is not None:
                            cols[name][i] = _value(proto)
        return OnlineRows.from_columns(user_ids, cols, spec)


class SdkReader:
    """Reads through ``FeatureStore.get_online_features`` (the plain SDK path)."""

    def __init__(self, store):
        self.store = store
        self._checked: set[FeatureSpec] = set()
        self.errors = _store_errors()

    def read(self, user_ids: Sequence, slot: int, spec: FeatureSpec, history: bool = False) -> OnlineRows:
        if spec not in self._checked:
            resolve(self.store, spec)  # same checks as DirectReader
            self._checked.add(spec)
        key = spec.user.join_key
        rows = [{key: u, SLOT: int(slot)} for u in user_ids]
        try:
            service = self.store.get_feature_service(spec.user.service)
            cols = self.store.get_online_features(features=service, entity_rows=rows).to_dict()
        except self.errors as exc:
            raise OnlineStoreError(_named(exc)) from exc
        return OnlineRows.from_columns(user_ids, cols, spec)


def reader(store, kind: str = "direct"):
    return (DirectReader if kind == "direct" else SdkReader)(store)
