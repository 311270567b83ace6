"""Waiting for a process we started to answer: a server (``twotower serve``, redis-server,
milvus-lite) is ready when a probe succeeds, and has failed when it exits first or stays silent."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable


def wait_ready(proc: subprocess.Popen, probe: Callable[[], object], what: str, timeout: float,
               interval: float = 0.2, log: Path | None = None) -> None:  # fmt: skip
    """Return once ``probe()`` returns a true value (an exception from it means "not yet");
    RuntimeError naming ``what`` (and the tail of ``log``) if ``proc`` exits first or ``timeout``
    seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{_tail(log)}")
        try:
            if probe():
                return
        except Exception:  # noqa: BLE001 - whatever a server that is still starting answers
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout:g} s{_tail(log)}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 2.0) -> Callable[[], bool]:
    """A probe: ``GET url`` answers 200."""

    def probe() -> bool:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200

    return probe


def _tail(log: Path | None, chars: int = 3000) -> str:
    if log is None:
        return ""
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"; its log ({log}):\n{text[-chars:]}"
