"""The two-tower recall channel in-process: user IDs -> top-k items of one generation.

``Retriever`` owns the loaded generation and the online reader. A request leases the current
generation once at its start and uses only it; ``swap`` replaces the reference in one
assignment and retires the old generation, which is released when its last lease ends. The
HTTP app, ``twotower recall`` and the benchmark all go through ``recall_batch``. When the
online store cannot be read the batch is answered from the generation's popular items, marked
``degraded`` (serving/online_health.py).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from serving import generation as loaded
from serving.online import OnlineRows, OnlineStoreError
from serving.online_health import OnlineHealth
from serving.recall import POPULAR, Recall, plan, unseen, user_vectors
from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.workspace import Workspace
from twotower.index.milvus_index import IndexUnavailable


@dataclass
class BatchResult:
    recalls: list[Recall]
    generation: str
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    mismatched: int = 0  # embeddings found but stamped by another generation
    degraded: str | None = None  # why the online store was not used (every user took ``popular``)
    store_failed: bool = False  # this batch's online read failed (not just skipped during an outage)


class Retriever:
    def __init__(self, settings: Settings, ws: Workspace, reader, generation: loaded.LoadedGeneration):
        self.settings, self.ws, self.reader = settings, ws, reader
        self._current = generation
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self.swaps = 0
        self.online_health = OnlineHealth(settings.serving.online_retry_s, settings.online_store.type)

    @classmethod
    def open(cls, settings: Settings, ws: Workspace, store=None) -> "Retriever":
        """Load the served generation and connect to the online store of the settings."""
        from serving.online import bound_waits, reader
        from twotower import feature_store

        s = settings.serving
        gen = loaded.load_current(ws, verify=s.verify_checksums, warm=s.warm_index)
        store = store if store is not None else feature_store.store(settings, ws)
        bound_waits(store, settings.online_store.timeout_s)
        return cls(settings, ws, reader(store, s.online_read), gen)

    # --- generation handling -----------------------------------------------------------------
    @property
    def current(self) -> loaded.LoadedGeneration:
        return self._current

    @contextmanager
    def lease(self) -> Iterator[loaded.LoadedGeneration]:
        """The current generation, held for the whole request (never released under it)."""
        with self._lock:
            gen = self._current
            gen.acquire()
        try:
            yield gen
        finally:
            gen.release()

    def swap(self, new: loaded.LoadedGeneration) -> loaded.LoadedGeneration:
        """Serve ``new`` from the next request on; the old one is released once idle."""
        with self._lock:
            old, self._current = self._current, new  # the one switch requests can observe
            self.swaps += 1
        old.retire()
        return old

    def refresh(self) -> tuple[str, str] | None:
        """If ``CURRENT`` names another generation, load it beside the old one and swap.

        Returns ``(old_id, new_id)`` after a swap, None if nothing changed. Loading happens
        while the old generation keeps serving; a generation that fails to load raises and
        the old one stays.
        """
        with self._refresh_lock:
            ptr = gens.read_pointer(self.ws)
            if ptr is None or ptr.current == self._current.id:
                return None
            s = self.settings.serving
            new = loaded.load(self.ws, gens.load(self.ws, ptr.current), verify=s.verify_checksums, warm=s.warm_index)
            old = self.swap(new)
            return old.id, new.id

    def close(self) -> None:
        self._current.retire()

    # --- recall ---------------------------------------------------------------------------
    def check_k(self, k: int) -> int:
        if not 1 <= k <= self.settings.serving.max_k:
            raise UserError(f"k must be between 1 and serving.max_k={self.settings.serving.max_k}, got {k}")
        return k

    def recall(self, user_id, k: int | None = None, hour: int | None = None, exclude_seen: bool | None = None) -> Recall:
        return self.recall_batch([user_id], k, hour, exclude_seen).recalls[0]

    def recall_batch(self, user_ids: Sequence, k: int | None = None, hour: int | None = None,
                     exclude_seen: bool | None = None) -> BatchResult:  # fmt: skip
        """Top-k of each user, all from one generation: one online read, one tower forward.

        ``user_ids`` as the user entity declares them (int or str); ``hour``: the request's hour
        of day (default: now, UTC); ``exclude_seen`` (default ``serving.exclude_seen``): leave
        out the items the user clicked recently (``features.history_view``), still k of them."""
        k = self.check_k(self.settings.serving.default_k if k is None else k)
        exclude = self.settings.serving.exclude_seen if exclude_seen is None else exclude_seen
        now = time.gmtime()
        context = {"hour": now.tm_hour if hour is None else hour, "weekday": now.tm_wday}
        with self.lease() as gen:
            if exclude and not gen.tower.spec.history_view:
                raise UserError(f"exclude_seen: generation {gen.id} has no history view: the feature repo's user "
                                f"service must include {self.settings.features.history_view!r} (features.history_view)")  # fmt: skip
            return self._recall(gen, user_ids, k, context, exclude)

    def _read_online(self, user_ids: Sequence, gen: loaded.LoadedGeneration,
                     history: bool = False) -> tuple[OnlineRows, str | None, bool]:  # fmt: skip
        """(rows, why degraded or None, whether a read failed now); never raises for the store."""
        health = self.online_health
        spec = gen.tower.spec
        if not health.should_try():
            return OnlineRows.missing(user_ids, spec), health.reason(), False
        try:
            rows = self.reader.read(user_ids, gen.slot, spec, history)
        except OnlineStoreError as exc:
            return OnlineRows.missing(user_ids, spec), health.failed(str(exc)), True
        health.succeeded()
        return rows, None, False

    def check_online(self) -> dict:
        """Health of the online store for ``/health``: a one-key read unless a retry is not due."""
        if self.online_health.should_try():
            gen = self._current
            self._read_online(["0"] if gen.tower.spec.user.id_type == "string" else [0], gen)
        return self.online_health.describe()

    def _recall(self, gen: loaded.LoadedGeneration, user_ids: Sequence, k: int, context: dict[str, int],
                exclude: bool = False) -> BatchResult:  # fmt: skip
        t0 = time.perf_counter()
        online, degraded, failed = self._read_online(user_ids, gen, exclude)
        t1 = time.perf_counter()
        inputs = plan(online, gen.id, gen.tower, self.settings.serving.cold_without_profile)
        vectors = user_vectors(online, inputs, gen.tower, context)
        t2 = time.perf_counter()
        channel = self.settings.serving.channel
        recalls: list[Recall] = []
        j = 0
        for i, uid in enumerate(online.user_ids):
            path = inputs.paths[i]
            seen = online.histories[i] if exclude else None
            want = k + len(seen) if seen else k
            if path != POPULAR:
                try:
                    ids, scores = gen.index.query(vectors[j], want)
                    for _ in range(3 if seen else 0):  # the ANN may answer short of k once seen items are gone
                        if len(unseen(ids, scores, seen, k)[0]) == k:
                            break
                        want *= 2
                        ids, scores = gen.index.query(vectors[j], want)
                except IndexUnavailable as exc:  # an index server (Milvus) down: popular items, like a store outage
                    path, degraded = POPULAR, degraded or f"item index unavailable: {exc}"
                j += 1
            if path == POPULAR:
                ids, scores = gen.popular_ids[:want], gen.popular_scores[:want]
            if seen:
                ids, scores = unseen(ids, scores, seen, k)
            recalls.append(Recall(uid, ids, scores, gen.id, channel, path, degraded))
        t3 = time.perf_counter()
        timings = {"online": t1 - t0, "tower": t2 - t1, "index": t3 - t2}
        return BatchResult(recalls, gen.id, timings, inputs.mismatched, degraded, failed)


def pinned(settings: Settings, ws: Workspace, generation_id: str, reader) -> Retriever:
    """A retriever fixed on one generation (tests, debugging): no swaps."""
    s = settings.serving
    gen = loaded.load(ws, gens.load(ws, generation_id), verify=s.verify_checksums, warm=False)
    return Retriever(settings, ws, reader, gen)
