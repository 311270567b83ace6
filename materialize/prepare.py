"""Prepare one day for training (Dask): point-in-time join, hard negatives, global shuffle,
TFRecord shards and the item frequency table for logQ correction.

Dataflow (one day):

    events (parquet, time order) --keep clicks + ranked_out--> shuffle on hash(request_id)
      --map_partitions(build_examples, hold out, permute, write_shard)-->
      tfrecords/DAY/shard-*.tfrecord  (+ held-out requests, item frequencies)

Rows of one request must meet in one partition (its click and its ranked-out candidates), hence
the shuffle on the request id. Its hash also scatters the day uniformly over partitions, so
each partition is a random sample of the whole day, not a slice of time; permuting rows within
a partition then gives every shard a uniformly random order, and the reader interleaves shards
on top. That is the global random shuffle the full update trains on (the seed: "random
shuffle" removes the time-of-day bias of the stream) without a second exchange of the wide
example rows between workers. Output is staged and renamed into
place with ``_SUCCESS.json`` last, so a crash leaves nothing that looks complete and a re-run
starts over; a complete day is not prepared twice.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path


import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, progress

from materialize import popularity
from materialize.examples import build_examples, item_frequencies
from materialize.sources import tower_frame, view_tables
from tfrs_models.records import empty_examples, example_columns, write_shard
from twotower.core.encode import id_keys
from twotower.core.features import FeatureSpec
from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.files import staged_dir
from twotower.core.progress import showing
from twotower.core.workspace import Workspace

logger = logging.getLogger(__name__)

SUCCESS = "_SUCCESS.json"
FREQUENCIES = "item_frequencies.parquet"
HOLDOUT = "holdout.parquet"
HOLDOUT_PARTS = "_holdout_parts"  # per-partition held-out rows, merged into HOLDOUT


@dataclass
class PreparedDay:
    day: str
    examples: int
    shards: list[str]
    frequencies: str
    clicks: int
    holdout: str
    holdout_examples: int

    @staticmethod
    def load(directory: Path) -> "PreparedDay":
        return PreparedDay(**json.loads((directory / SUCCESS).read_text()))

    def shard_paths(self, directory: Path) -> list[Path]:
        return [directory / s for s in self.shards]


def holdout_mask(request_ids: np.ndarray, share: float) -> np.ndarray:
    """Requests held out of training, chosen by a hash of the request id (stable across runs)."""
    modulus = max(2, round(1.0 / share))
    hashed = pd.util.hash_array(np.asarray(request_ids, dtype=np.int64))
    return (hashed % np.uint64(modulus)) == 0


def _prepare_partition(
    events: pd.DataFrame, spec_dict, workspace, frequencies, day, hard_negatives, holdout_share, directory, seed,
    partition_info=None,
) -> pd.DataFrame:
    """One partition of the day's requests -> one permuted TFRecord shard + its held-out rows.

    Examples are built, split and written in the same task, so the wide example rows (list
    columns, ~500 bytes each) never travel between workers: only the narrow events are shuffled.
    Each worker reads the feature views' sources itself (``materialize.sources``, once per
    process): shipping a frame with a list column (1M items' tags) from the driver meant
    pickling a million small arrays per worker - 2 min at 1M items - against ~1 s to read it.
    """
    number = partition_info["number"] if partition_info else 0
    spec = FeatureSpec.from_dict(spec_dict).bind(workspace)
    examples = build_examples(
        events, view_tables(spec.user), view_tables(spec.item), spec=spec, hard_negatives=hard_negatives, day=day,
        frequencies=frequencies,
    )  # fmt: skip
    held = holdout_mask(examples["request_id"].to_numpy(), holdout_share)
    train = examples.loc[~held]
    train = train.sample(frac=1.0, random_state=np.random.RandomState([seed, number]))
    name = f"shard-{number:05d}.tfrecord"
    count = write_shard(train, Path(directory) / name, example_columns(spec, hard_negatives))
    holdout = examples.loc[held]
    if len(holdout):
        parts = Path(directory) / HOLDOUT_PARTS
        parts.mkdir(exist_ok=True)
        holdout.to_parquet(parts / f"part-{number:05d}.parquet", index=False)
    return pd.DataFrame({"shard": [name], "examples": [count], "holdout": [len(holdout)]})


def _popularity(settings: Settings, ws: Workspace, day: date, spec: FeatureSpec, counts: pd.Series,
                item_labels: np.ndarray, stage: Path) -> None:  # fmt: skip
    """The day's decayed clicks per item (``materialize.popularity``): the state beside the day's
    examples and, if the item service declares it, the popularity view's rows."""
    taus = popularity.horizons(spec, settings.full_update.popular_decay_days)
    if not taus:
        return
    prepared = [d for d in ws.days() if d < day and (ws.tfrecords_dir(d) / SUCCESS).exists()]
    at, previous = popularity.previous_state(ws, day, taus, prepared, FREQUENCIES)
    state = popularity.advance(previous, (day - at).days if at else 0, counts, taus)
    state.to_parquet(stage / popularity.STATE, index=False)
    if spec.popularity_view:
        written = popularity.written_before(spec, day)
        rows = popularity.write_view(spec, day, state, previous if written else None, item_labels)
        logger.info(f"prepare: {day}: popularity of {len(state):,} items, {rows:,} changed rows -> {spec.popularity_view!r}")


def prepare_day(
    settings: Settings,
    ws: Workspace,
    day: date,
    client: Client,
    *,
    spec: FeatureSpec,
    seed: int = 0,
) -> PreparedDay:
    target = ws.tfrecords_dir(day)
    if (target / SUCCESS).exists():
        logger.info(f"prepare: {day} already prepared ({target})")
        return PreparedDay.load(target)
    day_dir = ws.events_day_dir(day)
    if not day_dir.is_dir():
        raise UserError(f"no events for {day} in {ws.events_dir}")

    m = settings.model
    started = time.perf_counter()
    item_ids = tower_frame(spec.item)[spec.item.join_key].to_numpy()
    events = dd.read_parquet(str(day_dir), columns=["event_id", "request_id", "user_id", "item_id", "event_type", "event_timestamp"])
    events = events[events["event_type"].isin(["click", "ranked_out"])]

    clicked = client.compute(events[events["event_type"] == "click"][["request_id", "item_id", "event_type"]]).result()
    frequencies = item_frequencies(clicked, item_ids, id_type=spec.item.id_type)
    # The clicks the model may learn from (held-out requests excluded): the popularity it is fed.
    counted = clicked.loc[~holdout_mask(clicked["request_id"].to_numpy(), settings.full_update.holdout_share), "item_id"]
    counts = pd.Series(id_keys(counted.to_numpy(), spec.item.id_type, "events column 'item_id'")).value_counts()
    frequencies["trained_clicks"] = counts.reindex(frequencies["item_id"].to_numpy(np.int64), fill_value=0).to_numpy(np.int64)
    n_parts = max(1, min(max(settings.dask.partitions, events.npartitions), len(clicked) // 2_000 or 1))
    logger.info(f"prepare: {day}: {len(clicked):,} clicks -> {n_parts} shards (read + frequencies {time.perf_counter() - started:.1f}s)")

    started = time.perf_counter()
    freq_f = client.scatter(frequencies, broadcast=True, hash=False)  # numeric columns only: cheap
    logger.info(f"prepare: item frequencies sent to the workers in {time.perf_counter() - started:.1f}s")
    by_request = events.shuffle(on="request_id", npartitions=n_parts)
    summary = pd.DataFrame({"shard": pd.Series(dtype=str), "examples": pd.Series(dtype="int64"),
                            "holdout": pd.Series(dtype="int64")})  # fmt: skip
    with staged_dir(target) as stage:
        written = by_request.map_partitions(
            _prepare_partition, spec.to_dict(), str(ws.root), freq_f, day, m.hard_negatives_per_example,
            settings.full_update.holdout_share, str(stage), seed, meta=summary,
        )  # fmt: skip
        started = time.perf_counter()
        future = client.compute(written)
        if showing():  # Dask's own bar, on a terminal only (it prints a line per update otherwise)
            progress(future, scheduler=client.scheduler.address)
        shards = future.result()
        logger.info(f"prepare: shuffle + examples + shards in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        frequencies.to_parquet(stage / FREQUENCIES, index=False)
        _popularity(settings, ws, day, spec, counts, item_ids, stage)
        parts = sorted((stage / HOLDOUT_PARTS).glob("part-*.parquet"))
        holdout = (pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts
                   else empty_examples(example_columns(spec, m.hard_negatives_per_example)))  # fmt: skip
        holdout.sort_values("event_timestamp", kind="stable").to_parquet(stage / HOLDOUT, index=False)
        shutil.rmtree(stage / HOLDOUT_PARTS, ignore_errors=True)
        result = PreparedDay(
            day=day.isoformat(),
            examples=int(shards["examples"].sum()),
            shards=sorted(shards["shard"].tolist()),
            frequencies=FREQUENCIES,
            clicks=len(clicked),
            holdout=HOLDOUT,
            holdout_examples=len(holdout),
        )
        (stage / SUCCESS).write_text(json.dumps(asdict(result), indent=2))
    logger.info(
        f"prepare: wrote {result.examples:,} training examples in {len(result.shards)} shards "
        f"and {result.holdout_examples:,} held-out examples to {target} (held-out merge {time.perf_counter() - started:.1f}s)"
    )
    return result
