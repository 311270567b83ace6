"""The HTML report: built from real workspace artefacts and rendered by headless Chromium.

The workspace gets a real GX gate run (summaries + data docs), generation manifests written
by ``generations.write_manifest``, replay results aggregated by the replay's own code from a
per-click table, freshness written by the incremental updater's recorder and a serving
benchmark file. Chromium must show every plot and a page that is not blank.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.research.replay.results import build_results
from twotower.research.replay.strategies import KEYS, ORACLE
from twotower.report import write_report
from twotower.research.simulate import simulate
from twotower.core.workspace import Workspace

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
PLOTS = 8  # gate 1, generations 1, replay 4 (summary, by hour, timeline, new interest), freshness 1, serving 1


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if binary is None:
        pytest.fail("headless Chromium is required for this test: apt-get install chromium")
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    proc = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def synthetic_clicks(seeds=(0, 1), days=("2026-11-02", "2026-11-03"), per_hour=30) -> pd.DataFrame:
    """A per-click table as the replay writes it: strategies of different strength, the oracle best."""
    rng = np.random.default_rng(0)
    parts = []
    for seed in seeds:
        for d, day in enumerate(days):
            day0 = int(pd.Timestamp(day, tz="UTC").value // 1000)
            n = 24 * per_hour
            t = day0 + np.sort(rng.integers(0, 24 * 3600 * 10**6, n))
            since = np.where(rng.random(n) < 0.3, day0 + 8 * 3600 * 10**6, -1)
            since = np.where(since > t, -1, since)
            frame = pd.DataFrame({"seed": seed, "day": day, "step_start_us": t - t % (3600 * 10**6), "t_us": t,
                                  "hour": (t - day0) // (3600 * 10**6), "user_id": rng.integers(1, 100, n),
                                  "item_id": rng.integers(1, 50, n), "category": 0, "since_us": since})  # fmt: skip
            for i, key in enumerate((*KEYS, ORACLE)):
                scale = 40 if key == ORACLE else 120 + 30 * i
                frame[f"rank_{key}"] = rng.exponential(scale, n).astype(np.int32)
            parts.append(frame)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    from conftest import write_default_spec
    from twotower.pipelines.incremental.freshness import FreshnessRecorder
    from validation import validate_day

    root = tmp_path_factory.mktemp("report")
    settings = load_settings(workspace=root / "ws")
    ws = Workspace(settings.workspace)
    simulate(settings, ws, users=150, items=80, days=2, seed=3)
    write_default_spec(ws)
    parent = None
    for i, day in enumerate(ws.days()):
        validate_day(settings, ws, day)
        gid = f"g{i + 1:05d}-{day}"
        stage = ws.generations_dir / gid
        (stage / "checkpoint").mkdir(parents=True)
        (stage / "checkpoint" / "weights.npz").write_bytes(b"weights")
        manifest = gens.Manifest(
            id=gid, day=day, parent=parent, embedding_slot=i % 2, paths={"checkpoint": "checkpoint"},
            metrics={"recall@10": 0.1 + i / 20, "recall@50": 0.3 + i / 20, "recall@100": 0.4 + i / 20,
                     "train_loss": 7.5 - i / 2, "train_examples": 1000.0 + i,
                     **({"parent_recall@100": 0.4} if parent else {})},
        )  # fmt: skip
        gens.write_manifest(stage, manifest)
        gens.flip(ws, gid)
        parent = gid
    results = build_results(synthetic_clicks(), settings.replay, settings)
    results["command"] = "twotower replay --days 3 --seeds 2"
    (ws.root / "replay").mkdir()
    (ws.root / "replay" / "results.json").write_text(json.dumps(results))
    recorder = FreshnessRecorder(ws.stream_dir / "freshness.json", window=100)
    rng = np.random.default_rng(1)
    recorder.observe(rng.exponential(3.0, 200), rng.exponential(0.5, 200))
    ws.stream_dir.mkdir(parents=True, exist_ok=True)
    recorder.write(generation=parent)
    bench = root / "bench"
    bench.mkdir()
    stage = {"p50_ms": 0.2, "p90_ms": 0.3, "p99_ms": 0.5}
    (bench / "serving.json").write_text(json.dumps({
        "when": "2026-11-29T00:00:00Z", "verdict": {"in_process_p99_ms": 1.9, "in_process_p99_met": True},
        "in_process": {"stages": {"online": stage, "tower": stage, "index": stage}, "recall_k100": stage},
        "http": {"workers_1": {"runs": [{"concurrency": c, "req_per_s": 400 + c, "p99_ms": 5 + c} for c in (1, 4, 8)]}},
    }))  # fmt: skip
    return ws, write_report(settings, ws, bench_dir=bench)


def test_report_files(reported):
    ws, path = reported
    assert path == ws.reports_dir / "index.html"
    served = gens.current(ws)
    dated = ws.reports_dir / f"report-{served.day}.html"
    assert dated.read_text() == path.read_text()
    page = path.read_text()
    assert not re.search(r"<script|<link|(src|href)=['\"]https?:", page)  # self-contained, no network
    assert "passed" in page and served.id in page and "twotower replay --days 3 --seeds 2" in page
    assert "event_to_visible_seconds" in page and "in_process_p99_ms" in page


def test_chromium_renders_every_plot_and_working_links(reported, tmp_path):
    ws, path = reported
    dom = chromium(tmp_path, "--dump-dom", path.as_uri()).stdout
    assert dom.count("<svg") >= PLOTS, dom.count("<svg")
    assert "Data gate" in dom and "Day replay" in dom and "Serving latency" in dom
    links = re.findall(r"href=\"([^\"#]+)\"", dom)
    assert any("data_docs" in h for h in links), links
    for href in links:  # the data docs links resolve to real GX pages
        assert (path.parent / href).resolve().is_file(), href


def test_chromium_screenshot_is_not_blank(reported, tmp_path):
    from matplotlib.image import imread

    _, path = reported
    shot = tmp_path / "report.png"
    chromium(tmp_path, "--window-size=1280,3000", "--hide-scrollbars", f"--screenshot={shot}", path.as_uri())
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1280)
    ink = (pixels < 0.9).any(axis=2)
    assert ink.mean() > 0.05, ink.mean()  # text, bars and lines, not an empty page
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50  # plots are colourful
    assert ink[2000:].any()  # the page is long enough to reach the lower plots


def test_empty_workspace_still_gets_a_report(tmp_path):
    settings = load_settings(workspace=tmp_path / "empty")
    ws = Workspace(settings.workspace)
    page = write_report(settings, ws, bench_dir=tmp_path / "no-bench").read_text()
    assert "<svg" not in page
    for hint in ("No validation run yet", "No published generation yet", "No replay results yet",
                 "No freshness statistics yet", "No serving benchmark yet"):  # fmt: skip
        assert hint in page


def test_unreadable_source_is_listed_not_fatal(tmp_path):
    settings = load_settings(workspace=tmp_path / "ws")
    ws = Workspace(settings.workspace)
    ws.stream_dir.mkdir(parents=True)
    (ws.stream_dir / "freshness.json").write_text("{ truncated")
    page = write_report(settings, ws, bench_dir=tmp_path).read_text()
    assert "could not be read" in page and "freshness.json" in page
    assert "No freshness statistics yet" in page
