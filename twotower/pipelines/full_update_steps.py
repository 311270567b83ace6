"""The steps of the full update, each a function of (settings, workspace, the day's work dir).

Kept apart from ``full_update.run`` (the order and the resume rules) so each step reads on its
own. Steps whose output exists are skipped by the caller; every step writes atomically.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from typing import Callable, TypeVar

import numpy as np
import pandas as pd

from materialize import online
from materialize.item_vectors import export_item_vectors
from materialize.prepare import PreparedDay, SUCCESS, prepare_day
from materialize.user_embeddings import materialize_generation, write_offline
from tfrs_models.catalog import ItemCatalog
from tfrs_models.checkpoint import load_model, save_model, saved_spec
from tfrs_models.evaluate import id_diagnostics, popularity_recall_at_k, recall_at_k
from tfrs_models.export import export_user_tower, item_vectors, user_id_embedding_table, user_vectors
from tfrs_models.training import numeric_stats, train_full
from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.core.encode import id_keys
from twotower.core.features import FeatureSpec, architecture_changes
from twotower.core.files import atomic_path, staged_dir
from twotower.core.workspace import Workspace
from twotower.index import item_index
from twotower.index.item_index import load_meta
from twotower.index.shard_build import build_index
from twotower.index.sharded_index import load_vectors, manifest_summary, open_index
from twotower.pipelines.day import DayWork, PromotionRefused, day_bounds
from validation import raise_if_failed, validate_day

logger = logging.getLogger(__name__)

T = TypeVar("T")
POPULAR_ITEMS = 1000


class Steps:
    """Runs, times and records each step; a step whose output exists is skipped (0.0 s)."""
    def __init__(self, record: dict[str, float]):
        self.record = record

    def __call__(self, step: str, fn: Callable[..., T], *args, done: bool = False) -> T | None:
        if done:
            logger.info(f"== {step}: already done, skipped")
            self.record[step] = 0.0
            return None
        logger.info(f"== {step}")
        started = time.perf_counter()
        out = fn(*args)
        self.record[step] = round(time.perf_counter() - started, 3)
        logger.info(f"== {step}: {self.record[step]:.1f}s")
        return out


def validate(settings: Settings, ws: Workspace, day: date, spec: FeatureSpec) -> None:
    report = validate_day(settings, ws, day, spec)
    logger.info(report.format())
    raise_if_failed(report)


def features(settings: Settings, ws: Workspace, served: gens.Manifest | None, fresh: bool) -> FeatureSpec:
    """``feast apply`` of the feature repo (skipped while unchanged) and the towers' spec from it;
    refused (``FeatureSetChanged``, before any data is read) when the served model takes other
    inputs and ``fresh`` was not asked for."""
    keep = None
    if served is not None and not fresh:  # checked before the registry changes: serving goes on
        keep = (saved_spec(gens.directory(ws, served.id) / served.paths["checkpoint"]), f"the served generation {served.id}")
    feature_store.apply(settings, ws, keep=keep)
    spec = feature_store.applied_spec(ws)
    logger.info(f"features: user tower {', '.join(f.name for f in spec.user.features)} + {', '.join(spec.context)}; "
                f"item tower {', '.join(f.name for f in spec.item.features)}")  # fmt: skip
    return spec


def prepare(settings: Settings, ws: Workspace, day: date, dask, spec: FeatureSpec):
    target = ws.tfrecords_dir(day)
    if (target / SUCCESS).exists():
        logger.info(f"prepare: {day} already prepared")
        return PreparedDay.load(target)
    return prepare_day(settings, ws, day, dask.get(), spec=spec, seed=settings.full_update.seed)


def _load_served_model(settings: Settings, ws: Workspace, served: gens.Manifest | None):
    if served is None:
        return None
    return load_model(gens.directory(ws, served.id) / served.paths["checkpoint"], settings.model)


def train(settings: Settings, ws: Workspace, work: DayWork, prepared, served, spec: FeatureSpec) -> None:
    now = work.known(spec)
    directory = ws.tfrecords_dir(work.day)
    frequencies = pd.read_parquet(directory / prepared.frequencies)
    catalog = ItemCatalog.from_frames(now.items, spec.item, frequencies)
    previous = _load_served_model(settings, ws, served)
    logger.info(
        f"train: {prepared.examples:,} examples, 1 epoch, warm start from "
        f"{served.id if served else 'scratch (first generation)'}; {len(now.user_keys):,} users, {len(catalog):,} items"
    )
    stats = {"user": numeric_stats(spec.user, now.users), "item": numeric_stats(spec.item, now.items)}
    run = train_full(
        settings.model, prepared.shard_paths(directory), spec=spec, user_ids=now.user_keys, user_labels=now.user_labels,
        catalog=catalog, numeric_stats=stats, previous=previous, seed=settings.full_update.seed,
        total_examples=prepared.examples,
    )  # fmt: skip
    save_model(run.model, work.checkpoint)
    stats = {
        "examples": run.examples, "steps": run.steps, "seconds": round(run.seconds, 3),
        "mean_loss": run.mean_loss, "examples_per_second": round(run.examples_per_second),
        "warm_start_from": served.id if served else None,
    }  # fmt: skip
    work.write_json(work.training, stats)
    logger.info(f"train: {run.examples:,} examples in {run.seconds:.1f}s ({run.examples_per_second:,.0f}/s), loss {run.mean_loss:.4f}")


def export(settings: Settings, ws: Workspace, work: DayWork, prepared, dask) -> None:
    model = load_model(work.checkpoint, settings.model)
    spec = model.spec.bind(ws.root)
    export_user_tower(model, work.user_tower)
    table = user_id_embedding_table(model)
    with atomic_path(work.embeddings) as tmp:
        pd.DataFrame({"user_id": table["user_id"], "embedding": table["embedding"]}).to_parquet(tmp, index=False)
    logger.info(f"export: user tower + {len(table):,} user ID embeddings")
    # The serving fallback when a user has neither an embedding nor a profile: the day's most
    # clicked items (the frequency table prepare computed for logQ).
    frequencies = pd.read_parquet(ws.tfrecords_dir(work.day) / prepared.frequencies)
    popular = frequencies.sort_values(["clicks", "item_id"], ascending=[False, True]).head(POPULAR_ITEMS)
    labels, found = model.catalog.labels_of(popular["item_id"])  # the IDs as given: they leave the platform
    popular = pd.DataFrame({"item_id": labels, "clicks": popular["clicks"].to_numpy()[found]})
    with atomic_path(work.popular) as tmp:
        popular.to_parquet(tmp, index=False)

    items = work.known(spec).items
    ids, vectors = export_item_vectors(dask.get(), work.checkpoint, items, settings.model, spec, settings.dask.partitions)
    logger.info(f"export: {len(ids):,} item vectors")
    holdout = pd.read_parquet(ws.tfrecords_dir(work.day) / prepared.holdout)
    queries = user_vectors(model, holdout.head(settings.index.tuning_queries))
    with staged_dir(work.index) as stage:
        # index.shards / index.max_shard_mib: one flat file, or shards built as Dask tasks
        build_index(ids, vectors, stage, settings.index, dask.get)
        index = open_index(stage)
        k = min(100, len(ids))
        search_k, trials = item_index.choose_search_k(
            index, vectors, queries, k, settings.index.target_recall, item_ids=ids
        )
        index.unload()
        item_index.set_search_k(stage, search_k, trials)
    scope = " per shard" if index.shard_count > 1 else ""
    logger.info(f"export: index search_k={search_k}{scope} (recall@{k} vs exact {trials[-1]['recall']:.3f})")


def evaluate(settings: Settings, ws: Workspace, work: DayWork, prepared, served) -> None:
    every_held_out = pd.read_parquet(ws.tfrecords_dir(work.day) / prepared.holdout)
    holdout = every_held_out.sample(min(len(every_held_out), settings.full_update.eval_queries), random_state=0)
    positives = holdout["item_id"].to_numpy(np.int64)
    model = load_model(work.checkpoint, settings.model)
    labels, vectors = load_vectors(work.index)  # either layout, sorted by item ID
    ids = id_keys(labels, model.spec.item.id_type, "index")  # the held-out clicks name items by key
    metrics = {f"recall@{k}": v for k, v in recall_at_k(user_vectors(model, holdout), positives, ids, vectors).items()}
    # The popularity baseline on the same held-out clicks: the day's clicks minus the held-out ones.
    frequencies = pd.read_parquet(ws.tfrecords_dir(work.day) / prepared.frequencies)
    held = every_held_out["item_id"].value_counts()
    train_clicks = frequencies["clicks"].to_numpy(np.int64) - held.reindex(frequencies["item_id"], fill_value=0).to_numpy(np.int64)
    for k, v in popularity_recall_at_k(frequencies["item_id"].to_numpy(np.int64), train_clicks, positives).items():
        metrics[f"popularity_recall@{k}"] = v
    meta = load_meta(work.index)
    metrics["ann_recall@100_vs_exact"] = meta.get("tuned_recall", float("nan"))
    metrics["heldout_clicks"] = float(len(holdout))
    metrics.update(id_diagnostics(model, holdout, seed=settings.full_update.seed))
    parent = None
    old = _load_served_model(settings, ws, served)
    if old is not None and architecture_changes(old.spec.architecture(), model.spec.architecture()):
        logger.info(f"evaluate: {served.id} takes other tower inputs; no parent comparison (a fresh model)")
        old = None
    if old is not None:
        items = work.known(model.spec.bind(ws.root)).items
        old_labels, old_vectors = item_vectors(old, items)
        old_ids = id_keys(old_labels, old.spec.item.id_type, "items")
        parent = recall_at_k(user_vectors(old, holdout), positives, old_ids, old_vectors)
        for k, v in parent.items():
            metrics[f"parent_recall@{k}"] = v
    work.write_json(work.metrics, {"metrics": metrics, "parent": served.id if served else None})
    logger.info("evaluate: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if parent is not None and metrics["recall@100"] < settings.full_update.promotion_min_ratio * parent[100]:
        raise PromotionRefused(
            f"new model recall@100 {metrics['recall@100']:.4f} < {settings.full_update.promotion_min_ratio} x "
            f"served {served.id} ({parent[100]:.4f}) on the same held-out clicks; not published "
            f"(inspect {work.root}, then re-run with full_update.promotion_min_ratio lowered to force)"
        )


def unflipped(ws: Workspace, day: date, served) -> gens.Manifest | None:
    """A generation of ``day`` built on the served one but never flipped (crash before the flip)."""
    parent = served.id if served else None
    return next((m for m in gens.listing(ws) if m.day == day and m.parent == parent), None)


def publish(settings: Settings, ws: Workspace, work: DayWork, served) -> str:
    plan = work.read_json(work.publish) if work.publish.exists() else None
    if plan is None:
        plan = {"id": gens.next_id(ws, work.day), "slot": gens.next_slot(ws)}
        work.write_json(work.publish, plan)
    gid, slot = plan["id"], plan["slot"]
    _, end = day_bounds(work.day)
    as_of = end - timedelta(microseconds=1)  # the newest event the generation includes

    table = pd.read_parquet(work.embeddings)
    model = load_model(work.checkpoint, settings.model)
    spec = model.spec
    write_offline(ws, table, gid, slot, as_of, spec)
    feature_store.apply(settings, ws)
    materialize_generation(settings, ws, as_of, spec)
    online.materialize(settings, ws, end, [*spec.user.views(), *spec.item.views()])
    feature_store.record_applied(settings, ws)  # materialize wrote the registry; the declarations did not move
    logger.info(f"publish: {len(table):,} user ID embeddings of {gid} in online slot {slot}")

    training = work.read_json(work.training)
    metrics = work.read_json(work.metrics)["metrics"]
    index_meta = load_meta(work.index)
    manifest = gens.Manifest(
        id=gid, day=work.day, parent=served.id if served else None, embedding_slot=slot,
        paths={"checkpoint": "checkpoint", "user_tower": "user_tower", "index": "index",
               "user_id_embedding": "user_id_embedding.parquet", "popular_items": "popular_items.parquet"},
        dims={"output": settings.model.output_dim, "id_embedding": settings.model.id_embedding_dim},
        vocab={"users": len(model.user_vocab), "items": len(model.item_vocab)},
        metrics={**metrics, "train_loss": training["mean_loss"], "train_examples": float(training["examples"])},
        index=manifest_summary(index_meta),
    )  # fmt: skip
    gens.write_manifest(work.root, manifest)
    ws.generations_dir.mkdir(parents=True, exist_ok=True)
    work.root.rename(gens.directory(ws, gid))
    gens.flip(ws, gid)
    logger.info(f"publish: now serving {gid} (parent {manifest.parent or '-'})")
    return gid
