"""``twotower incremental --follow`` as its own process, for the benchmarks that measure it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TWOTOWER = str(Path(sys.executable).with_name("twotower"))


@contextmanager
def follower(workspace: Path, *args: str, start_timeout: float = 180) -> Iterator[list[str]]:
    """Start the updater on ``workspace``, yield its output lines (still growing) once its chain
    has started, and stop it (SIGTERM, then SIGKILL) on the way out."""
    env = dict(os.environ, TWOTOWER_WORKSPACE=str(workspace))
    proc = subprocess.Popen(
        [TWOTOWER, "incremental", "--follow", *args], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "new chain of" in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not ready.wait(start_timeout):
            raise RuntimeError("updater did not start:\n" + "".join(lines[-30:]))
        yield lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
