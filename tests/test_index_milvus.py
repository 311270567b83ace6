"""``index.backend = milvus`` on a real Milvus Lite server (``milvus-lite server`` on loopback,
reached by URI like any Milvus): two full updates, each generation its own collection, the
serving alias following CURRENT, collections beyond ``index.milvus_keep`` dropped, a request
during an alias flip, an outage and a rollback."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from bench.local_servers import milvus_lite_server
from serving_support import twotower_in_process
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.core.workspace import Workspace
from twotower.index import milvus_index
from twotower.index.item_index import exact_topk
from twotower.index.sharded_index import load_vectors

pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone

WORLD = dict(users=300, items=200, days=2, seed=11)


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    """The server, in a holder: the outage test stops it and starts another on the same data."""
    data = tmp_path_factory.mktemp("milvus") / "data"
    holder = {"data": data, "stack": []}
    server = milvus_lite_server(data)
    holder["uri"], holder["proc"] = server.__enter__()
    holder["stack"].append(server)
    yield holder
    for server in reversed(holder["stack"]):
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def published(milvus, tmp_path_factory):
    from twotower.pipelines.full_update import run
    from twotower.research.simulate import simulate

    root = tmp_path_factory.mktemp("milvus_ws") / "ws"
    overrides = {"index": {"backend": "milvus", "milvus_uri": milvus["uri"], "milvus_keep": 2},
                 "full_update": {"promotion_min_ratio": 0.0}}  # fmt: skip
    settings = load_settings(workspace=root, **overrides)
    ws = Workspace(settings.workspace)
    simulate(settings, ws, **WORLD)
    ids = [run(settings, ws, day).generation for day in ws.days()]
    return settings, ws, ids


def _meta(ws, gid: str) -> dict:
    import json

    return json.loads((gens.directory(ws, gid) / "index" / "index.json").read_text())


def _users(ws, gid: str, n: int) -> list[int]:
    """The first ``n`` users with an own ID row in generation ``gid``."""
    return [int(u) for u in pd.read_parquet(gens.directory(ws, gid) / "user_id_embedding.parquet")["user_id"].head(n)]


def _client(milvus):
    return milvus_index.client(milvus["uri"], 10)


def test_each_generation_has_its_collection_and_the_alias_follows_current(milvus, published):
    settings, ws, ids = published
    metas = [_meta(ws, g) for g in ids]
    assert [m["layout"] for m in metas] == ["milvus"] * 2 and len({m["collection"] for m in metas}) == 2
    served = gens.current(ws)
    assert served.id == ids[1] and served.index["backend"] == "milvus" and served.index["search_param"] == "ef"
    assert served.metrics["ann_recall@100_vs_exact"] >= settings.index.target_recall  # ef tuned against exact
    c = _client(milvus)
    try:
        assert c.describe_alias("twotower_serving")["collection_name"] == metas[1]["collection"]
        assert {m["collection"] for m in metas} <= set(c.list_collections())  # index.milvus_keep = 2
        assert c.get_collection_stats(metas[1]["collection"])["row_count"] == metas[1]["items"]
    finally:
        c.close()
    status = twotower_in_process(ws.root, "status")
    assert f"Milvus collection {metas[1]['collection']} (HNSW, ef " in status, status


def test_collections_beyond_the_kept_generations_are_dropped(milvus, published):
    """An orphan (a build killed before its publish) and any collection the last
    ``index.milvus_keep`` served generations do not name go; the served ones stay."""
    settings, ws, ids = published
    c = _client(milvus)
    try:
        c.create_collection("twotower_orphan", dimension=4)
        c.create_collection("someone_elses", dimension=4)  # another prefix: not ours to drop
        assert milvus_index.follow_current(ws, settings.index.milvus_prefix) == _meta(ws, ids[1])["collection"]
        left = set(c.list_collections())
        assert "twotower_orphan" not in left and "someone_elses" in left
        assert {_meta(ws, g)["collection"] for g in ids} <= left
    finally:
        c.close()


def test_serving_answers_from_its_generation_s_collection_as_exact_search_does(published):
    from serving.retriever import Retriever

    settings, ws, ids = published
    retriever = Retriever.open(settings, ws)
    try:
        gen = retriever.current
        labels, vectors = load_vectors(gens.directory(ws, ids[1]) / "index")
        rng = np.random.default_rng(0)
        queries = vectors[rng.choice(len(vectors), 20, replace=False)] + 0.05 * rng.normal(size=(20, vectors.shape[1]))
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
        truth = labels[exact_topk(vectors, queries, 10)]
        hits = sum(len(set(gen.index.query(q, 10)[0].tolist()) & set(t.tolist())) for q, t in zip(queries, truth))
        assert hits / truth.size >= 0.95
        (user,) = _users(ws, ids[1], 1)
        got = retriever.recall(user, k=20)
        assert (got.generation, got.path, len(got.item_ids), got.degraded) == (ids[1], "embedding", 20, None)
    finally:
        retriever.close()


def test_a_request_during_alias_flips_sees_one_generation(published):
    """The server asks the collection of the generation it loaded, so flipping the alias back
    and forth under it changes no answer."""
    from serving.retriever import Retriever

    settings, ws, ids = published
    retriever = Retriever.open(settings, ws)
    users = _users(ws, ids[1], 5)
    baseline = {u: retriever.recall(u, k=30).item_ids.tolist() for u in users}
    stop, flips = threading.Event(), [0]

    def flip() -> None:
        while not stop.is_set():
            for g in ids:  # g1's collection, then the served one's, again and again
                milvus_index.serve(gens.directory(ws, g) / "index", 10)
                flips[0] += 1

    thread = threading.Thread(target=flip)
    thread.start()
    try:
        answers = [(u, retriever.recall(u, k=30)) for _ in range(10) for u in users]
    finally:
        stop.set()
        thread.join()
        milvus_index.follow_current(ws, settings.index.milvus_prefix)
        retriever.close()
    assert flips[0] >= 2
    for u, got in answers:
        assert got.generation == ids[1] and got.item_ids.tolist() == baseline[u], u


def test_a_milvus_outage_degrades_to_popular_items_and_recovers(milvus, published):
    from serving.retriever import Retriever

    settings, ws, ids = published
    retriever = Retriever.open(settings, ws)
    (user,) = _users(ws, ids[1], 1)
    before = retriever.recall(user, k=10)
    try:
        milvus["proc"].terminate()
        milvus["proc"].wait(timeout=30)
        down = retriever.recall(user, k=10)
        assert down.path == "popular" and "item index unavailable" in (down.degraded or ""), down
        assert down.item_ids.tolist() == retriever.current.popular_ids[:10].tolist()
        late = Retriever.open(settings, ws)  # a server started during the outage serves too, degraded
        assert late.recall(user, k=10).degraded and late.recall(user, k=10).path == "popular"
        port = int(milvus["uri"].rsplit(":", 1)[1])
        server = milvus_lite_server(milvus["data"], port=port)  # back, same data, same address
        milvus["uri"], milvus["proc"] = server.__enter__()
        milvus["stack"].append(server)
        deadline = time.monotonic() + 10 * milvus_index.RETRY_S
        while (again := retriever.recall(user, k=10)).degraded and time.monotonic() < deadline:
            time.sleep(0.1)  # degraded answers at once until a retry is due, then one reconnects
        assert (again.path, again.degraded, again.item_ids.tolist()) == (before.path, None, before.item_ids.tolist())
        while (late_again := late.recall(user, k=10)).degraded and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        assert late_again.item_ids.tolist() == before.item_ids.tolist()
        late.close()
    finally:
        retriever.close()


def test_rollback_flips_the_alias_back_and_refuses_a_dropped_collection(milvus, published):
    """Runs last: it moves CURRENT."""
    from typer.testing import CliRunner

    from twotower.cli import app

    settings, ws, ids = published
    out = twotower_in_process(ws.root, "generations", "rollback")
    assert f"now serving {ids[0]}" in out
    c = _client(milvus)
    try:
        assert c.describe_alias("twotower_serving")["collection_name"] == _meta(ws, ids[0])["collection"]
        assert _meta(ws, ids[1])["collection"] in c.list_collections()  # a rollback drops nothing
        gens.flip(ws, ids[1])  # forward again, then g1's collection goes (as past index.milvus_keep)
        milvus_index.follow_current(ws, settings.index.milvus_prefix, drop=False)
        c.drop_collection(_meta(ws, ids[0])["collection"])
    finally:
        c.close()
    refused = CliRunner().invoke(app, ["--workspace", str(ws.root), "generations", "rollback"])
    assert refused.exit_code != 0 and "is gone" in str(refused.exception), (refused.output, refused.exception)
    assert gens.read_pointer(ws).current == ids[1]
