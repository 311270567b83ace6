"""The incremental update past one machine: Redis Streams + Feast's Redis online store.

Each test starts its own redis-server on 127.0.0.1 (free port, no persistence) and switches a
copy of the shared world to it (feast apply, profiles and g1's embeddings materialized).
"""

from __future__ import annotations

import time
from datetime import datetime, time as dtime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from incremental_support import S, category_share, online_rows, redis_server, serving_g1
from serving_support import shared_world
from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.pipelines.incremental import run
from twotower.pipelines.incremental.push import OnlineEmbeddings
from twotower.stream import open_stream
from twotower.research.simulate.clicks import emit_user
from twotower.stream.emit import emit_day
from twotower.core.workspace import Workspace


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_world(tmp_path_factory)


@pytest.fixture
def port():
    with redis_server() as p:
        yield p


def on_redis(shared, target, port: int, stream: str = "events"):
    """A g1 world whose online store and event stream are the Redis server on ``port``."""
    from materialize.user_embeddings import write_online

    _, ws0, g1, g2 = serving_g1(shared, target)
    settings = load_settings(
        workspace=ws0.root, online_store={"type": "redis", "redis_port": port},
        stream={"type": "redis", "redis_port": port, "name": stream},
    )  # fmt: skip
    ws = Workspace(settings.workspace)
    feature_store.apply(settings, ws)
    last = gens.load(ws, g2).day
    end = datetime.combine(last, dtime(0), tzinfo=timezone.utc) + timedelta(days=1)
    # The copied registry says the profiles are materialized already (into SQLite): load them
    # into Redis over their whole history.
    feature_store.store(settings, ws).materialize(
        start_date=datetime(2000, 1, 1, tzinfo=timezone.utc), end_date=end, feature_views=["user_profile", "item_profile"]
    )
    write_online(settings, ws, g1)
    return settings, ws, g1


def test_clicks_on_redis_streams_reach_the_redis_store_and_the_next_request_newest_wins(shared, tmp_path, port):
    import redis
    from serving.retriever import Retriever

    settings, ws, g1 = on_redis(shared, tmp_path / "ws", port)
    manifest = gens.load(ws, g1)
    items = pd.read_parquet(ws.items_path)
    user = int(pd.read_parquet(gens.directory(ws, g1) / "user_id_embedding.parquet")["user_id"].iloc[7])
    before = online_rows(settings, ws, [user], manifest.embedding_slot).iloc[0]
    assert before.generation == g1
    hour = time.gmtime().tm_hour
    retriever = Retriever.open(settings, ws)
    shares = category_share(items, retriever.recall(user, 50, hour=hour).item_ids)
    sizes = items["category"].value_counts()
    category = min((int(c) for c in sizes.index if sizes[c] >= 15 and 0 < shares.get(c, 0) <= 0.1), key=lambda c: shares[c])
    emit_day(settings, ws, manifest.day + timedelta(days=1))
    clicks = emit_user(settings, ws, user, category, count=30, seed=3)

    summary = run(settings, ws, max_events=4000)
    after = online_rows(settings, ws, [user], manifest.embedding_slot).iloc[0]
    assert after.generation == g1 and not np.allclose(after.embedding, before.embedding)
    # Redis keeps the full timestamp: the stamp is exactly the newest click.
    assert after.event_us == int(pd.Timestamp(clicks.last_event).value // 1000)
    got = retriever.recall(user, 50, hour=hour)
    assert got.path == "embedding" and got.generation == g1
    assert category_share(items, got.item_ids).get(category, 0) >= shares[category]
    retriever.close()

    # The consumer group holds the committed position: the last entry, nothing pending.
    group = {g["name"].decode(): g for g in redis.Redis(port=port).xinfo_groups("events")}[settings.stream.group]
    assert group["last-delivered-id"].decode() == summary.position == open_stream(settings, ws).end()
    assert group["pending"] == 0 and summary.totals.pushed_users > 1

    # Out-of-order pushes keep the newest on Redis too (slot 1: g1's chain does not use it).
    g_later = "g99999-2099-01-01"  # a later generation sharing the slot
    online = OnlineEmbeddings(settings, ws)
    t = 1_800_000_000 * S
    users = np.array([1, 2, 3])
    new, old = np.ones((3, 32), np.float32), np.zeros((3, 32), np.float32)
    assert online.push(users, new, np.full(3, t + 5 * S), g1, 1).pushed.tolist() == [1, 2, 3]
    late = online.push(users, old, np.array([t, t + 5 * S + 1, t + 4 * S]), g1, 1)  # older / same second
    assert late.skipped.tolist() == [1, 2, 3]
    rows = online.read(users, 1, embeddings=True)
    assert (np.stack(rows.embedding) == 1).all() and rows.event_us.tolist() == [t + 5 * S] * 3
    # A newer generation's row replaces an older one even with an older event time (Feast's own
    # Redis check would refuse it) and is never replaced by the older generation's later push.
    assert online.push(users[:1], new * 2, np.array([t]), g_later, 1).pushed.tolist() == [1]
    assert online.read(users[:1], 1).generation.tolist() == [g_later]
    assert online.push(users[:1], old, np.array([t + 99 * S]), g1, 1).skipped.tolist() == [1]
    assert online.push(users[1:2], old + 3, np.array([t + 6 * S]), g1, 1).pushed.tolist() == [2]
