"""``twotower status``: the operator's first look, on a copy of the shared two-generation world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from incremental_support import env_for, free_port, serving_g1
from serving_support import shared_world
from twotower.core import generations as gens
from twotower.pipelines.incremental import run
from twotower.stream import open_stream
from twotower.stream.emit import emit_day

TWOTOWER = str(Path(sys.executable).with_name("twotower"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_world(tmp_path_factory)


def status(settings, **env) -> tuple[int, dict, str]:
    environment = dict(env_for(settings), **env)
    got = subprocess.run([TWOTOWER, "status", "--json"], env=environment, capture_output=True, text=True, timeout=300)
    plain = subprocess.run([TWOTOWER, "status"], env=environment, capture_output=True, text=True, timeout=300)
    assert got.returncode == plain.returncode, plain.stdout + plain.stderr
    return got.returncode, {c["name"]: c for c in json.loads(got.stdout)["checks"]}, plain.stdout


def test_status_names_the_served_generation_the_gate_the_chain_and_the_online_path(shared, tmp_path):
    settings, ws, g1, _g2 = serving_g1(shared, tmp_path / "ws")
    code, checks, text = status(settings)
    assert code == 0, text
    assert checks["generation"]["data"]["id"] == g1 and checks["generation"]["ok"]
    assert checks["index"]["data"]["items"] == gens.load(ws, g1).index["items"]
    assert checks["gate"]["ok"] and checks["gate"]["data"]["day"] == str(max(ws.days()))
    assert "no incremental update" in checks["incremental"]["line"]
    assert checks["serving"]["data"]["path"] == "embedding" and checks["serving"]["ok"], checks["serving"]
    assert text.splitlines()[0].startswith("generation") and f"{g1} (day" in text

    emit_day(settings, ws, gens.load(ws, g1).day + timedelta(days=1))
    run(settings, ws)
    code, checks, text = status(settings)
    chain = checks["incremental"]
    assert code == 0 and chain["ok"] and chain["data"]["generation"] == g1, text
    assert chain["data"]["stream"]["committed"] == open_stream(settings, ws).end() and "append -> visible p95" in chain["line"]

    # The online store unreachable: the recall degrades to popular items, and status says so.
    down = {"TWOTOWER_ONLINE_STORE__TYPE": "redis", "TWOTOWER_ONLINE_STORE__REDIS_PORT": str(free_port())}
    code, checks, text = status(settings, **down)
    assert code == 1 and not checks["serving"]["ok"] and checks["serving"]["data"]["path"] != "embedding", text
    assert "online store:" in checks["serving"]["line"] and "ACT" in text


def test_status_of_an_empty_workspace_says_what_to_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTOWER_")}
    got = subprocess.run([TWOTOWER, "-w", str(tmp_path / "new"), "status"], env=env, capture_output=True, text=True)
    assert got.returncode == 1 and "nothing published: run `twotower backfill" in got.stdout, got.stdout + got.stderr
