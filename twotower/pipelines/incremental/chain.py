"""One generation's incremental chain: its model, its durable state, its stream position.

A chain belongs to exactly one published generation G (DESIGN invariant 4):

* **Start.** From G's full checkpoint. Users in the offline users table that G has no row for
  (signed up after G's day) get their own row, initialised from their OOV row - exactly the
  vector serving uses for them until now - so their clicks personalise *their* vector and they
  are pushed like everyone else. The chain's stream position starts just before the first
  entry whose event time is at or after the end of G's day: everything earlier is in G already,
  later events (even ones a previous chain consumed) are what G has not seen.
* **Training.** Only the ID tables train (``tfrs_models.training.IncrementalTrainer`` freezes
  the rest); micro-batches in stream order, examples in time order inside each. Steps run
  eagerly with a seed derived from (G, the batch's start position): a micro-batch replayed after
  a crash trains bit-for-bit what an uninterrupted run trained, so "resume" and "never stopped"
  end in the same embeddings.
* **Users without a row** (signed up after the chain started) train through the shared OOV
  rows and are not pushed: an OOV row is many users' vector, not theirs. Serving gives them
  G's OOV row + their profile (invariant 8); the next full update gives them a row.
* **End.** When another generation is published the chain is dropped with its state; it is
  never a full update's starting point.
"""

from __future__ import annotations

import logging
import shutil
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

import tensorflow as tf

from materialize.sources import tower_frame
from tfrs_models.checkpoint import grown_from_oov, load_model
from tfrs_models.model import build_model
from tfrs_models.records import example_columns, frame_to_features
from tfrs_models.training import IncrementalTrainer
from tfrs_models.vocab import IdVocab
from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.core.encode import id_array, id_keys
from twotower.core.timeutil import datetime_us, to_us
from twotower.core.workspace import Workspace
from twotower.pipelines.day import day_bounds
from twotower.pipelines.incremental.push import SECOND
from twotower.pipelines.incremental.state import ChainState, StateStore
from twotower.stream import APPENDED_AT, EventStream

logger = logging.getLogger(__name__)

USER_VOCAB, USER_LABELS, USER_TABLE, ITEM_TABLE, STAMPS = "user_vocab", "user_labels", "user_table", "item_table", "stamp_us"


def find_start(stream: EventStream, cut_us: int) -> str:
    """The position just before the first entry with event time >= ``cut_us`` (else the end)."""
    position = stream.beginning
    for batch in stream.scan(stream.beginning):
        ts = to_us(batch.events["event_timestamp"])
        hits = np.nonzero(ts >= cut_us)[0]
        if len(hits):
            return batch.position_before(int(hits[0]))
        position = batch.end
    return position


@dataclass
class Pending:
    """Users trained since the last publish: newest click time and when the stream got it."""
    event_us: dict[int, int] = field(default_factory=dict)
    appended_us: dict[int, int] = field(default_factory=dict)

    def add(self, users: np.ndarray, event_us: np.ndarray, appended_us: np.ndarray) -> None:
        for u, t, a in zip(users.tolist(), event_us.tolist(), appended_us.tolist()):
            if t >= self.event_us.get(u, t):
                self.event_us[u], self.appended_us[u] = t, a

    def __len__(self) -> int:
        return len(self.event_us)


class Chain:
    def __init__(self, settings: Settings, manifest: gens.Manifest, full, model, store: StateStore, state: ChainState):
        self.settings, self.manifest, self.full = settings, manifest, full
        self.model, self.store, self.state = model, store, state
        self.trainer = IncrementalTrainer(model, settings.model)
        self.optimizer = model.optimizer
        self.optimizer.build(model.trainable_variables)
        for i, var in enumerate(self.optimizer.variables):
            saved = state.arrays.get(f"opt/{i:03d}")
            if saved is not None:
                var.assign(saved)
        self.vocab = model.user_vocab
        self.stamps = state.arrays[STAMPS]
        self.pending = Pending()
        self.not_before_us = datetime_us(day_bounds(manifest.day)[1])
        self.frequencies = pd.DataFrame({"item_id": full.catalog.item_id, "prob": full.catalog.prob})

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def generation(self) -> str:
        return self.manifest.id

    @property
    def slot(self) -> int:
        return self.manifest.embedding_slot

    @property
    def position(self) -> str:
        """The position the *durable* state includes (what a restart resumes from)."""
        return self.state.position

    @classmethod
    def open(cls, settings: Settings, ws: Workspace, manifest: gens.Manifest, stream: EventStream) -> "Chain":
        """Resume G's chain from its state, or start it from G's full model."""
        discard_other_chains(ws, manifest.id)
        full = load_model(gens.directory(ws, manifest.id) / manifest.paths["checkpoint"], settings.model)
        store = StateStore(ws.incremental_dir / manifest.id, settings.incremental.compact_every)
        if store.exists():
            state = store.load()
            model = model_from_state(full, settings, state)
            logger.info(f"incremental: resuming the chain of {manifest.id} at stream position {state.position} "
                f"(delta {state.seq})")  # fmt: skip
            return cls(settings, manifest, full, model, store, state)
        user = full.spec.bind(ws.root).user
        labels = tower_frame(user)[user.join_key].to_numpy()
        model = grown_model(full, settings, id_keys(labels, user.id_type, "users"), id_array(labels))
        cut = day_bounds(manifest.day)[1]
        start = find_start(stream, datetime_us(cut))
        arrays = {USER_VOCAB: model.user_vocab.ids.copy(), STAMPS: np.zeros(len(model.user_vocab), np.int64)}
        state = ChainState(manifest.id, start, arrays, 0, {
            "start": start, "created_at": datetime.now(timezone.utc).isoformat(),
            "own_rows_added": int(len(model.user_vocab) - len(full.user_vocab)),
        })  # fmt: skip
        chain = cls(settings, manifest, full, model, store, state)
        chain.state.arrays = chain.arrays()
        store.create(chain.state)
        logger.info(f"incremental: new chain of {manifest.id} (slot {manifest.embedding_slot}) from stream position "
            f"{start} (events from {cut.isoformat()} on); {state.meta['own_rows_added']:,} newer users get own rows")  # fmt: skip
        return chain

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            USER_VOCAB: self.vocab.ids,
            USER_LABELS: self.vocab.labels,
            USER_TABLE: self.model.user_ids.embeddings.numpy(),
            ITEM_TABLE: self.model.item_ids.embeddings.numpy(),
            STAMPS: self.stamps,
        }
        for i, var in enumerate(self.optimizer.variables):
            out[f"opt/{i:03d}"] = var.numpy()
        return out

    # --- training -------------------------------------------------------------------------
    def seed(self, start: str) -> int:
        return zlib.crc32(f"{self.generation}|{start}".encode()) & 0x7FFFFFFF

    def train(self, examples: pd.DataFrame, clicks: pd.DataFrame, start: str) -> float:
        """Train on a micro-batch's examples (time order); returns the mean loss."""

        if examples.empty:
            return 0.0
        m = self.settings.model
        features = frame_to_features(examples, example_columns(self.model.spec, m.hard_negatives_per_example))
        losses = self.trainer.train_micro_batch(features, self.settings.incremental.batch_size, self.seed(start))
        newest = clicks.assign(_t=to_us(clicks["event_timestamp"]), _a=to_us(clicks[APPENDED_AT]))
        newest = newest.sort_values("_t", kind="stable").groupby("user_id").tail(1)
        users = id_keys(newest["user_id"].to_numpy(), self.model.spec.user.id_type, "events column 'user_id'")
        own = self.vocab.contains(users)
        rows = self.vocab.rows(users[own])
        self.stamps[rows] = next_stamps(self.stamps[rows], newest["_t"].to_numpy(np.int64)[own])
        self.pending.add(users[own], newest["_t"].to_numpy(np.int64)[own], newest["_a"].to_numpy(np.int64)[own])
        return float(np.mean(losses))

    def publishable(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user IDs as given, their ID embeddings, their stamps, their ID keys) of the users
        trained since the last publish (``pending`` is keyed by ID key)."""
        keys = np.fromiter(self.pending.event_us.keys(), dtype=np.int64, count=len(self.pending))
        rows = self.vocab.rows(keys)
        table = tf.gather(self.model.user_ids.embeddings, rows).numpy()
        return self.vocab.labels[rows], table, self.stamps[rows], keys

    def persist(self, position: str, totals: dict) -> None:
        """Make the training up to ``position`` durable (state and position in one rename)."""
        self.state.arrays = self.arrays()
        self.state.position = position
        self.state.meta["totals"] = totals
        self.store.append(self.state)
        self.pending = Pending()


def next_stamps(previous_us: np.ndarray, newest_event_us: np.ndarray) -> np.ndarray:
    """The stamps of users whose embeddings just changed: their newest event time, moved to the
    next whole second when it would not be in a later second than their previous stamp.

    Newest-wins compares whole seconds (push.py); a changed embedding must therefore be stamped
    in a later second than the one it replaces, even when the user clicked twice within a
    second across two micro-batches or a late event is older than what the row already holds.
    """
    prev_s = previous_us // SECOND
    return np.where(newest_event_us // SECOND > prev_s, newest_event_us, (prev_s + 1) * SECOND)


def discard_other_chains(ws: Workspace, keep: str) -> None:
    if not ws.incremental_dir.is_dir():
        return
    for d in ws.incremental_dir.iterdir():
        if d.is_dir() and d.name != keep and not d.name.startswith("."):
            shutil.rmtree(d, ignore_errors=True)
            logger.info(f"incremental: discarded the chain of {d.name} (generation {keep} is served)")


def grown_model(full, settings: Settings, user_keys: np.ndarray, user_labels: np.ndarray | None = None):
    """G's model plus own rows for the users G does not know, each a copy of its OOV row."""
    return grown_from_oov(full, settings.model, user_keys, full.catalog, user_labels)


def model_from_state(full, settings: Settings, state: ChainState):
    """G's dense weights (from its checkpoint) + the chain's ID tables (from its state)."""
    vocab = IdVocab(state.arrays[USER_VOCAB], settings.model.oov_buckets, state.arrays.get(USER_LABELS))
    model = build_model(settings.model, full.spec, vocab, full.item_vocab, full.catalog)
    for tower in ("user_tower", "item_tower"):
        getattr(model, tower).set_weights(getattr(full, tower).get_weights())
    model.user_ids.embeddings.assign(state.arrays[USER_TABLE])
    model.item_ids.embeddings.assign(state.arrays[ITEM_TABLE])
    return model
