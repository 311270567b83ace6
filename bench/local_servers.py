"""Throwaway servers on loopback for benchmarks and tests: a free port, a redis-server.

The one place that starts a redis-server for a measurement or a test (no persistence unless
asked); its configuration goes in on stdin, so a password never shows in a process list.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_server(password: str | None = None, port: int | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """A redis-server on 127.0.0.1 (``port`` or a free one); yields ``(port, process)`` once it answers."""
    import redis

    port = port or free_port()
    conf = f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\n'
    if password is not None:
        conf += f"requirepass {password}\n"
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    proc.stdin.write(conf.encode())
    proc.stdin.close()
    try:
        client = redis.Redis(port=port, password=password)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"redis-server on 127.0.0.1:{port} did not answer")
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
