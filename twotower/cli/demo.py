"""``twotower demo``: the seed's story in six chapters, on a small simulated world.

1. a world is simulated (users, items, days of feed events);
2. every day goes through the nightly full update (gate, prepare, train, export, evaluate,
   publish), warm-started from the day before;
3. ``twotower serve`` starts on a free loopback port and is asked for a user's top-k;
4. that user clicks items of a category they never clicked before (appended to the stream);
5. the intraday incremental update trains their ID embedding and pushes it to the online store;
6. the *same* HTTP request, to the same running server, now returns that category.

Idempotent: a world simulated with the same parameters is reused, published days are skipped
and a rerun's incremental update resumes its chain, so a second run tells chapters 3-6 again
with another user (``demo.json`` lists those already moved). Only the chapter lines are printed unless ``-v``.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.core.logs import PLATFORM
from twotower.core.processes import http_ok, wait_ready
from twotower.core.workspace import Workspace
from twotower.pipelines.full_update import run as full_update
from twotower.report import write_report
from twotower.research.simulate import simulate, world_signature

K = 50
CLICKS = 10  # the seed's "10 clicks in a new category"
USERS = 8  # clicking at the same time, as in a feed (and in bench/bench_new_interest.py)
MIN_ITEMS = 15  # a category this big can fill a top-k


@contextmanager
def _quiet() -> Iterator[None]:
    """The pipelines' own step lines off (the chapters summarise them), unless ``-v``."""
    if logging.getLogger("twotower").isEnabledFor(logging.DEBUG):
        yield
        return
    levels = {name: logging.getLogger(name).level for name in PLATFORM}
    for name in PLATFORM:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _world_ready(settings: Settings, ws: Workspace) -> bool:
    meta = ws.truth_dir / "meta.json"
    if not meta.exists() or not ws.users_path.exists():
        return False
    sim = settings.simulator
    wanted = world_signature(settings, sim.users, sim.items, sim.days, sim.seed)
    return json.loads(meta.read_text()).get("signature") == wanted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _server(ws: Workspace, log: Path) -> Iterator[str]:
    """``twotower serve`` on a free loopback port, as an operator would start it."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("twotower")), "-w", str(ws.root), "serve", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, http_ok(f"{base}/health"), "`twotower serve`", 120, log=log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _median(values) -> float:
    return float(pd.Series(list(values)).median())


def _categories(answer: dict, category: pd.Series) -> list[int]:
    """The category of each item of an HTTP answer, in rank order (-1: unknown item)."""
    return [int(category.get(i["item_id"], -1)) for i in answer["items"]]


def _share(answer: dict, category: pd.Series, wanted: int) -> int:
    return _categories(answer, category).count(wanted)


def _pick(ws: Workspace, served: gens.Manifest, base: str, category: pd.Series, used: set) -> list[tuple[int, dict, int]]:
    """``USERS`` users with an own ID row, each with a category they never clicked (the one least
    in their top-k), as ``bench/bench_new_interest.py`` picks; none an earlier demo run moved."""
    users = pd.read_parquet(gens.directory(ws, served.id) / served.paths["user_id_embedding"])["user_id"]
    clicks = pd.read_parquet(ws.events_dir, columns=["user_id", "item_id", "event_type"], filters=[("event_type", "==", "click")])
    clicked = clicks.assign(category=clicks["item_id"].map(category)).groupby("user_id")["category"].agg(set)
    sizes = category.value_counts()
    big = set(sizes.index[sizes >= min(MIN_ITEMS, sizes.median())])
    picked = []
    for user in [u for u in users.tolist() if u not in used][: 10 * USERS]:
        before = _get(f"{base}/recall/{user}?k={K}")
        if before["path"] != "embedding":
            continue
        counts = pd.Series(_categories(before, category)).value_counts()
        never = sorted(big - clicked.get(user, set()), key=lambda c: (counts.get(c, 0), -sizes[c], c))
        if never:
            picked.append((int(user), before, int(never[0])))
        if len(picked) == USERS:
            return picked
    if not picked:
        raise RuntimeError("no served user with a never-clicked category (world too small?)")
    return picked


def run(settings: Settings, ws: Workspace, echo: Callable[[str], None] = print) -> None:
    from twotower.pipelines.incremental import run as incremental
    from twotower.research.simulate.clicks import emit_user

    sim = settings.simulator
    chapters = 6
    if _world_ready(settings, ws):
        echo(f"[1/{chapters}] world: reusing the simulated feed in {ws.root}")
    else:
        echo(f"[1/{chapters}] world: simulating {sim.days} days of a feed, {sim.users:,} users, {sim.items:,} items (seed {sim.seed})")
        with _quiet():
            s = simulate(settings, ws, force=True)
        echo(f"      {s.events:,} events ({s.clicks:,} clicks) in the offline store")

    days = ws.days()
    echo(f"[2/{chapters}] nightly full updates: gate -> prepare -> train (warm start) -> export -> evaluate -> publish")
    for day in days:
        served = gens.current(ws)
        if served is not None and served.day >= day:
            echo(f"      {day}: already published")
            continue
        with _quiet():
            result = full_update(settings, ws, day)
        m = gens.load(ws, result.generation).metrics
        echo(f"      {day}: gate passed, {result.generation} serving; recall@100 {m.get('recall@100', 0):.3f} "
             f"(popularity {m.get('popularity_recall@100', 0):.3f}) on the day's held-out clicks")  # fmt: skip

    served = gens.current(ws)
    category = pd.read_parquet(ws.items_path, columns=["item_id", "category"]).set_index("item_id")["category"]
    with _server(ws, ws.root / "demo-serve.log") as base:
        echo(f"[3/{chapters}] serving: `twotower serve` on {base}, generation {served.id}")
        record = ws.root / "demo.json"  # users earlier runs moved: each run tells the story anew
        used = set(json.loads(record.read_text())["users"]) if record.exists() else set()
        picked = _pick(ws, served, base, category, used)
        record.write_text(json.dumps({"users": sorted(used | {u for u, _, _ in picked})}))
        user, before, new = picked[0]
        echo(f"      GET /recall/{user}?k={K}: path {before['path']}, category {new} has {_share(before, category, new)}/{K} items")

        others = f" (and {len(picked) - 1} other users, each a category new to them)" if len(picked) > 1 else ""
        echo(f"[4/{chapters}] user {user} clicks {CLICKS} items of category {new}{others}: events appended to the stream")
        clicked_at = time.time()
        with _quiet():
            for n, (u, _, c) in enumerate(picked):
                emit_user(settings, ws, u, c, CLICKS, seed=n)

        echo(f"[5/{chapters}] incremental update: ID embeddings only, dense layers frozen, pushed to the online store")
        with _quiet():
            summary = incremental(settings, ws)
        t = summary.totals
        echo(f"      {t.trained_clicks} clicks trained, {t.pushed_users} user embeddings pushed into slot {served.embedding_slot}")

        after = _get(f"{base}/recall/{user}?k={K}")
        seconds = time.time() - clicked_at
        answers = [(_share(b, category, c), _share(after if u == user else _get(f"{base}/recall/{u}?k={K}"), category, c))
                   for u, b, c in picked]  # fmt: skip
        echo(f"[6/{chapters}] the same request to the same server, {seconds:.1f} s after the clicks:")
        echo(f"      category {new}: {answers[0][0]}/{K} -> {answers[0][1]}/{K} items")
        echo(f"      {'rank':>4}  {'before':<22}{'after':<22}")
        ranked = [zip((i["item_id"] for i in a["items"]), _categories(a, category)) for a in (before, after)]
        for n, cells in enumerate(zip(*ranked), 1):
            shown = [f"item {item} (cat {cat})" + ("*" if cat == new else "") for item, cat in cells]
            echo(f"      {n:>4}  {shown[0]:<22}{shown[1]:<22}")
            if n == 10:
                break
        rose = sum(a > b for b, a in answers)
        echo(f"      all {len(answers)} users: the new category rose in {rose}; median share {_median(b for b, _ in answers)}/{K} -> "
             f"{_median(a for _, a in answers)}/{K}")
    echo(f"      (* = category {new}; top 10 of {K} shown)")
    # After the server stopped: its latency histograms (written at shutdown) are in the report.
    echo(f"report: {write_report(settings, ws)}")

