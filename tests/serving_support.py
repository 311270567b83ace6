"""Helpers of the serving tests: a world with two published generations, real servers on ports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from bench.local_servers import free_port  # noqa: F401  (tests import it from here)
from twotower.core.config import Settings, load_settings
from twotower.core.processes import http_ok, wait_ready
from twotower.core.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
TWOTOWER = Path(sys.executable).with_name("twotower")
FEAST = Path(sys.executable).with_name("feast")
DAYS = (date(2026, 11, 1), date(2026, 11, 2))
WORLD = dict(users=400, items=300, days=2, seed=11)


def _world_settings(root: Path) -> Settings:
    # Serving is under test, not the promotion check: day 2 is published whatever its recall.
    return load_settings(workspace=root, full_update={"promotion_min_ratio": 0.0})


def build_two_generations(root: Path) -> tuple[Settings, Workspace, list[str]]:
    """simulate + two real full updates: generations g1 (day 1) and g2 (day 2, served)."""
    from twotower.pipelines import full_update
    from twotower.research.simulate import simulate

    settings = _world_settings(root)
    ws = Workspace(settings.workspace)
    simulate(settings, ws, **WORLD)
    ids = [full_update.run(settings, ws, day).generation for day in DAYS]
    return settings, ws, ids


_SHARED: dict = {}


def shared_world(tmp_path_factory) -> tuple[Settings, Workspace, list[str]]:
    """The two-generation world, built once per test session for every serving module - once
    for all pytest-xdist workers too: the first builds it under a file lock in the session's
    common temporary directory, the others wait for it and read it.

    Read-only for tests: anything that writes (online rows, CURRENT) works on ``copy_world``.
    """
    if "world" not in _SHARED:
        import json

        from filelock import FileLock

        base = tmp_path_factory.getbasetemp()
        root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "serving_world"
        done = root / "generations.json"
        with FileLock(f"{root}.lock"):
            if not done.exists():
                shutil.rmtree(root, ignore_errors=True)
                _, _, ids = build_two_generations(root / "ws")
                done.write_text(json.dumps(ids))
        settings = _world_settings(root / "ws")
        _SHARED["world"] = settings, Workspace(settings.workspace), json.loads(done.read_text())
    return _SHARED["world"]


def copy_world(ws: Workspace, target: Path) -> tuple[Settings, Workspace]:
    """A private copy (online store included); its feature_store.yaml is re-rendered for it."""
    from twotower import feature_store

    shutil.copytree(ws.root, target)
    settings = load_settings(workspace=target)
    copy = Workspace(settings.workspace)
    feature_store.prepare(settings, copy)
    return settings, copy


@contextmanager
def running(cmd: list[str], health_url: str, log: Path, cwd: Path = REPO, env: dict | None = None, timeout: float = 90):
    """Start a server process, wait until ``health_url`` answers 200, stop it afterwards."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env or dict(os.environ), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, http_ok(health_url), f"server ({health_url})", timeout, log=log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def twotower_server(ws: Workspace, log: Path):
    """``twotower serve`` on a free port of 127.0.0.1 (the default host); yields the base URL."""
    port = free_port()
    env = dict(os.environ, TWOTOWER_WORKSPACE=str(ws.root), TWOTOWER_SERVING__POLL_INTERVAL_S="0.2")
    base = f"http://127.0.0.1:{port}"
    with running([str(TWOTOWER), "serve", "--port", str(port)], f"{base}/health", log, env=env):
        yield base


@contextmanager
def feast_server(settings: Settings, ws: Workspace, log: Path):
    """Feast's own feature server over the same online store; yields the base URL."""
    from twotower import feature_store

    port = free_port()
    env = feature_store.feast_env(settings, ws)
    cmd = [str(FEAST), "-f", str(ws.feature_store_yaml), "serve", "-h", "127.0.0.1", "-p", str(port)]
    base = f"http://127.0.0.1:{port}"
    with running(cmd, f"{base}/health", log, cwd=feature_store.FEATURE_REPO, env=env, timeout=120):
        yield base


def twotower_in_process(ws: Path, *args: str) -> str:
    """``twotower --workspace WS ARGS`` through the same Typer app, in this process: what a user
    runs, minus the 10-13 s a fresh interpreter spends importing TensorFlow, GX and Feast (for the
    tests whose subject is the data path; output and exit codes of the real executable are
    tested by running it). No TWOTOWER_* of the test process; the logging, warnings and
    environment the command sets up are put back afterwards. Returns its stdout."""
    import logging
    import warnings

    from typer.testing import CliRunner

    from twotower.cli import app

    environ = dict(os.environ)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: lg.level for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    showwarning = warnings.showwarning  # logs.configure routes warnings through logging
    try:
        with warnings.catch_warnings():
            result = CliRunner().invoke(app, ["--workspace", str(ws), *args], env={k: None for k in environ if k.startswith("TWOTOWER_")})
    finally:
        os.environ.clear()
        os.environ.update(environ)
        root.handlers[:], root.level = handlers, level
        logging.captureWarnings(False)
        warnings.showwarning = showwarning
        for name, lg in logging.Logger.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))
    assert result.exit_code == 0 and result.exception is None, (
        f"twotower {' '.join(args)} exited {result.exit_code} ({result.exception!r}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def twotower_cli(ws: Path, *args: str, timeout: float = 900) -> str:
    """``twotower --workspace WS ARGS`` as a user runs it (no TWOTOWER_* of the test process); its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTOWER_")}
    proc = subprocess.run([str(TWOTOWER), "--workspace", str(ws), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, f"twotower {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout
