"""Training throughput from TFRecords (examples/s, 2 cores) and recall@K, per objective.

A simulated day is turned into examples (point-in-time join, hard negatives, frequencies),
shuffled and written as TFRecord shards; each objective then trains one full-mode epoch from
the shards (parse, shuffle, profile features, uniform easy + hard negatives: the real path)
and is evaluated by exact recall@K of the next day's clicks over all items. A short sweep
shows how the batch size trades per-step overhead against the in-batch softmax's B^2 cost.

Throughput is reported three ways: wall-clock for the whole epoch (tracing included), steady
(after the first graph call, i.e. what a long day trains at) and CPU-normalised (examples per
CPU-second of this process x 2), which tells what 2 dedicated cores would do when the machine
is shared. The load average is recorded beside them.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench import write_result

CORES = 2
USERS, ITEMS, SEED = 50_000, 20_000, 0
SHARDS = 8
# (batch size, learning rate) per objective, from the sweep and a short tuning of recall; the
# rest is ModelSettings' defaults. Pointwise needs more (smaller) steps to personalise.
TUNED = {"listwise": (512, 0.05), "pointwise": (512, 0.05), "pairwise": (1024, 0.2)}
SWEEP = {"listwise": (512, 1024, 2048), "pointwise": (512, 1024, 2048), "pairwise": (512, 1024, 2048)}
SWEEP_SHARDS = 4  # half the day per sweep point
EVAL_CLICKS = 20_000
TARGET = 50_000


def _pin_cores() -> None:
    """Measure on 2 cores even on a bigger machine."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > CORES:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:CORES])
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per trained model is expected here
    tf.config.threading.set_intra_op_parallelism_threads(CORES)
    tf.config.threading.set_inter_op_parallelism_threads(CORES)


def _prepare(root: Path):
    from materialize.examples import build_examples, item_frequencies
    from tfrs_models.records import example_columns, write_shard
    from twotower import feature_store
    from twotower.core.config import ModelSettings, load_settings
    from twotower.research.simulate import simulate
    from twotower.core.workspace import Workspace

    settings = load_settings(workspace=root / "ws")
    ws = Workspace(settings.workspace)
    simulate(settings, ws, users=USERS, items=ITEMS, days=2, seed=SEED)
    users, items = pd.read_parquet(ws.users_path), pd.read_parquet(ws.items_path)
    day1, day2 = ws.days()
    m = ModelSettings()
    spec = feature_store.read_spec(settings, ws)
    columns = example_columns(spec, m.hard_negatives_per_example)
    events1 = pd.read_parquet(ws.events_day_dir(day1))
    t0 = time.perf_counter()
    train = build_examples(events1, users, items, spec=spec, hard_negatives=m.hard_negatives_per_example, day=day1)
    build_s = time.perf_counter() - t0
    held = build_examples(
        pd.read_parquet(ws.events_day_dir(day2)), users, items,
        spec=spec, hard_negatives=m.hard_negatives_per_example, day=day2,
    )  # fmt: skip
    held = held.sample(n=min(EVAL_CLICKS, len(held)), random_state=0)
    train = train.sample(frac=1.0, random_state=0).reset_index(drop=True)  # the preparation's global shuffle
    t0 = time.perf_counter()
    files = []
    for k in range(SHARDS):
        path = root / "tfrecords" / f"part-{k:05d}.tfrecord"
        write_shard(train.iloc[k::SHARDS], path, columns)
        files.append(path)
    write_s = time.perf_counter() - t0
    known_users = users.loc[users["event_timestamp"].dt.date <= day1]
    known_items = items.loc[items["event_timestamp"].dt.date <= day1]
    prep = {
        "users": len(users), "items": len(items), "train_examples": len(train), "held_out_clicks": len(held),
        "build_examples_per_second": round(len(train) / build_s),
        "write_shard_examples_per_second": round(len(train) / write_s), "shards": SHARDS,
        "shard_bytes": sum(f.stat().st_size for f in files),
    }  # fmt: skip
    freq = item_frequencies(events1, known_items["item_id"])
    return files, known_users, known_items, items, freq, held, prep, spec


def _train(objective: str, batch: int, learning_rate: float, files, users, catalog, spec):
    from tfrs_models.training import train_full
    from twotower.core.config import ModelSettings

    settings = ModelSettings(objective=objective, batch_size=batch, learning_rate=learning_rate)
    run = train_full(settings, [str(f) for f in files], spec=spec, user_ids=users["user_id"].to_numpy(), catalog=catalog, seed=0)
    stats = {
        "batch_size": batch,
        "learning_rate": learning_rate,
        "examples": run.examples,
        "seconds": round(run.seconds, 2),
        "first_call_seconds": round(run.first_call_seconds, 2),
        "examples_per_second": round(run.examples_per_second),
        "steady_examples_per_second": round(run.steady_examples_per_second),
        "cpu_normalised_examples_per_second": round(CORES * run.examples / run.cpu_seconds),
        "steady_cpu_normalised_examples_per_second": round(CORES * run.steady_examples_per_cpu_second()),
        "mean_loss": round(run.mean_loss, 4),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    return run, stats


def _pipeline_only(files, batch: int, columns) -> float:
    from tfrs_models.records import make_dataset

    ds = make_dataset([str(f) for f in files], batch, shuffle_buffer=50_000, columns=columns)
    t0, n = time.perf_counter(), 0
    for b in ds:
        n += int(b["user_id"].shape[0])
    return n / (time.perf_counter() - t0)


def main() -> None:
    _pin_cores()
    from tfrs_models.catalog import ItemCatalog
    from tfrs_models.evaluate import evaluate_model
    from tfrs_models.model import build_model
    from tfrs_models.records import example_columns
    from twotower.core.config import ModelSettings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files, users, known_items, items, freq, held, prep, spec = _prepare(root)
        print("prepared", prep, flush=True)
        catalog = ItemCatalog.from_frames(known_items, spec.item, freq)
        pipeline = round(_pipeline_only(files, 2048, example_columns(spec, ModelSettings().hard_negatives_per_example)))
        print("pipeline only (read + shuffle + parse)", pipeline, flush=True)
        sweep = {}
        for objective, sizes in SWEEP.items():
            for batch in sizes:
                _, stats = _train(objective, batch, TUNED[objective][1], files[:SWEEP_SHARDS], users, catalog, spec)
                sweep.setdefault(objective, []).append(stats)
                print("sweep", objective, stats, flush=True)
        runs = {}
        for objective, (batch, learning_rate) in TUNED.items():
            run, stats = _train(objective, batch, learning_rate, files, users, catalog, spec)
            stats["recall"] = {f"@{k}": round(v, 4) for k, v in evaluate_model(run.model, held, items).items()}
            chance = build_model(run.model.settings, spec, run.model.user_vocab, run.model.item_vocab, catalog, seed=1)
            stats["random_model_recall@100"] = round(evaluate_model(chance, held, items)[100], 4)
            runs[objective] = stats
            print(objective, stats, flush=True)
    write_result(
        "training",
        {
            "target": f">= {TARGET:,} examples/s from TFRecords with profile features on {CORES} cores",
            "model": "ModelSettings defaults (id 32-d, features 8-d, MLP [128] -> 64, 64 easy + 2 hard negatives, "
            "Adagrad) with the batch size and learning rate of TUNED",
            "data": prep,
            "pipeline_only_examples_per_second": pipeline,
            "objectives": runs,
            "batch_size_sweep": sweep,
            "meets_target_steady_wall": {o: r["steady_examples_per_second"] >= TARGET for o, r in runs.items()},
            "meets_target_steady_cpu_normalised": {
                o: r["steady_cpu_normalised_examples_per_second"] >= TARGET for o, r in runs.items()
            },
        },
    )


if __name__ == "__main__":
    main()
