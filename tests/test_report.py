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

# The network is off for every page: no name resolves and every proxied request goes nowhere.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9"]  # fmt: skip
# gate 1, generations 1, replay 4 (summary, by hour, timeline, new interest), freshness 1,
# the workspace's servers 1, serving benchmark 1
PLOTS = 9


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
    served_latency(ws, requests=40)
    bench = root / "bench"
    bench.mkdir()
    stage = {"p50_ms": 0.2, "p90_ms": 0.3, "p99_ms": 0.5}
    (bench / "serving.json").write_text(json.dumps({
        "when": "2026-11-29T00:00:00Z", "verdict": {"in_process_p99_ms": 1.9, "in_process_p99_met": True},
        "in_process": {"stages": {"online": stage, "tower": stage, "index": stage}, "recall_k100": stage},
        "http": {"workers_1": {"runs": [{"concurrency": c, "req_per_s": 400 + c, "p99_ms": 5 + c} for c in (1, 4, 8)]}},
    }))  # fmt: skip
    return ws, write_report(settings, ws, bench_dir=bench)


def served_latency(ws: Workspace, requests: int) -> None:
    """What a server process leaves at shutdown: serving's own histograms and snapshot writer."""
    from serving.metrics import LatencySnapshots, ServingMetrics

    metrics = ServingMetrics()
    rng = np.random.default_rng(2)
    for seconds in rng.exponential(0.0015, requests):
        metrics.latency.labels("/recall/{user_id}").observe(seconds)
        for stage, share in (("online", 0.4), ("tower", 0.1), ("index", 0.5)):
            metrics.stage.labels(stage).observe(seconds * share)
    LatencySnapshots(metrics, ws.serving_dir, 0.0, lambda: "g00002").write()


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
    served = dom[dom.index("Serving latency of this workspace"):dom.index("Serving latency (last benchmark)")]
    assert "<svg" in served and "/recall (server side)</td><td>40</td>" in served, served[:2000]
    links = re.findall(r"href=\"([^\"#]+)\"", dom)
    assert any("data_docs" in h for h in links), links
    for href in links:  # the data docs links resolve to real GX pages
        assert (path.parent / href).resolve().is_file(), href


def test_every_gate_run_links_its_suite_pages_and_they_read_offline(reported, tmp_path):
    """GX's own site index draws its table with scripts from public CDNs (empty without a
    network); the report is the index that works offline: every validated day, each suite
    linked, and each linked page shows its expectations and verdict with the network off."""
    ws, path = reported
    dom = chromium(tmp_path, "--dump-dom", path.as_uri()).stdout
    days = [d.isoformat() for d in ws.days()]
    for day in days:
        assert f"<td>{day}</td>" in dom, day
    pages = [h for h in re.findall(r"href=\"([^\"#]+)\"", dom) if "/validations/" in h]
    assert len(pages) == 6 * len(days), pages  # six suites a day
    for href in pages[:: len(pages) // 3]:
        text = chromium(tmp_path, "--dump-dom", (path.parent / href).resolve().as_uri()).stdout
        assert "Expectation Validation Result" in text and "Evaluated Expectations" in text, href
        assert re.search(r"Status:\s*(<[^>]+>\s*)*(Succeeded|Failed)", text), href


def test_a_real_server_leaves_its_latency_for_the_report(tmp_path_factory, tmp_path):
    """``twotower serve`` writes its histograms at shutdown; the report adds up every process's."""
    import httpx

    from serving_support import copy_world, shared_world, twotower_server
    from twotower.report.collect import collect

    _, ws0, ids = shared_world(tmp_path_factory)
    settings, ws = copy_world(ws0, tmp_path / "ws")
    user = int(pd.read_parquet(gens.directory(ws, ids[1]) / "user_id_embedding.parquet")["user_id"].iloc[0])
    with twotower_server(ws, tmp_path / "serve.log") as base:
        for _ in range(7):
            assert httpx.get(f"{base}/recall/{user}", params={"k": 5}, timeout=30).status_code == 200
        assert httpx.post(f"{base}/recall", json={"user_ids": [user, user], "k": 5}, timeout=30).status_code == 200
    (snapshot,) = ws.serving_dir.glob("latency-*.json")
    data = json.loads(snapshot.read_text())
    assert data["generation"] == ids[1]
    assert data["http"]["/recall/{user_id}"]["count"] == 7 and data["http"]["/recall"]["count"] == 1
    assert data["stages"]["index"]["count"] == 8  # one per recall batch
    merged = collect(ws).served_latency
    assert merged["processes"] == 1 and merged["http"]["/recall/{user_id}"]["buckets"][-1] == 7
    page = write_report(settings, ws, bench_dir=tmp_path / "no-bench").read_text()
    assert "/recall (server side)</td><td>8</td>" in page


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
                 "No freshness statistics yet", "No latency snapshot of a server yet", "No serving benchmark yet"):  # fmt: skip
        assert hint in page


def test_unreadable_source_is_listed_not_fatal(tmp_path):
    settings = load_settings(workspace=tmp_path / "ws")
    ws = Workspace(settings.workspace)
    ws.stream_dir.mkdir(parents=True)
    (ws.stream_dir / "freshness.json").write_text("{ truncated")
    page = write_report(settings, ws, bench_dir=tmp_path).read_text()
    assert "could not be read" in page and "freshness.json" in page
    assert "No freshness statistics yet" in page
