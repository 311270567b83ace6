"""Throwaway servers on loopback for benchmarks and tests: a free port, a redis-server, a
Milvus Lite server.

The one place that starts a redis-server for a measurement or a test (no persistence unless
asked); its configuration goes in on stdin, so a password never shows in a process list.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from twotower.core.processes import wait_ready


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
        wait_ready(proc, redis.Redis(port=port, password=password).ping, f"redis-server on 127.0.0.1:{port}", 10, 0.05)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def milvus_lite_server(data_dir: Path, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``milvus-lite server`` on 127.0.0.1 over ``data_dir`` (``port`` or a free one): a Milvus
    that several processes reach by URI. Yields ``(uri, process)`` once it answers."""
    from pymilvus import MilvusClient

    port = port or free_port()
    binary = Path(sys.executable).with_name("milvus-lite")
    proc = subprocess.Popen([str(binary), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, lambda: MilvusClient(uri=uri, timeout=1).close() or True, f"milvus-lite server on {uri}", 60, 0.1)
        yield uri, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
