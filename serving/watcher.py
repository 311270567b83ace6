"""Noticing a newly published (or rolled back) generation: a cheap poll of ``CURRENT``.

Publishing and rollback replace ``generations/CURRENT`` with ``os.replace`` (new inode), so a
``stat`` every ``serving.poll_interval_s`` (default 0.5 s) detects a flip; only then is the
file read and, if it names another generation, that generation loaded beside the served one
and swapped in (``Retriever.refresh``). The poll runs in a daemon thread: request handling
never touches the filesystem. A generation that fails to load is logged and counted, the old
one keeps serving, and the load is retried after ``retry_s`` or on the next flip.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from twotower.core import generations as gens

log = logging.getLogger("serving.watcher")


def _signature(path) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class GenerationWatcher:
    def __init__(
        self,
        retriever,
        interval_s: float,
        on_swap: Callable[[str, str], None] = lambda old, new: None,
        on_error: Callable[[Exception], None] = lambda exc: None,
        retry_s: float = 10.0,
    ):
        self.retriever, self.interval_s, self.retry_s = retriever, interval_s, retry_s
        self.on_swap, self.on_error = on_swap, on_error
        self.path = retriever.ws.generations_dir / gens.POINTER
        self._seen: tuple | None = ("unchecked",)  # the first check always compares ids
        self._failed_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> tuple[str, str] | None:
        """One poll: swap if ``CURRENT`` changed (or a failed load is due for a retry)."""
        sig = _signature(self.path)
        retry = self._failed_at is not None and time.monotonic() - self._failed_at >= self.retry_s
        if sig == self._seen and not retry:
            return None
        self._seen = sig
        try:
            swapped = self.retriever.refresh()
        except Exception as exc:  # keep serving the old generation, whatever went wrong
            self._failed_at = time.monotonic()
            log.error("could not load the newly published generation: %s", exc)
            self.on_error(exc)
            return None
        self._failed_at = None
        if swapped:
            log.info("now serving %s (was %s)", swapped[1], swapped[0])
            self.on_swap(*swapped)
        return swapped

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def start(self) -> "GenerationWatcher":
        self.check()  # a flip between load and start is not missed
        self._thread = threading.Thread(target=self._run, name="generation-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
