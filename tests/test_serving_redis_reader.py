"""Serving's direct online reader on Feast's Redis store reads what the SQLite store holds, and
keeps doing so at the same cost: Feast's Redis ``online_read`` appends its timestamp field to
the feature list it is given, and the reader used to pass its own list, which then grew by one
entry per request (found by bench/bench_online_store.py: a 64-user read took 43 ms)."""

from __future__ import annotations

from datetime import datetime, time as dtime, timedelta, timezone

import numpy as np
import pandas as pd

from incremental_support import redis_server
from serving_support import copy_world, shared_world
from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.core.workspace import Workspace


def test_direct_reader_on_redis_equals_sqlite_and_does_not_grow(tmp_path_factory):
    from materialize.user_embeddings import write_online
    from serving.online import reader
    from serving.retriever import Retriever

    _, ws0, (_, g2) = shared_world(tmp_path_factory)
    sqlite_settings, sqlite_ws = copy_world(ws0, tmp_path_factory.mktemp("reader") / "sqlite")
    _, copy = copy_world(ws0, tmp_path_factory.mktemp("reader") / "redis")
    users = pd.read_parquet(gens.directory(ws0, g2) / "user_id_embedding.parquet")["user_id"].head(20).tolist() + [987_654_321]
    slot = gens.load(ws0, g2).embedding_slot
    with redis_server() as port:
        settings = load_settings(workspace=copy.root, online_store={"type": "redis", "redis_port": port})
        ws = Workspace(settings.workspace)
        feature_store.apply(settings, ws)
        end = datetime.combine(gens.load(ws, g2).day, dtime(0), tzinfo=timezone.utc) + timedelta(days=1)
        feature_store.store(settings, ws).materialize(
            start_date=datetime(2000, 1, 1, tzinfo=timezone.utc), end_date=end, feature_views=["user_profile"]
        )
        write_online(settings, ws, g2)

        def direct(s, w):
            return reader(feature_store.store(s, w))

        on_redis, on_sqlite = direct(settings, ws), direct(sqlite_settings, sqlite_ws)
        spec = feature_store.applied_spec(ws)
        sizes = [len(v.features) for v in on_redis.views(spec)]
        for _ in range(30):
            got = on_redis.read(users, slot, spec)
        assert [len(v.features) for v in on_redis.views(spec)] == sizes
        want = on_sqlite.read(users, slot, spec)
        assert got.has_profile.tolist() == want.has_profile.tolist() and got.has_profile[:-1].all()
        for name in want.features:
            assert np.array_equal(got.features[name], want.features[name]), name
        assert got.generations == want.generations and got.generations[0] == g2
        assert all(np.array_equal(a, b) for a, b in zip(got.embeddings[:-1], want.embeddings[:-1]))
        r_redis, r_sqlite = Retriever.open(settings, ws), Retriever.open(sqlite_settings, sqlite_ws)
        try:
            for user in users[:5]:
                a, b = r_redis.recall(user, 10, hour=12), r_sqlite.recall(user, 10, hour=12)
                assert a.path == b.path == "embedding" and a.item_ids.tolist() == b.item_ids.tolist()
        finally:
            r_redis.close()
            r_sqlite.close()
