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
import pyarrow.parquet as pq

from materialize import online, popularity, recent_clicks
from materialize.examples import click_shares
from materialize.item_vectors import export_item_vectors
from materialize.prepare import PreparedDay, SUCCESS, holdout_mask, prepare_day
from materialize.user_embeddings import prune_offline, write_offline, write_online
from tfrs_models.catalog import ItemCatalog
from tfrs_models.checkpoint import load_model, save_model, saved_spec
from tfrs_models.evaluate import KS, exact_ranks, id_diagnostics, popularity_ranks, split_recalls
from tfrs_models.export import export_user_tower, item_vectors, user_id_embedding_table, user_vectors
from tfrs_models.training import numeric_stats, train_full
from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.core.encode import id_keys
from twotower.core.features import FeatureSpec, architecture_changes
from twotower.core.files import atomic_path, staged_dir
from twotower.core.workspace import Workspace
from twotower.index import item_index, milvus_index
from twotower.index.item_index import load_meta
from twotower.index.shard_build import build_index
from twotower.index.sharded_index import load_vectors, manifest_summary, open_index
from twotower.pipelines import id_rate
from twotower.pipelines.day import DayWork, PromotionRefused, day_bounds, known

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
            self.record.setdefault(step, 0.0)
            return None
        logger.info(f"== {step}")
        started = time.perf_counter()
        out = fn(*args)
        took = time.perf_counter() - started
        self.record[step] = round(self.record.get(step, 0.0) + took, 3)  # a backfill repeats the per-day steps
        logger.info(f"== {step}: {took:.1f}s")
        return out


def validate(settings: Settings, ws: Workspace, day: date, spec: FeatureSpec) -> None:
    # Great Expectations is imported here, not with the module: 4 s that a run resumed past its
    # gate (or asked for a published day) does not need.
    from validation import raise_if_failed, validate_day

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


def _with_clicks(settings: Settings, ws: Workspace, now, prepared: dict[date, PreparedDay], spec: FeatureSpec):
    """The known users (keys, labels) with at least ``model.min_user_clicks`` training clicks
    (held-out requests excluded) on the prepared days: those that get an own ID row (a warm start
    keeps the rows it has)."""
    minimum = settings.model.min_user_clicks
    if minimum == 0:
        return now.user_keys, now.user_labels
    parts = [pd.read_parquet(ws.events_day_dir(day), columns=["request_id", "user_id", "event_type"]) for day in prepared]
    events = pd.concat(parts, ignore_index=True)
    trained = (events["event_type"] == "click").to_numpy()
    trained &= ~holdout_mask(events["request_id"].to_numpy(), settings.full_update.holdout_share)
    clicked = events.loc[trained, "user_id"].to_numpy()
    counts = pd.Series(id_keys(clicked, spec.user.id_type, "events column 'user_id'")).value_counts()
    enough = np.isin(now.user_keys, counts.index[counts.to_numpy() >= minimum].to_numpy(np.int64))
    return now.user_keys[enough], now.user_labels[enough]


def _clicks(ws: Workspace, prepared: dict[date, PreparedDay]) -> pd.DataFrame:
    """Clicks per item over the prepared days (``item_id``, ``clicks``): the catalogue's counts."""
    frames = [pd.read_parquet(ws.tfrecords_dir(day) / p.frequencies) for day, p in prepared.items()]
    if len(frames) == 1:
        return frames[0]
    return click_shares(pd.concat(frames, ignore_index=True).groupby("item_id")["clicks"].sum())


def _load_served_model(settings: Settings, ws: Workspace, served: gens.Manifest | None):
    if served is None:
        return None
    return load_model(gens.directory(ws, served.id) / served.paths["checkpoint"], settings.model)


def train(settings: Settings, ws: Workspace, work: DayWork, prepared: dict[date, PreparedDay], served,
          spec: FeatureSpec, epochs: int = 1) -> None:  # fmt: skip
    """One shuffled epoch over the day's examples, warm-started from ``served``; or, for a
    bootstrap (several prepared days, ``served`` None), ``epochs`` over all of them shuffled."""
    now = work.known(spec)
    users, labels = _with_clicks(settings, ws, now, prepared, spec)
    shards = [p for day, days in prepared.items() for p in days.shard_paths(ws.tfrecords_dir(day))]
    examples = sum(p.examples for p in prepared.values())
    frequencies = _clicks(ws, prepared)
    catalog = ItemCatalog.from_frames(now.items, spec.item, frequencies)
    previous = _load_served_model(settings, ws, served)
    what = f"{len(prepared)} days, {epochs} epochs" if len(prepared) > 1 else f"{epochs} epoch" + "s" * (epochs > 1)
    logger.info(
        f"train: {examples:,} examples ({what}), warm start from "
        f"{served.id if served else 'scratch (first generation)'}; {len(users):,} of {len(now.user_keys):,} users with "
        f"an own row, {len(catalog):,} items"
    )
    stats = {"user": numeric_stats(spec.user, now.users), "item": numeric_stats(spec.item, now.items)}
    model_settings, tuned = id_rate.inherited(settings, ws, served), None
    if served is None and id_rate.wanted(settings, len(prepared)):  # a backfill: the history picks the ID rate
        fit_days = dict(list(prepared.items())[:-id_rate.VALIDATION_DAYS])
        fit_users, fit_labels = _with_clicks(settings, ws, now, fit_days, spec)
        fit = dict(spec=spec, user_ids=fit_users, user_labels=fit_labels, catalog=catalog, numeric_stats=stats,
                   seed=settings.full_update.seed)  # fmt: skip
        items = known(spec, ws, list(fit_days)[-1]).items  # the items' features as the validation days began
        tuned = id_rate.choose(settings, ws, prepared, spec, fit, items, epochs)
        model_settings = model_settings.model_copy(update={"id_learning_rate": tuned["chosen"]})
        logger.info(f"train: id_learning_rate {tuned['chosen']:g} (of {', '.join(tuned['recall@100'])})")
    run = train_full(
        model_settings, shards, spec=spec, user_ids=users, user_labels=labels, catalog=catalog,
        numeric_stats=stats, previous=previous, seed=settings.full_update.seed, total_examples=examples, epochs=epochs,
    )  # fmt: skip
    save_model(run.model, work.checkpoint)
    stats = {
        "examples": run.examples, "steps": run.steps, "seconds": round(run.seconds, 3),
        "mean_loss": run.mean_loss, "examples_per_second": round(run.examples_per_second),
        "warm_start_from": served.id if served else None, "epochs": epochs,
        "days": [str(d) for d in prepared], "id_learning_rate": model_settings.id_learning_rate,
        **({"id_learning_rate_tuning": tuned} if tuned else {}),
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
    # The serving fallback when a user has neither an embedding nor a profile: the items of most
    # clicks decayed over full_update.popular_decay_days (0: the day's clicks, prepare's table).
    tau, state = settings.full_update.popular_decay_days, ws.tfrecords_dir(work.day) / popularity.STATE
    if tau > 0 and state.exists() and popularity.column(tau) in pq.read_schema(state).names:
        popular = popularity.popular(pd.read_parquet(state), tau, POPULAR_ITEMS)
    else:
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
    knob = getattr(index, "knob", None) or "search_k"  # Milvus: ef or nprobe
    logger.info(f"export: index {knob}={search_k}{scope} (recall@{k} vs exact {trials[-1]['recall']:.3f})")


def evaluate(settings: Settings, ws: Workspace, work: DayWork, prepared, served) -> None:
    """Exact recall@K of the day's held-out clicks (beside popularity and the served parent, on
    the same clicks), also split by warm users (an own ID row), cold users (served through the
    OOV row) and new items (not in the parent's catalogue, or unclicked on a first day). The
    promotion gate refuses a model clearly worse than its parent overall or on cold users."""
    every_held_out = pd.read_parquet(ws.tfrecords_dir(work.day) / prepared.holdout)
    holdout = every_held_out.sample(min(len(every_held_out), settings.full_update.eval_queries), random_state=0)
    positives = holdout["item_id"].to_numpy(np.int64)
    model = load_model(work.checkpoint, settings.model)
    labels, vectors = load_vectors(work.index)  # either layout, sorted by item ID
    ids = id_keys(labels, model.spec.item.id_type, "index")  # the held-out clicks name items by key
    ranks = exact_ranks(user_vectors(model, holdout), positives, ids, vectors)
    # The popularity baseline on the same held-out clicks: the day's clicks minus the held-out ones.
    frequencies = pd.read_parquet(ws.tfrecords_dir(work.day) / prepared.frequencies)
    held = every_held_out["item_id"].value_counts()
    train_clicks = frequencies["clicks"].to_numpy(np.int64) - held.reindex(frequencies["item_id"], fill_value=0).to_numpy(np.int64)
    popular = popularity_ranks(frequencies["item_id"].to_numpy(np.int64), train_clicks, positives)
    old = _load_served_model(settings, ws, served)
    if old is not None and architecture_changes(old.spec.architecture(), model.spec.architecture()):
        logger.info(f"evaluate: {served.id} takes other tower inputs; no parent comparison (a fresh model)")
        old = None
    warm = model.user_vocab.contains(holdout["user_id"].to_numpy(np.int64))
    if old is not None:
        new_items = ~old.item_vocab.contains(positives)
    else:
        unclicked = set(frequencies["item_id"].to_numpy(np.int64)[train_clicks == 0].tolist())
        new_items = np.isin(positives, list(unclicked))
    splits = {"warm_users": warm, "cold_users": ~warm, "new_items": new_items}
    metrics = {f"recall@{k}": float((ranks < k).mean()) for k in KS}
    metrics.update({f"popularity_recall@{k}": float((popular < k).mean()) for k in KS})
    metrics.update(split_recalls(ranks, splits))
    metrics.update(split_recalls(popular, splits, prefix="popularity_"))
    meta = load_meta(work.index)
    metrics["ann_recall@100_vs_exact"] = meta.get("tuned_recall", float("nan"))
    metrics["heldout_clicks"] = float(len(holdout))
    metrics.update({f"heldout_clicks_{name}": float(mask.sum()) for name, mask in splits.items()})
    metrics.update(id_diagnostics(model, holdout, seed=settings.full_update.seed))
    parent = None
    if old is not None:
        items = work.known(model.spec.bind(ws.root)).items
        old_labels, old_vectors = item_vectors(old, items)
        old_ids = id_keys(old_labels, old.spec.item.id_type, "items")
        parent_ranks = exact_ranks(user_vectors(old, holdout), positives, old_ids, old_vectors)
        parent = {f"recall@{k}": float((parent_ranks < k).mean()) for k in KS}
        parent.update(split_recalls(parent_ranks, splits))
        metrics.update({f"parent_{name}": v for name, v in parent.items()})
    work.write_json(work.metrics, {"metrics": metrics, "parent": served.id if served else None})
    logger.info("evaluate: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "_users_" not in k and "_items_" not in k))
    logger.info("evaluate: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "_users_" in k or "_items_" in k))
    if parent is not None:
        _promotion_gate(settings, work, served, metrics, parent, len(holdout), int(splits["cold_users"].sum()))


def _promotion_gate(settings: Settings, work: DayWork, served, metrics: dict, parent: dict, clicks: int,
                    cold_clicks: int) -> None:  # fmt: skip
    """``PromotionRefused`` when recall@100 - over all held-out clicks, or over the cold users' -
    falls below ``full_update.promotion_min_ratio`` x the parent's on the same clicks; each is
    judged only on at least ``full_update.promotion_min_clicks`` clicks."""
    ratio, enough = settings.full_update.promotion_min_ratio, settings.full_update.promotion_min_clicks
    checks = [("recall@100", "")] if clicks >= enough else []
    if cold_clicks >= enough and "cold_users_recall@100" in parent:
        checks.append(("cold_users_recall@100", f" of the {cold_clicks} held-out clicks of cold users"))
    if clicks < enough:
        logger.info(f"evaluate: {clicks} held-out clicks (< full_update.promotion_min_clicks={enough}): not judged")
    for name, which in checks:
        if metrics[name] < ratio * parent[name]:
            raise PromotionRefused(
                f"new model {name} {metrics[name]:.4f} < {ratio} x served {served.id} ({parent[name]:.4f}) on the same "
                f"held-out clicks{which}; not published (inspect {work.root}, then re-run with "
                f"full_update.promotion_min_ratio lowered to force)"
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
    views = [*spec.user.views(), *spec.item.data_views()]  # popularity: read offline by the export, not served
    if spec.history_view:  # the users' recently clicked items, for serving.exclude_seen
        fs = settings.features
        backfilled = len(work.read_json(work.training).get("days", [])) > 1  # a bootstrap: everyone's rows
        lists = recent_clicks.build(ws, work.day, fs.history_len, fs.history_days, everyone=backfilled)
        recent_clicks.write_offline(ws, lists, work.day, as_of, spec)
        views.append(spec.history_view)
    feature_store.apply(settings, ws)
    write_online(settings, ws, gid, spec)
    online.materialize(settings, ws, end, views)
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
    milvus_index.follow_current(ws, settings.index.milvus_prefix)  # the serving alias (Milvus only)
    pruned = prune_offline(ws, set(gens.read_pointer(ws).history[-2:]))  # what the two online slots hold
    if pruned:
        logger.info(f"publish: offline user ID embeddings of {', '.join(pruned)} removed (in neither online slot)")
    logger.info(f"publish: now serving {gid} (parent {manifest.parent or '-'})")
    return gid
