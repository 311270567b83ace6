"""A synthetic, generation-shaped world for the serving benchmark (used by bench_serving.py).

Everything serving reads is real and built by the platform's own code: an Annoy index built
and search_k-tuned by ``twotower.index.item_index`` (as the full update does), a user tower npz
loaded by ``NumpyUserTower``, Feast SQLite online rows written by ``feast apply`` +
``feast materialize`` (profiles) and the publish path's ``write_offline`` +
``write_online`` (ID embeddings), a manifest with checksums, and ``CURRENT``.

Only the numbers are synthetic:

* items: unit vectors around ``clusters`` random topic centres (noise ``item_noise``);
* users: an ID embedding near a random topic centre (noise ``user_noise``);
* the user tower: the real architecture (ID embedding + hashed profile/hour embeddings ->
  Dense(128, relu) -> Dense(64) -> L2 norm) with weights built so that ``a`` is the user's ID
  embedding plus a small profile/hour term: the first layer holds ``[I, -I]`` for the ID part
  and the output layer ``[I; -I]`` (relu(x) - relu(-x) = x). So user vectors sit near topics,
  as a trained tower's do, and the forward pass costs what a real one of these shapes costs.
  That needs ``model.id_embedding_dim == model.output_dim`` (64 here).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.core import schema
from twotower.research.simulate import tables
from twotower.core.config import Settings
from twotower.core.workspace import Workspace

GENERATION = "g00001-2026-11-01"
AS_OF = datetime(2026, 11, 1, 23, 59, 59, 999999, tzinfo=timezone.utc)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng, centers: np.ndarray, n: int, noise: float, chunk: int = 100_000) -> np.ndarray:
    d = centers.shape[1]
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        c = centers[rng.integers(0, len(centers), m)]
        out[s : s + m] = unit(c + noise * rng.standard_normal((m, d), dtype=np.float32) / np.sqrt(d))
    return out


def catalogue_args(parser) -> None:
    """The options of a clustered catalogue with tuning and fresh queries (``catalogue``)."""
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--noise", type=float, default=0.6)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--queries", type=int, default=300)


def catalogue(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(item ids, vectors, tuning queries, fresh queries, the fresh queries' exact top-100 rows)."""
    from twotower.index.item_index import exact_topk

    rng = np.random.default_rng(0)
    centers = unit(rng.standard_normal((args.clusters, args.dim)).astype(np.float32))
    vectors = clustered(rng, centers, args.items, args.noise)
    tuning = clustered(rng, centers, args.queries, args.noise)
    fresh = clustered(rng, centers, args.queries, args.noise)
    truth = np.concatenate([exact_topk(vectors, fresh[s : s + 50], 100) for s in range(0, len(fresh), 50)])
    return np.arange(args.items, dtype=np.int64), vectors, tuning, fresh, truth


def query_latency(index, fresh: np.ndarray, truth: np.ndarray, knob: int, warm: int = 50) -> dict:
    """recall@100 against the exact rows ``truth`` and p50 / p99 ms of one top-100 query, each
    fresh query timed alone at search parameter ``knob`` (after ``warm`` untimed ones)."""
    import time

    for q in fresh[:warm]:
        index.query(q, 100, knob)
    latency, hits = [], 0
    for q, want in zip(fresh, truth):
        t0 = time.perf_counter()
        got, _ = index.query(q, 100, knob)
        latency.append(time.perf_counter() - t0)
        hits += len(set(got.tolist()) & set(want.tolist()))
    lat = np.asarray(latency) * 1e3
    return {"recall_at_100": round(hits / truth.size, 4), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3)}  # fmt: skip


def tower_weights(settings: Settings, spec, rng, profile_scale: float = 0.05) -> dict[str, np.ndarray]:
    """NumpyUserTower weights (see the module docstring), shapes as the model's export for the
    workspace's feature spec (categorical and list inputs only, as in the default repo)."""
    import json

    from twotower.core.features import CONTEXT

    m = settings.model
    d, fe, hidden = m.id_embedding_dim, m.feature_embedding_dim, m.hidden_units
    if d != m.output_dim or hidden != [2 * d]:
        raise ValueError("the synthetic tower needs id_embedding_dim == output_dim and hidden_units == [2 * dim]")
    if any(f.kind not in ("categorical", "multi") for f in spec.user.features):
        raise ValueError("the synthetic tower takes categorical and list user features only")
    w = {"spec": np.array(json.dumps(spec.to_dict()))}
    w.update({f"table/{f.name}": rng.standard_normal((f.buckets, fe), dtype=np.float32) for f in spec.user.features})
    w.update({f"context/{c}": rng.standard_normal((CONTEXT[c], fe), dtype=np.float32) for c in spec.context})
    n_in = d + fe * (len(spec.user.features) + len(spec.context))
    k0 = np.zeros((n_in, 2 * d), np.float32)
    k0[:d, :d], k0[:d, d:] = np.eye(d), -np.eye(d)
    profile = profile_scale * rng.standard_normal((n_in - d, d), dtype=np.float32) / np.sqrt(n_in - d)
    k0[d:, :d], k0[d:, d:] = profile, -profile
    w["dense/0/kernel"], w["dense/0/bias"] = k0, np.zeros(2 * d, np.float32)
    w["dense/1/kernel"] = np.concatenate([np.eye(d), -np.eye(d)]).astype(np.float32)
    w["dense/1/bias"] = np.zeros(d, np.float32)
    w["oov_rows"] = unit(rng.standard_normal((m.oov_buckets, d), dtype=np.float32))
    return w


def write_offline_store(ws: Workspace, users: int, items: int, rng) -> None:
    """users.parquet (profiles) and items.parquet, following twotower.core.schema."""
    ws.ensure()
    signup = AS_OF - timedelta(days=30)
    tags = [[int(t) for t in rng.integers(1, 128, rng.integers(1, 6))] for _ in range(users)]
    pq.write_table(pa.table({
        "user_id": np.arange(1, users + 1, dtype=np.int64),
        "age_bucket": rng.integers(0, 7, users, dtype=np.int32),
        "gender": rng.integers(0, 3, users, dtype=np.int32),
        "city_tier": rng.integers(0, 5, users, dtype=np.int32),
        "interest_tags": pa.array(tags, pa.list_(pa.int32())),
        "activity": np.ones(users),
        "signup_date": pa.array([signup.date()] * users, pa.date32()),
        "event_timestamp": pa.array([signup] * users, schema.TS),
    }, schema=tables.USERS), ws.users_path)  # fmt: skip
    pq.write_table(pa.table({
        "item_id": np.arange(1, items + 1, dtype=np.int64),
        "category": rng.integers(0, 64, items, dtype=np.int32),
        "tags": pa.array([[1]] * items, pa.list_(pa.int32())),
        "author_id": rng.integers(1, 50_000, items, dtype=np.int64),
        "created_at": pa.array([signup] * items, schema.TS),
        "event_timestamp": pa.array([signup] * items, schema.TS),
    }, schema=tables.ITEMS), ws.items_path)  # fmt: skip


def build(settings: Settings, ws: Workspace, *, items: int, users: int, clusters: int, item_noise: float,
          user_noise: float, n_trees: int, tuning_queries: int, seed: int, refine_margin: float = 0.005,
          reuse: bool = False, log=print) -> dict:  # fmt: skip
    """Build and publish the synthetic generation; returns what the benchmark needs.

    ``reuse``: the workspace already holds this world (same arguments, e.g. ``--keep DIR
    --reuse``): regenerate the vectors (deterministic) and skip Feast, index and publish.
    """
    from twotower.index import item_index
    from materialize.user_embeddings import write_offline, write_online
    from materialize import online
    from twotower import feature_store
    from twotower.core import generations as gens
    from twotower.core.files import staged_dir

    rng = np.random.default_rng(seed)
    dim = settings.model.output_dim
    timings: dict[str, float] = {}
    t = time.perf_counter()
    centers = unit(rng.standard_normal((clusters, dim), dtype=np.float32))
    item_ids = np.arange(1, items + 1, dtype=np.int64)
    vectors = clustered(rng, centers, items, item_noise)
    user_emb = clustered(rng, centers, users, user_noise)
    timings["generate_vectors"] = time.perf_counter() - t
    log(f"vectors: {items:,} items, {users:,} users, {clusters} topics")
    if reuse and gens.current(ws) is not None:
        return _reused(ws, vectors, user_emb, centers, timings, log)

    t = time.perf_counter()
    write_offline_store(ws, users, items, rng)
    feature_store.apply(settings, ws)
    online.materialize(settings, ws, AS_OF + timedelta(seconds=1), ["user_profile"])
    write_offline(ws, pd.DataFrame({"user_id": np.arange(1, users + 1), "embedding": list(user_emb)}), GENERATION, 0, AS_OF)
    write_online(settings, ws, GENERATION)
    timings["feast_online_rows"] = time.perf_counter() - t
    log(f"feast: {users:,} profiles + ID embeddings in the SQLite online store")

    from tfrs_models.export import NUMPY_WEIGHTS, NumpyUserTower

    stage_root = ws.generations_dir / GENERATION
    with staged_dir(stage_root) as stage:
        (stage / "user_tower").mkdir()
        with open(stage / "user_tower" / NUMPY_WEIGHTS, "wb") as fh:
            np.savez(fh, **tower_weights(settings, feature_store.applied_spec(ws), rng))
        tower = NumpyUserTower.load(stage / "user_tower")
        t = time.perf_counter()
        meta = item_index.build(item_ids, vectors, stage / "index", n_trees)
        timings["index_build"] = time.perf_counter() - t
        # Tune search_k as the full update does: on user vectors the tower actually produces.
        tune_users = rng.choice(users, tuning_queries, replace=False)
        queries = tower_vectors(tower, user_emb[tune_users], rng)
        t = time.perf_counter()
        index = item_index.ItemIndex(stage / "index")
        # The platform's own tuning (coarse grid, then bisection), a little above the target so
        # the benchmark's fresh queries land on it too.
        search_k, trials = item_index.choose_search_k(
            index, vectors, queries, 100, settings.index.target_recall + refine_margin
        )
        index.unload()
        item_index.set_search_k(stage / "index", search_k, trials)
        timings["search_k_tuning"] = time.perf_counter() - t
        grid_k = _grid_search_k(trials, n_trees, search_k)
        log(f"index: n_trees={n_trees}, search_k={search_k} (coarse grid: {grid_k}) "
            f"{[(x['search_k'], round(x['recall'], 3)) for x in trials]}")
        clicks = rng.zipf(1.3, 1000).astype(np.int64)
        pd.DataFrame({"item_id": rng.choice(item_ids, 1000, replace=False), "clicks": clicks}).to_parquet(
            stage / "popular_items.parquet", index=False
        )
        manifest = gens.Manifest(
            id=GENERATION, day=AS_OF.date(), parent=None, embedding_slot=0,
            paths={"user_tower": "user_tower", "index": "index", "popular_items": "popular_items.parquet"},
            dims={"output": dim, "id_embedding": settings.model.id_embedding_dim},
            index={"n_trees": n_trees, "search_k": search_k, "items": items, "size_bytes": meta.size_bytes,
                   "build_seconds": meta.build_seconds},
        )  # fmt: skip
        t = time.perf_counter()
        gens.write_manifest(stage, manifest)
        timings["checksums"] = time.perf_counter() - t
    gens.flip(ws, GENERATION)
    return {
        "vectors": vectors, "user_emb": user_emb, "centers": centers, "tower": tower, "search_k": search_k,
        "grid_search_k": grid_k, "trials": trials, "n_trees": n_trees, "index_bytes": meta.size_bytes, "timings": timings,
    }  # fmt: skip


def _reused(ws: Workspace, vectors, user_emb, centers, timings: dict, log) -> dict:
    from twotower.index.item_index import load_meta
    from tfrs_models.export import NumpyUserTower
    from twotower.core import generations as gens

    manifest = gens.current(ws)
    root = gens.directory(ws, manifest.id)
    meta = load_meta(root / manifest.paths["index"])
    tuning = meta.get("tuning", [])
    log(f"reusing {root} (n_trees={meta['n_trees']}, search_k={meta['search_k']})")
    return {
        "vectors": vectors, "user_emb": user_emb, "centers": centers,
        "tower": NumpyUserTower.load(root / manifest.paths["user_tower"]), "search_k": meta["search_k"],
        "grid_search_k": _grid_search_k(tuning, meta["n_trees"], meta["search_k"]), "trials": tuning,
        "n_trees": meta["n_trees"], "index_bytes": meta["size_bytes"], "timings": timings, "reused": True,
    }  # fmt: skip


def _grid_search_k(trials: list[dict], n_trees: int, chosen: int, k: int = 100) -> int:
    """The coarse-grid value (n_trees * k * factor) the bisection started from."""
    grid = [t["search_k"] for t in trials if t["search_k"] % (n_trees * k) == 0 and t["search_k"] >= chosen]
    return min(grid, default=chosen)


def tower_vectors(tower, id_embeddings: np.ndarray, rng, hour: int = 12) -> np.ndarray:
    """The tower's user vectors for these ID embeddings with random (encoded) profiles."""
    n = len(id_embeddings)
    features = {f.name: rng.integers(0, f.buckets, (n, f.width) if f.kind == "multi" else n) for f in tower.spec.user.features}
    return tower(id_embeddings, features, {c: np.full(n, hour) for c in tower.spec.context})
