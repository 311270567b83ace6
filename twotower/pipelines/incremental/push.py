"""Fresh user ID embeddings into the Feast online store, newest wins, read back to confirm.

Writes go through the ``user_id_embedding_push`` PushSource (``FeatureStore.push``) into the
generation's embedding slot. Before writing, the stored rows are read and a row is written
only if it is *newer* than the stored one (DESIGN invariant 7), where newer means:

1. a later generation (IDs are sequential: ``g00002-...`` > ``g00001-...``): a push of an
   older generation never replaces a row of a newer one sharing the slot; then
2. within one generation, a later ``event_timestamp`` (the newest event the embedding includes)
   *in whole seconds*: Feast's SQLite store keeps event timestamps as epoch seconds (Redis keeps
   nanoseconds), and one rule must decide the same way on both. The chain makes every changed
   embedding's stamp fall in a later second than the user's previous one (chain.py), so a
   legitimate update is never a tie; a tie or an earlier second is an older write and is skipped.

Why here and not in Feast: Feast's SQLite store overwrites whatever the timestamps; its Redis
store skips a row whose ``event_timestamp`` is not later than the stored one, but knows nothing
of generations and reads-then-writes without a transaction. One rule, applied by the only writer
of pushes (``twotower incremental`` holds a lock), gives the same result on both stores.

So the Redis store runs with Feast's ``skip_dedup`` on (set where the effective
feature_store.yaml is rendered, ``twotower.feature_store.render_yaml``): the rule above has
already decided, and Feast's timestamp-only check would wrongly refuse a newer generation's
row whose event time is older than a stale row of an earlier generation left in the slot.

``read`` goes through the online store's ``online_read`` (as serving/online.py does, one call
for a batch of keys) because it returns each row's event timestamp, which the SDK's response
does not carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from twotower import feature_store
from twotower.adapters.feast_store import online_store_of
from twotower.core.timeutil import US_PER_SECOND, datetime_us
from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.features import FeatureSpec
from twotower.core.workspace import Workspace

NONE = np.iinfo(np.int64).min  # "no stored row" as an event time
SECOND = US_PER_SECOND


def newer(generation: str, stamps_us: np.ndarray, stored_generation: list, stored_us: np.ndarray) -> np.ndarray:
    """Which pushed rows beat the stored ones: later generation first, then later event time."""
    stamps_us = np.asarray(stamps_us, dtype=np.int64)
    out = np.empty(len(stamps_us), dtype=bool)
    for i, (g, t) in enumerate(zip(stored_generation, np.asarray(stored_us, dtype=np.int64))):
        if g is None or t == NONE:
            out[i] = True
        elif g != generation:
            out[i] = generation > g
        else:
            out[i] = stamps_us[i] // SECOND > t // SECOND
    return out


def landed(generation: str, stamps_us: np.ndarray, stored_generation: list, stored_us: np.ndarray) -> np.ndarray:
    """Rows whose stored version is at least as new as the pushed one (the push is visible)."""
    return ~newer(generation, stamps_us, stored_generation, stored_us)


@dataclass
class PushOutcome:
    pushed: np.ndarray  # user IDs written
    skipped: np.ndarray  # user IDs whose stored row was newer (or equal)
    seconds: float = 0.0


class OnlineEmbeddings:
    """The user ID embedding view (``features.embedding_view``) of one workspace's online store
    (SQLite or Redis), written through its PushSource; users are keyed as the spec declares."""

    def __init__(self, settings: Settings, ws: Workspace, store=None, spec: FeatureSpec | None = None):
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._EntityKey, self._Value = EntityKey, Value
        self.spec = spec or feature_store.applied_spec(ws)
        self.store = store if store is not None else feature_store.store(settings, ws)
        self.view = self.store.get_feature_view(self.spec.embedding_view)
        if self.view.stream_source is None:
            raise UserError(f"feature view {self.view.name!r} has no PushSource: the incremental update pushes through it")
        self.push_source = self.view.stream_source.name
        self.join_keys = list(self.view.join_keys)
        self.user_key = self.spec.user.join_key
        self.online = online_store_of(self.store)
        self.config = self.store.config

    def ids(self, user_ids) -> np.ndarray:
        """User IDs as the entity types them (int64, or str objects)."""
        if self.spec.user.id_type == "int":
            return np.asarray(user_ids, dtype=np.int64)
        return np.asarray([str(u) for u in np.asarray(user_ids).tolist()], dtype=object)

    def _keys(self, user_ids: np.ndarray, slot: int) -> list:
        slot_value = self._Value(int64_val=int(slot))
        string = self.spec.user.id_type == "string"
        return [
            self._EntityKey(
                join_keys=self.join_keys,
                entity_values=[(self._Value(string_val=u) if string else self._Value(int64_val=int(u)))
                               if k == self.user_key else slot_value for k in self.join_keys],
            )  # fmt: skip
            for u in user_ids
        ]

    def read(self, user_ids, slot: int, embeddings: bool = False) -> pd.DataFrame:
        """Stored rows: ``user_id, generation (None if absent), event_us (NONE if absent)[, embedding]``."""
        ids = self.ids(user_ids)
        features = ["generation", "embedding"] if embeddings else ["generation"]
        rows = self.online.online_read(self.config, self.view, self._keys(ids, slot), features)
        gens, stamps, vectors = [], np.full(len(ids), NONE, dtype=np.int64), []
        for i, (ts, values) in enumerate(rows):
            g = values.get("generation") if values else None
            gens.append(g.string_val if g is not None and g.HasField("string_val") else None)
            if ts is not None and gens[-1] is not None:
                stamps[i] = datetime_us(ts)
            if embeddings:
                e = values.get("embedding") if values else None
                vectors.append(np.asarray(e.float_list_val.val, np.float32) if e is not None and e.HasField("float_list_val") else None)
        out = pd.DataFrame({"user_id": ids, "generation": gens, "event_us": stamps})
        if embeddings:
            out["embedding"] = vectors
        return out

    def push(self, user_ids, embeddings, stamps_us, generation: str, slot: int) -> PushOutcome:
        """Write the rows that are newer than the stored ones (one push for the batch)."""
        import time

        from feast.data_source import PushMode

        started = time.perf_counter()
        ids = self.ids(user_ids)
        stamps_us = np.asarray(stamps_us, dtype=np.int64)
        stored = self.read(ids, slot)
        keep = newer(generation, stamps_us, stored["generation"].tolist(), stored["event_us"].to_numpy())
        if keep.any():
            n = int(keep.sum())
            frame = pd.DataFrame({
                self.user_key: ids[keep],
                "embedding_slot": np.full(n, slot, dtype=np.int64),
                "embedding": [np.asarray(e, dtype=np.float32) for e, k in zip(embeddings, keep) if k],
                "generation": [generation] * n,
                "event_timestamp": pd.to_datetime(stamps_us[keep], unit="us", utc=True),
                "created_timestamp": pd.Timestamp.now(tz="UTC"),
            })  # fmt: skip
            self.store.push(self.push_source, frame, to=PushMode.ONLINE)
        return PushOutcome(ids[keep], ids[~keep], time.perf_counter() - started)


class OnlineHistory:
    """The users' recently clicked items (``features.history_view``), merged with the clicks
    since the last publish and pushed through the view's PushSource (``materialize.recent_clicks``:
    distinct, newest first; a replayed batch gives the same lists)."""

    def __init__(self, settings: Settings, store, spec: FeatureSpec):
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._EntityKey, self._Value = EntityKey, Value
        self.spec, self.store, self.length = spec, store, settings.features.history_len
        self.view = store.get_feature_view(spec.history_view)
        if self.view.stream_source is None:
            raise UserError(f"feature view {self.view.name!r} has no PushSource: the incremental update pushes through it")
        self.push_source = self.view.stream_source.name
        self.online, self.config = online_store_of(store), store.config

    def read(self, user_ids: list) -> list:
        """Each user's stored list (IDs as given), None where there is none."""
        string = self.spec.user.id_type == "string"
        keys = [self._EntityKey(join_keys=[self.spec.user.join_key],
                                entity_values=[self._Value(string_val=u) if string else self._Value(int64_val=int(u))])
                for u in user_ids]  # fmt: skip
        out = []
        for _ts, values in self.online.online_read(self.config, self.view, keys, ["items"]):
            proto = values.get("items") if values else None
            kind = proto.WhichOneof("val") if proto is not None else None
            out.append(list(getattr(proto, kind).val) if kind and kind.endswith("_list_val") else None)
        return out

    def push(self, clicks: pd.DataFrame) -> int:
        """``user_id, item_id, event_us`` clicks merged into the stored lists; users pushed."""
        from feast.data_source import PushMode

        from materialize.recent_clicks import merge

        if clicks.empty:
            return 0
        ordered = clicks.sort_values("event_us", kind="stable")
        by_user = ordered.groupby("user_id", sort=True)
        users = list(by_user.groups)
        new = by_user["item_id"].agg(list)
        stored = self.read(users)
        frame = pd.DataFrame({
            self.spec.user.join_key: users,
            "items": [merge(current, new[u], self.length) for u, current in zip(users, stored)],
            "event_timestamp": pd.to_datetime(by_user["event_us"].max().to_numpy(), unit="us", utc=True),
            "created_timestamp": pd.Timestamp.now(tz="UTC"),
        })  # fmt: skip
        self.store.push(self.push_source, frame, to=PushMode.ONLINE)
        return len(users)
