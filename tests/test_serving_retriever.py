"""The retriever in-process: readers agree, a generation is released only when idle, the
watcher swaps on a flip and keeps serving when a published generation cannot be loaded."""

from __future__ import annotations

from dataclasses import replace

import json

import numpy as np
import pytest

from serving import generation as loaded
from serving.online import reader as online_reader
from serving.recall import EMBEDDING, POPULAR
from serving.retriever import Retriever
from serving.watcher import GenerationWatcher
from serving_support import copy_world, shared_world
from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.errors import UserError


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_world(tmp_path_factory)


@pytest.fixture
def private(world, tmp_path):
    settings, ws = copy_world(world[1], tmp_path / "ws")
    return settings, ws, world[2]


def users_of(ws, generation, n):
    import pandas as pd

    table = pd.read_parquet(gens.directory(ws, generation) / "user_id_embedding.parquet", columns=["user_id"])
    return table["user_id"].head(n).astype(int).tolist()


def test_direct_and_sdk_readers_agree(world):
    settings, ws, (_g1, g2) = world
    store = feature_store.store(settings, ws)
    users = users_of(ws, g2, 20) + [10**12]
    slot = gens.load(ws, g2).embedding_slot
    spec = feature_store.applied_spec(ws)
    direct = online_reader(store, "direct").read(users, slot, spec)
    sdk = online_reader(store, "sdk").read(users, slot, spec)
    assert direct.has_profile.tolist() == sdk.has_profile.tolist() == [True] * 20 + [False]
    assert direct.generations == sdk.generations == [g2] * 20 + [None]
    assert set(direct.features) == {f.name for f in spec.user.features}
    for name in direct.features:
        assert np.array_equal(direct.features[name], sdk.features[name]), name
    assert direct.features["interest_tags"].shape == (21, spec.user.feature("interest_tags").max_len)
    assert all(np.array_equal(a, b) for a, b in zip(direct.embeddings[:20], sdk.embeddings[:20]))


def test_unknown_feature_service_is_named(world):
    settings, ws, (_g1, g2) = world
    spec = feature_store.applied_spec(ws)
    renamed = replace(spec, user=replace(spec.user, service="no_such_service"))
    with pytest.raises(UserError, match="no_such_service"):
        online_reader(feature_store.store(settings, ws)).read([1], gens.load(ws, g2).embedding_slot, renamed)


def test_batch_is_one_tower_forward_and_matches_single_requests(world):
    settings, ws, (_g1, g2) = world
    retriever = Retriever.open(settings, ws)
    users = users_of(ws, g2, 8) + [10**12]
    batch = retriever.recall_batch(users, 12, hour=9)
    assert batch.generation == g2 and [r.path for r in batch.recalls] == [EMBEDDING] * 8 + [POPULAR]
    for r in batch.recalls[:8]:
        single = retriever.recall(r.user_id, 12, hour=9)
        assert single.item_ids.tolist() == r.item_ids.tolist()
        assert np.allclose(single.scores, r.scores, atol=1e-5)
    assert set(batch.timings) == {"online", "tower", "index"}
    with pytest.raises(UserError, match="serving.max_k"):
        retriever.recall(users[0], settings.serving.max_k + 1)
    retriever.close()


def test_old_generation_is_released_only_after_in_flight_requests(private):
    settings, ws, (g1, g2) = private
    retriever = Retriever.open(settings, ws)
    user = users_of(ws, g2, 1)[0]
    new = loaded.load(ws, gens.load(ws, g1))
    with retriever.lease() as held:  # a request in flight on g2
        old = retriever.swap(new)
        assert old is held and not old.closed
        assert retriever.current is new
        # The in-flight request still completes on its own generation.
        assert retriever._recall(held, [user], 5, {"hour": 3, "weekday": 0}).generation == g2
    assert old.closed and old.leases == 0
    assert retriever.recall(user, 5).generation == g1
    retriever.close()


def test_watcher_swaps_on_flip_and_survives_a_broken_generation(private):
    settings, ws, (g1, g2) = private
    retriever = Retriever.open(settings, ws)
    swaps, errors = [], []
    watcher = GenerationWatcher(retriever, 0.05, on_swap=lambda a, b: swaps.append((a, b)), on_error=errors.append)
    assert watcher.check() is None  # nothing changed
    gens.flip(ws, g1)
    assert watcher.check() == (g2, g1) and retriever.current.id == g1
    assert watcher.check() is None

    # Corrupt g2's index, then publish it again: the load fails, g1 keeps serving.
    manifest_path = gens.directory(ws, g2) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["checksums"]["index"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    gens.flip(ws, g2)
    assert watcher.check() is None and len(errors) == 1 and "checksum" in str(errors[0])
    assert retriever.current.id == g1 and retriever.recall(users_of(ws, g1, 1)[0], 3).generation == g1
    assert swaps == [(g2, g1)]
    retriever.close()


def test_redis_online_store_serves_the_same_recall(world, tmp_path):
    """The same reader code over Feast's Redis online store (a real redis-server)."""
    from datetime import datetime, time as dtime, timedelta, timezone

    from bench.local_servers import redis_server
    from materialize.user_embeddings import write_online
    from twotower.core.config import load_settings

    settings0, ws0, (_g1, g2) = world
    _, ws = copy_world(ws0, tmp_path / "ws")
    with redis_server() as (port, _proc):
        settings = load_settings(workspace=ws.root, online_store={"type": "redis", "redis_port": port})
        feature_store.apply(settings, ws)
        manifest = gens.load(ws, g2)
        end = datetime.combine(manifest.day, dtime(0), tzinfo=timezone.utc) + timedelta(days=1)
        # The copied registry remembers what was materialized into SQLite: load explicitly.
        feature_store.store(settings, ws).materialize(
            start_date=datetime(2000, 1, 1, tzinfo=timezone.utc), end_date=end, feature_views=["user_profile"]
        )
        write_online(settings, ws, g2)

        users = users_of(ws, g2, 6) + [10**12]
        on_redis = Retriever.open(settings, ws)
        on_sqlite = Retriever.open(settings0, ws0)
        got = on_redis.recall_batch(users, 10, hour=5)
        want = on_sqlite.recall_batch(users, 10, hour=5)
        assert [r.path for r in got.recalls] == [r.path for r in want.recalls] == [EMBEDDING] * 6 + [POPULAR]
        for a, b in zip(got.recalls, want.recalls):
            assert a.generation == b.generation == g2 and a.item_ids.tolist() == b.item_ids.tolist()
        sdk = online_reader(feature_store.store(settings, ws), "sdk")
        assert sdk.read(users, manifest.embedding_slot, feature_store.applied_spec(ws)).generations == [g2] * 6 + [None]
        on_redis.close()
        on_sqlite.close()


def test_fast_json_encoding_equals_the_dict(world):
    settings, ws, (_g1, g2) = world
    retriever = Retriever.open(settings, ws)
    for r in retriever.recall_batch(users_of(ws, g2, 3) + [10**12], 20, hour=1).recalls:
        fast, slow = json.loads(r.to_json()), r.as_dict()
        assert {k: v for k, v in fast.items() if k != "items"} == {k: v for k, v in slow.items() if k != "items"}
        assert [i["item_id"] for i in fast["items"]] == [i["item_id"] for i in slow["items"]]
        assert np.allclose([i["score"] for i in fast["items"]], [i["score"] for i in slow["items"]], rtol=1e-6, atol=1e-7)
    retriever.close()


def test_the_served_vector_is_the_tower_on_feast_online_features(world):
    """Train/serve parity, online: the user vector a request is answered with equals the
    generation's tower applied to ``get_online_features`` of the same feature service."""
    from serving.recall import plan, user_vectors
    from twotower.core.encode import encode

    settings, ws, (_g1, g2) = world
    retriever = Retriever.open(settings, ws)
    try:
        gen = retriever.current
        spec = gen.tower.spec
        users = users_of(ws, g2, 12)
        store = feature_store.store(settings, ws)
        sdk = store.get_online_features(
            features=store.get_feature_service(spec.user.service),
            entity_rows=[{spec.user.join_key: u, "embedding_slot": gen.slot} for u in users],
        ).to_dict()
        context = {"hour": np.full(len(users), 5)}
        want = gen.tower(np.stack(sdk["embedding"]).astype(np.float32),
                         {f.name: encode(f, sdk[f.name]) for f in spec.user.features}, context)  # fmt: skip
        rows = retriever.reader.read(users, gen.slot, spec)
        served = user_vectors(rows, plan(rows, gen.id, gen.tower), gen.tower, {"hour": 5, "weekday": 0})
        np.testing.assert_allclose(served, want, atol=1e-6)
        result = retriever.recall_batch(users, 10, hour=5)
        for r, vector in zip(result.recalls, want):
            assert r.item_ids.tolist() == gen.index.query(vector, 10)[0].tolist()
    finally:
        retriever.close()
