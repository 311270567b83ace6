"""``twotower replay``: wiring of the experiment (worlds, replay per seed, results, README).

Each seed's world lives in ``<workspace>/replay/seed-<n>/`` (its own offline store and ground
truth, written by the simulator) next to that seed's per-click table ``clicks.parquet``. A
seed whose world and settings did not change since its last run is not replayed again
(``fresh=True`` forces it), so re-rendering the report or the README table is instant.
Results: ``<workspace>/replay/results.json`` and ``results.md``; the HTML report is rewritten.
"""

from __future__ import annotations

import logging
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path


import pandas as pd
from pydantic import ValidationError

from twotower.core.config import ReplaySettings, Settings
from twotower.core.errors import UserError
from twotower.core.files import atomic_write_bytes
from twotower.core.workspace import Workspace

logger = logging.getLogger(__name__)

FORMAT = "twotower-replay/1"


def replay_dir(ws: Workspace) -> Path:
    return ws.root / "replay"


def results_path(ws: Workspace) -> Path:
    return replay_dir(ws) / "results.json"


def effective(settings: Settings, **overrides) -> ReplaySettings:
    """``settings.replay`` with the command line's options (None = keep), validated."""
    values = {**settings.replay.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return ReplaySettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(map(str, e['loc'])).replace('_', '-')} (replay.{'.'.join(map(str, e['loc']))}): "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise UserError(f"invalid replay options: {problems}") from None


def _signature(settings: Settings, cfg: ReplaySettings, seed: int) -> dict:
    from twotower.research.simulate import world_signature

    return {
        "world": world_signature(settings, cfg.users, cfg.items, cfg.days, seed),
        "model": settings.model.model_dump(mode="json"),
        "incremental_batch_size": settings.incremental.batch_size,
        "step_minutes": cfg.step_minutes,
        "format": FORMAT,
    }


def replay_one(settings: Settings, ws: Workspace, cfg: ReplaySettings, seed: int, fresh: bool):
    """(per-click table, training log, seconds it took to simulate and replay) of one seed,
    replayed now or reused from an earlier run."""
    world_ws = Workspace(replay_dir(ws) / f"seed-{seed}")
    sig = _signature(settings, cfg, seed)
    done, clicks_path = world_ws.root / "replay.json", world_ws.root / "clicks.parquet"
    if not fresh and done.is_file() and clicks_path.is_file():
        saved = json.loads(done.read_text())
        if saved.get("signature") == sig:
            logger.info(f"seed {seed}: unchanged since the last run, reusing {clicks_path}")
            return pd.read_parquet(clicks_path), saved["training"], saved.get("seconds")
    done.unlink(missing_ok=True)
    started = time.perf_counter()
    from twotower.research.replay.experiment import replay_seed  # TensorFlow: only when there is training to do
    from twotower.research.replay.world import load_world
    from twotower.research.simulate import simulate

    meta = world_ws.truth_dir / "meta.json"
    if fresh or not meta.is_file() or json.loads(meta.read_text()).get("signature") != sig["world"]:
        s = simulate(settings, world_ws, users=cfg.users, items=cfg.items, days=cfg.days, seed=seed, force=True)
        logger.info(f"seed {seed}: simulated {s.users:,} users, {s.items:,} items, {s.clicks:,} clicks over {len(s.days)} days")
    world = load_world(settings, world_ws)
    clicks, training = replay_seed(settings, world, seed=seed, step_minutes=cfg.step_minutes)
    tmp = clicks_path.with_suffix(".tmp")
    clicks.to_parquet(tmp, index=False)
    tmp.replace(clicks_path)
    seconds = round(time.perf_counter() - started, 1)
    atomic_write_bytes(done, json.dumps({"signature": sig, "training": training, "seconds": seconds}, indent=2).encode())
    return clicks, training, seconds


def command_line(cfg: ReplaySettings, readme: Path | None) -> str:
    default = ReplaySettings()
    parts = ["twotower replay", f"--days {cfg.days}", f"--seeds {cfg.seeds}"]
    for name in ("first_seed", "users", "items", "step_minutes"):
        if getattr(cfg, name) != getattr(default, name):
            parts.append(f"--{name.replace('_', '-')} {getattr(cfg, name)}")
    if readme is not None:
        parts.append(f"--readme {readme}")
    return " ".join(parts)


def run(
    settings: Settings, ws: Workspace, *, days: int | None = None, seeds: int | None = None,
    first_seed: int | None = None, users: int | None = None, items: int | None = None,
    step_minutes: int | None = None, readme: Path | None = None, fresh: bool = False, report: bool = True,
) -> dict:
    """Replay every seed, write results.json / results.md (and the report, the README block)."""
    from twotower.research.replay.results import build_results
    from twotower.research.replay.tables import readme_block, rewrite_block, results_markdown

    cfg = effective(settings, days=days, seeds=seeds, first_seed=first_seed, users=users, items=items,
                    step_minutes=step_minutes)  # fmt: skip
    if readme is not None and not Path(readme).is_file():
        raise UserError(f"--readme {readme}: no such file")
    started = time.perf_counter()
    parts, training, seconds = [], {}, {}
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        clicks, training[str(seed)], seconds[str(seed)] = replay_one(settings, ws, cfg, seed, fresh)
        parts.append(clicks)
    clicks = pd.concat(parts, ignore_index=True)
    results = build_results(clicks, cfg, settings)
    results.update({
        "format": FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(cfg, readme),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "training": training,
        # replay: simulating + replaying every seed, when it was done (a reused seed keeps its time)
        "seconds": {"replay": round(sum(v or 0.0 for v in seconds.values()), 1), "per_seed": seconds,
                    "this_run": round(time.perf_counter() - started, 1)},
    })  # fmt: skip
    atomic_write_bytes(results_path(ws), json.dumps(results, indent=2).encode())
    atomic_write_bytes(results_path(ws).with_suffix(".md"), results_markdown(results).encode())
    logger.info(f"replay: {results_path(ws)} ({results['seconds']['this_run']:.0f}s)")
    if report:
        from twotower.report import write_report

        logger.info(f"report: {write_report(settings, ws)}")
    if readme is not None:
        rewrite_block(Path(readme), readme_block(results))
        logger.info(f"readme: replay table rewritten in {readme}")
    return results
