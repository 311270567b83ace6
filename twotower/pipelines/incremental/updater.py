"""``twotower incremental``: the loop that turns stream events into fresh online embeddings.

One cycle: follow ``CURRENT`` (a new generation restarts the chain), read up to ``max_events``
entries after the chain's position, train on them, and - after every micro-batch, or every
``publish_every`` seconds - publish:

1. push the trained users' ID embeddings (newest wins) into the generation's online slot,
2. read them back (freshness; a push that did not land is counted, never silently assumed),
3. persist the chain's state together with the stream position it includes (one rename),
4. commit that position for the consumer group.

A crash anywhere before 3 replays the unpersisted micro-batches on restart, from the same
position with the same seeds, so they train exactly once in effect; their pushes are idempotent
(same stamps: not newer, skipped). A crash between 3 and 4 only leaves the group's committed
position behind the state's, and the restart re-commits it. The state's position is the truth.

One-shot (default): drain what is on the stream, publish, exit. ``follow``: keep polling;
SIGTERM/SIGINT end it after the current cycle.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pandas as pd

from twotower.core.timeutil import to_us
from twotower.core.files import Timeout, atomic_write_bytes, file_lock
from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.encode import id_keys
from twotower.pipelines.incremental.chain import Chain
from twotower.pipelines.incremental.examples import OfflineTables, RecentRankedOut, micro_batch_examples
from twotower.pipelines.incremental.freshness import FreshnessRecorder
from twotower.pipelines.incremental.push import OnlineEmbeddings, OnlineHistory, landed
from twotower.pipelines.incremental.summary import IncrementalSummary, Totals
from twotower.stream import APPENDED_AT, open_stream
from twotower.core.workspace import Workspace

logger = logging.getLogger(__name__)



@contextmanager
def single_updater(ws: Workspace) -> Iterator[None]:
    """One updater per workspace: pushes are read-compare-write, so there must be one writer."""
    path = ws.incremental_dir / ".lock"
    holder = ws.incremental_dir / ".lock.pid"
    try:
        lock = file_lock(path, wait=False).acquire()
    except Timeout:
        pid = holder.read_text().strip() if holder.is_file() else "?"
        raise UserError(f"another `twotower incremental` holds {path} (pid {pid or '?'})") from None
    with lock:
        atomic_write_bytes(holder, str(os.getpid()).encode())
        yield


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:
        signal.signal(s, lambda *_: stop.set())
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Updater:
    def __init__(self, settings: Settings, ws: Workspace):
        self.settings, self.ws = settings, ws
        self.cfg = settings.incremental
        self.group = settings.stream.group
        self.stream = open_stream(settings, ws)
        self.online = OnlineEmbeddings(settings, ws)
        self.history: OnlineHistory | None = None  # the chain's generation declares features.history_view
        self.clicked: list[pd.DataFrame] = []  # clicks since the last publish, for the history view
        self.tables: OfflineTables | None = None  # of the chain's generation's feature spec
        self.freshness = FreshnessRecorder(ws.stream_dir / "freshness.json", self.cfg.freshness_window)
        self.totals = Totals()
        self.chain: Chain | None = None
        self.context: RecentRankedOut | None = None
        self.read_position: str | None = None  # position after what was trained (>= chain.position)
        self.last_publish: dict = {}

    # --- chain ----------------------------------------------------------------------------
    def follow_generation(self) -> bool:
        """(Re)open the chain of the served generation; True if it changed."""
        manifest = gens.current(self.ws)
        if manifest is None:
            raise UserError(f"no generation published in {self.ws.generations_dir}: run `twotower full-update DAY` first")
        if self.chain is not None and self.chain.generation == manifest.id:
            return False
        if self.chain is not None:
            logger.info(f"incremental: {manifest.id} was published; dropping the chain of {self.chain.generation}")
        self.chain = Chain.open(self.settings, self.ws, manifest, self.stream)
        self.tables = OfflineTables(self.chain.full.spec.bind(self.ws.root))
        spec = self.chain.full.spec
        self.history = OnlineHistory(self.settings, self.online.store, spec) if spec.history_view else None
        self.clicked = []
        self.totals.chains_started += 1
        self.read_position = self.chain.position
        self.context = RecentRankedOut(
            self.cfg.hard_negative_lookback, self.stream.read_before(self.chain.position, self.cfg.hard_negative_lookback)
        )
        if self.stream.committed(self.group) != self.chain.position:
            self.stream.commit(self.group, self.chain.position)
        return True

    # --- one micro-batch ------------------------------------------------------------------
    def step(self, max_events: int) -> int:
        """Read and train one micro-batch; returns the entries consumed (0 at the end)."""
        chain = self.chain
        batch = self.stream.read(self.read_position, max_events)
        if not len(batch):
            return 0
        m = self.settings.model
        examples = micro_batch_examples(
            batch.events, self.context.frame(), self.tables, chain.frequencies, chain.not_before_us,
            hard_negatives=m.hard_negatives_per_example,
        )  # fmt: skip
        ev = batch.events
        ts = to_us(ev["event_timestamp"])
        clicks = ev.loc[(ev["event_type"].to_numpy() == "click") & (ts >= chain.not_before_us),
                        ["user_id", "event_timestamp", APPENDED_AT]]  # fmt: skip
        chain.train(examples, clicks, batch.start)
        if self.history is not None:
            mine = (ev["event_type"].to_numpy() == "click") & (ts >= chain.not_before_us)
            self.clicked.append(pd.DataFrame({"user_id": ev["user_id"].to_numpy()[mine],
                                              "item_id": ev["item_id"].to_numpy()[mine], "event_us": ts[mine]}))  # fmt: skip
        self.context.add(batch.events)
        self.read_position = batch.end
        t = self.totals
        t.batches += 1
        t.entries += len(batch)
        t.trained_clicks += len(examples)
        user = chain.full.spec.user
        t.no_own_row_users += int((~chain.vocab.contains(id_keys(clicks["user_id"].unique(), user.id_type))).sum())
        return len(batch)

    # --- publish --------------------------------------------------------------------------
    def publish(self) -> None:
        """Push what was trained, read it back, persist state + position, commit the position."""
        chain = self.chain
        if self.read_position == chain.position:
            return
        started = time.time()
        users, table, stamps, keys = chain.publishable()
        pushed = skipped = not_landed = 0
        if len(users):
            outcome = self.online.push(users, table, stamps, chain.generation, chain.slot)
            stored = self.online.read(users, chain.slot)
            visible = time.time()
            ok = landed(chain.generation, stamps, stored["generation"].tolist(), stored["event_us"].to_numpy())
            pushed, skipped, not_landed = len(outcome.pushed), len(outcome.skipped), int((~ok).sum())
            if not_landed:
                logger.info(f"incremental: {not_landed} pushed embeddings are not visible in slot {chain.slot} "
                         f"(a newer generation's rows occupy it?)")  # fmt: skip
            event_us = np.array([chain.pending.event_us[u] for u in keys[ok].tolist()], dtype=np.int64)
            appended_us = np.array([chain.pending.appended_us[u] for u in keys[ok].tolist()], dtype=np.int64)
            now_us = int(visible * 1_000_000)
            self.freshness.observe((now_us - event_us) / 1e6, (now_us - appended_us) / 1e6)
        if self.history is not None and self.clicked:  # before the position is committed: a crash re-merges
            t_history = self.history.push(pd.concat(self.clicked, ignore_index=True))
            self.totals.history_users += t_history
            self.clicked = []
        t = self.totals
        t.publishes += 1
        t.pushed_users += pushed
        t.skipped_not_newer += skipped
        t.not_landed += not_landed
        chain.persist(self.read_position, t.as_dict())
        self.stream.commit(self.group, chain.position)
        self.last_publish = {
            "at": pd.Timestamp(started, unit="s", tz="UTC").isoformat(), "users": len(users), "pushed": pushed,
            "position": chain.position, "seconds": round(time.time() - started, 4),
        }  # fmt: skip
        data = self.freshness.write(
            generation=chain.generation, embedding_slot=chain.slot,
            stream={"type": self.stream.kind, "name": self.settings.stream.name, "group": self.group,
                    "committed": chain.position, "lag_events": self.stream.lag(chain.position)},
            totals=t.as_dict(), last_publish=self.last_publish,
        )  # fmt: skip
        lag = data["window"]["append_to_visible_seconds"]
        logger.info(
            f"publish {chain.generation}: {pushed} users pushed ({skipped} not newer), position {chain.position}; "
            f"append->visible p95 {lag['p95'] if lag['p95'] is not None else '-'}s"
        )

    def summary(self, seconds: float) -> IncrementalSummary:
        chain = self.chain
        position = chain.position if chain else None
        return IncrementalSummary(
            generation=chain.generation if chain else None, position=position, end=self.stream.end(),
            lag=self.stream.lag(position) if position is not None else None, seconds=seconds,
            totals=self.totals, freshness=self.freshness.stats(),
        )  # fmt: skip

    def close(self) -> None:
        self.stream.close()

    def loop(
        self,
        *,
        follow: bool = False,
        batch_seconds: float | None = None,
        max_events: int | None = None,
        publish_every: float | None = None,
        stop: threading.Event | None = None,
    ) -> IncrementalSummary:
        """Micro-batches until the stream is drained (or, with ``follow``, until ``stop``)."""
        cfg = self.cfg
        batch_seconds = cfg.batch_seconds if batch_seconds is None else batch_seconds
        max_events = cfg.max_events if max_events is None else max_events
        publish_every = cfg.publish_every if publish_every is None else publish_every
        if max_events < 1:
            raise UserError(f"--max-events must be >= 1, got {max_events}")
        if batch_seconds < 0 or publish_every < 0:
            raise UserError("--batch-seconds and --publish-every must be >= 0")
        stop = stop or threading.Event()
        started = time.perf_counter()
        self.follow_generation()
        last_publish = time.monotonic()
        while not stop.is_set():
            cycle = time.monotonic()
            if self.follow_generation():
                last_publish = time.monotonic()
            consumed = self.step(max_events)
            if consumed == 0:
                self.publish()
                last_publish = time.monotonic()
                if not follow:
                    break
                stop.wait(cfg.poll_seconds)
                continue
            if publish_every == 0 or time.monotonic() - last_publish >= publish_every:
                self.publish()
                last_publish = time.monotonic()
            if follow and consumed < max_events:
                stop.wait(max(0.0, batch_seconds - (time.monotonic() - cycle)))
        self.publish()
        return self.summary(time.perf_counter() - started)


def run(
    settings: Settings,
    ws: Workspace,
    *,
    follow: bool = False,
    batch_seconds: float | None = None,
    max_events: int | None = None,
    publish_every: float | None = None,
    stop: threading.Event | None = None,
) -> IncrementalSummary:
    """Consume the stream into fresh online embeddings; see the module docstring."""
    stop = stop or threading.Event()
    with single_updater(ws), _stop_on_signals(stop):
        updater = Updater(settings, ws)
        try:
            return updater.loop(
                follow=follow, batch_seconds=batch_seconds, max_events=max_events, publish_every=publish_every, stop=stop
            )
        finally:
            updater.close()
