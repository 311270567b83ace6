"""The sharded item index: real Annoy files, shards built by a real Dask LocalCluster (worker
processes), merged top-k identical to one index, a memory bound per shard, and a full update
with ``index.shards=3`` that publishes a generation which serves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twotower.index import item_index
from materialize.cluster import dask_client
from twotower.index.item_index import INDEX_FILE, ItemIndex, choose_search_k, exact_topk, recall_against_exact
from twotower.index.shard_build import build_index, build_sharded
from twotower.index.shard_plan import estimate_annoy_bytes, plan_shards, shard_of
from twotower.index.sharded_index import ShardedIndex, load_vectors, open_index
from twotower.core.config import ConfigError, DaskSettings, IndexSettings, load_settings
from twotower.core.errors import UserError

DIM, TREES = 16, 8


@pytest.fixture(scope="module")
def client():
    with dask_client(DaskSettings(n_workers=2, threads_per_worker=1, memory_limit="1GiB")) as c:
        yield c


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _catalogue(n: int, seed: int, clustered: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Item IDs that are neither rows nor dense (sorted, as the export gives them), unit vectors."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10**9, n, replace=False)).astype(np.int64)
    if clustered:
        centres = rng.normal(size=(20, DIM))
        return ids, _unit(centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, DIM)))
    return ids, _unit(rng.normal(size=(n, DIM)))


def test_membership_is_a_stable_hash_of_the_item_id():
    ids = np.arange(10_000, dtype=np.int64) * 13 + 5
    four = shard_of(ids, 4)
    assert np.array_equal(four[::7], shard_of(ids[::7], 4)), "a subset lands where the whole does"
    assert np.array_equal(shard_of(ids[::-1], 4), four[::-1]), "order of the catalogue does not matter"
    assert shard_of(np.array([1, 2, 3, 2**62]), 4).tolist() == [1, 2, 1, 3], "fixed across versions and days"
    counts = np.bincount(four, minlength=4)
    assert counts.min() > 0.9 * len(ids) / 4, counts


def test_exhaustive_sharded_topk_is_identical_to_one_index_and_to_exact(client, tmp_path):
    ids, vectors = _catalogue(3_000, 0)
    plan = plan_shards(ids, DIM, TREES, shards=4)
    meta = build_sharded(client, ids, vectors, tmp_path / "sharded", plan, TREES)
    item_index.build(ids, vectors, tmp_path / "flat", TREES)
    sharded, flat = open_index(tmp_path / "sharded"), open_index(tmp_path / "flat")
    assert isinstance(sharded, ShardedIndex) and isinstance(flat, ItemIndex)
    assert meta["shard_count"] == sharded.shard_count == 4 and meta["items"] == 3_000
    members = [np.load(tmp_path / "sharded" / s["name"] / "item_ids.npy") for s in meta["shards"]]
    for s, got in zip(meta["shards"], members):  # each shard holds exactly its hash bucket
        assert np.array_equal(got, ids[shard_of(ids, 4) == s["bucket"]])
        assert s["size_bytes"] == (tmp_path / "sharded" / s["name"] / INDEX_FILE).stat().st_size
    assert np.array_equal(np.sort(np.concatenate(members)), ids)

    exhaustive = len(ids) * TREES  # every shard examines every one of its items
    queries = _unit(np.random.default_rng(1).normal(size=(25, DIM)))
    for k in (10, 60):
        truth = exact_topk(vectors, queries, k)
        for q, want in zip(queries, truth):
            got_ids, got_scores = sharded.query(q, k, search_k=exhaustive)
            one_ids, one_scores = flat.query(q, k, search_k=exhaustive)
            assert got_ids.tolist() == one_ids.tolist() == ids[want].tolist()
            np.testing.assert_allclose(got_scores, one_scores, atol=1e-6)
            np.testing.assert_allclose(got_scores, vectors[want] @ q, atol=1e-5)
    ids_back, vectors_back = load_vectors(tmp_path / "sharded")
    assert np.array_equal(ids_back, ids) and np.array_equal(vectors_back, vectors)
    sharded.unload()
    flat.unload()


def test_tuned_search_k_per_shard_reaches_the_target_recall(client, tmp_path):
    ids, vectors = _catalogue(6_000, 2, clustered=True)
    settings = IndexSettings(n_trees=10, shards=3, target_recall=0.95)
    build_index(ids, vectors, tmp_path / "idx", settings, lambda: client)
    index = open_index(tmp_path / "idx")
    queries = _unit(np.random.default_rng(3).normal(size=(40, DIM)))
    low, _ = recall_against_exact(index, vectors, queries, 50, search_k=50, item_ids=ids)
    search_k, trials = choose_search_k(index, vectors, queries, 50, settings.target_recall, item_ids=ids)
    index.unload()
    item_index.set_search_k(tmp_path / "idx", search_k, trials)

    reopened = open_index(tmp_path / "idx")
    assert reopened.search_k_for(50) == search_k, "the tuned per-shard search_k is what queries use"
    meta = item_index.load_meta(tmp_path / "idx")
    assert meta["search_k"] == search_k and meta["search_k_scope"] == "per_shard"
    assert all(item_index.load_meta(tmp_path / "idx" / s["name"])["search_k"] == search_k for s in meta["shards"])
    assert trials[-1]["search_k_total"] == 3 * search_k
    high, _ = recall_against_exact(reopened, vectors, queries, 50, search_k=None, item_ids=ids)
    assert high >= settings.target_recall > low, (high, low, trials)
    reopened.unload()


def test_memory_bound_splits_the_catalogue_and_is_checked(client, tmp_path):
    ids, vectors = _catalogue(3_000, 4)
    whole = estimate_annoy_bytes(len(ids), DIM, TREES)
    bound_mib = whole / 4.5 / 2**20  # about five shards' worth
    settings = IndexSettings(n_trees=TREES, max_shard_mib=bound_mib)
    meta = build_index(ids, vectors, tmp_path / "idx", settings, lambda: client)
    assert meta["shard_count"] >= 5 and len(meta["shards"]) == meta["shard_count"]
    for s in meta["shards"]:
        size = (tmp_path / "idx" / s["name"] / INDEX_FILE).stat().st_size
        assert size == s["size_bytes"] <= bound_mib * 2**20 and size <= s["estimated_bytes"]
        assert s["peak_rss_bytes"] > 0
    assert meta["max_shard_bytes"] == int(bound_mib * 2**20)
    recorded = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert [s["size_bytes"] for s in recorded["shards"]] == [s["size_bytes"] for s in meta["shards"]]

    one_item = estimate_annoy_bytes(1, DIM, TREES)
    with pytest.raises(UserError, match=r"index\.max_shard_mib=.*one item"):
        build_index(ids, vectors, tmp_path / "tiny", IndexSettings(n_trees=TREES, max_shard_mib=one_item / 2 / 2**20), lambda: client)
    assert not (tmp_path / "tiny" / "index.json").exists()
    with pytest.raises(ConfigError, match="index.shards"):
        load_settings(workspace=tmp_path / "ws", index={"shards": 0})


def test_full_update_with_three_shards_publishes_a_generation_that_serves(tmp_path):
    from serving.recall import POPULAR
    from serving.retriever import Retriever
    from twotower.core import generations as gens
    from twotower.pipelines.full_update import run
    from twotower.research.simulate import simulate
    from twotower.core.workspace import Workspace

    # One Dask worker process: on 2 busy cores a second spawned TensorFlow worker costs more than it saves.
    settings = load_settings(
        workspace=tmp_path / "ws", index={"shards": 3}, dask={"n_workers": 1}, full_update={"promotion_min_ratio": 0.0}
    )
    ws = Workspace(settings.workspace)
    simulate(settings, ws, users=300, items=200, days=1, seed=5)
    result = run(settings, ws, ws.days()[0])
    manifest = gens.current(ws)
    assert manifest.id == result.generation
    gens.verify(ws, manifest)
    index_dir = gens.directory(ws, manifest.id) / manifest.paths["index"]
    meta = item_index.load_meta(index_dir)
    assert manifest.index["shards"] == 3 and manifest.index["search_k"] > 0
    assert manifest.index["search_k_scope"] == "per_shard"
    assert sum(manifest.index["shard_items"]) == manifest.index["items"] == meta["items"]
    assert manifest.index["shard_bytes"] == [(index_dir / s["name"] / INDEX_FILE).stat().st_size for s in meta["shards"]]
    assert manifest.metrics["ann_recall@100_vs_exact"] >= settings.index.target_recall

    retriever = Retriever.open(settings, ws)
    assert isinstance(retriever.current.index, ShardedIndex)
    shard_ids = [set(np.load(index_dir / s["name"] / "item_ids.npy").tolist()) for s in meta["shards"]]
    users = [int(u) for u in __import__("pandas").read_parquet(ws.users_path).user_id.head(5)]
    k = 60
    for recall in retriever.recall_batch(users, k, hour=12).recalls:
        got = recall.item_ids.tolist()
        assert len(got) == len(set(got)) == k
        assert np.all(np.diff(recall.scores) <= 1e-6), "best first"
        if recall.path != POPULAR:
            assert all(any(i in s for s in shard_ids) for i in got)
            assert all(set(got) & s for s in shard_ids), "the merged top-k draws on every shard"
    retriever.close()
