"""What the report shows, read from the workspace and the benchmark results. No plotting here.

Every source is optional: a workspace that never validated a day, never published, never ran
the replay or the incremental updater, or a checkout without benchmark results still gets a
report, with a line saying what is missing and which command produces it. A source that
exists but cannot be read is reported the same way (with the error), never fatal: the report
is a side product of the full update and must not fail it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from twotower.core.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BENCH_DIR = REPO_ROOT / "bench" / "results"


@dataclass
class Sources:
    validation: list[dict] = field(default_factory=list)  # gate summaries, oldest day first
    generations: list[dict] = field(default_factory=list)  # manifests, oldest first
    current: str | None = None
    replay: dict | None = None
    freshness: dict | None = None
    serving: dict | None = None
    served_latency: dict | None = None  # this workspace's servers' histograms, added up (``served_latency``)
    problems: list[str] = field(default_factory=list)  # sources that exist but could not be read
    paths: dict[str, Path] = field(default_factory=dict)


def _read_json(path: Path, problems: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable ({exc})")
        return None


def _day_of(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.stem)
    except ValueError:
        return None


def collect(ws: Workspace, bench_dir: Path | None = None) -> Sources:
    from twotower.core import generations as gens

    out = Sources()
    summaries = ws.gx_dir / "summaries"
    if summaries.is_dir():
        for path in sorted(p for p in summaries.glob("*.json") if _day_of(p)):
            data = _read_json(path, out.problems)
            if data is not None:
                out.validation.append({**data, "_path": str(path)})
    try:
        out.generations = [m.model_dump(mode="json") for m in gens.listing(ws)]
        ptr = gens.read_pointer(ws)
        out.current = ptr.current if ptr else None
    except Exception as exc:  # noqa: BLE001 - a broken manifest must not break the report
        out.problems.append(f"{ws.generations_dir}: unreadable ({exc})")
    out.paths["replay"] = ws.root / "replay" / "results.json"
    out.replay = _read_json(out.paths["replay"], out.problems)
    out.paths["freshness"] = ws.stream_dir / "freshness.json"
    out.freshness = _read_json(out.paths["freshness"], out.problems)
    out.paths["serving"] = Path(bench_dir or DEFAULT_BENCH_DIR) / "serving.json"
    out.serving = _read_json(out.paths["serving"], out.problems)
    out.paths["served_latency"] = ws.serving_dir
    snapshots = [d for p in sorted(ws.serving_dir.glob("latency-*.json")) if (d := _read_json(p, out.problems))]
    out.served_latency = served_latency(snapshots) if snapshots else None
    return out


def served_latency(snapshots: list[dict]) -> dict:
    """The latency snapshots of every server process (``serving.metrics.LatencySnapshots``)
    added up: one histogram per HTTP route and per recall stage, with the processes counted."""
    merged: dict = {"processes": len(snapshots), "written_at": max(str(s.get("written_at", "")) for s in snapshots),
                    "generations": sorted({str(s["generation"]) for s in snapshots if s.get("generation")}),
                    "http": {}, "stages": {}}  # fmt: skip
    for snap in snapshots:
        for part in ("http", "stages"):
            for name, h in (snap.get(part) or {}).items():
                into = merged[part].setdefault(name, {"le": h["le"], "buckets": [0] * len(h["le"]), "count": 0, "sum": 0.0})
                if into["le"] != h["le"]:
                    continue  # another bucket layout (another version): not added
                into["buckets"] = [a + b for a, b in zip(into["buckets"], h["buckets"])]
                into["count"] += h["count"]
                into["sum"] += h["sum"]
    return merged


def quantile(h: dict, q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram, linear within its bucket (as Prometheus'
    ``histogram_quantile``); None without observations, the largest finite bound above it."""
    total = h["buckets"][-1] if h["buckets"] else 0
    if total == 0:
        return None
    rank, low, below = q * total, 0.0, 0
    for bound, cum in zip(h["le"], h["buckets"]):
        if cum >= rank:
            if bound == "+Inf":
                return low
            high = float(bound)
            return low + (high - low) * (rank - below) / max(cum - below, 1)
        low, below = (float(bound) if bound != "+Inf" else low), cum
    return low


def http_runs(serving: dict) -> dict[str, list[dict]]:
    """Load runs of the HTTP benchmark by configuration (``workers_N``; older files: one list)."""
    http = serving.get("http") or {}
    if isinstance(http.get("runs"), list):
        return {f"workers_{http.get('workers', 1)}": http["runs"]}
    return {name: v["runs"] for name, v in http.items() if isinstance(v, dict) and isinstance(v.get("runs"), list)}


def freshness_buckets(freshness: dict, kind: str) -> tuple[list[str], list[int]] | None:
    """Per-bucket counts (not cumulative) of one lag kind: (labels, counts)."""
    hist = (freshness.get("histogram") or {})
    le, h = hist.get("le"), hist.get(kind)
    if not le or not h or len(h.get("buckets", [])) != len(le):
        return None
    cum = h["buckets"]
    counts = [cum[0]] + [b - a for a, b in zip(cum, cum[1:])]
    labels, low = [], "0"
    for bound in le:
        labels.append(f"{low}–{_secs(bound)}" if bound != "+Inf" else f">{low}")
        low = _secs(bound) if bound != "+Inf" else low
    return labels, counts


def _secs(v) -> str:
    v = float(v)
    if v >= 3600:
        return f"{v / 3600:g}h"
    if v >= 60:
        return f"{v / 60:g}m"
    return f"{v:g}s"
