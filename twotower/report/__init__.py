"""The operator's report: one self-contained HTML page per workspace (``twotower report``).

``write_report(settings, ws)`` gathers what the platform wrote (``collect``: gate summaries,
generation manifests, replay results, freshness, the last serving benchmark), draws it
(``plots``: matplotlib -> inline SVG) and writes ``<workspace>/reports/index.html`` plus a
copy named after the served generation's day (``report-YYYY-MM-DD.html``), both atomically.
The full update calls it after publishing, ``twotower replay`` after its run.
"""

from __future__ import annotations

from pathlib import Path


from twotower.core.config import Settings
from twotower.core.files import atomic_write_bytes
from twotower.core.workspace import Workspace

INDEX = "index.html"


def write_report(settings: Settings, ws: Workspace, *, bench_dir: Path | None = None) -> Path:
    """Write the report; returns the path of ``reports/index.html``. ``bench_dir``: where the
    benchmark JSON files are (default: this checkout's ``bench/results``)."""
    from twotower.report.collect import collect
    from twotower.report.page import render

    src = collect(ws, bench_dir)
    ws.reports_dir.mkdir(parents=True, exist_ok=True)
    page = render(src, ws.root, ws.reports_dir).encode()
    index = ws.reports_dir / INDEX
    atomic_write_bytes(index, page)
    index.chmod(0o644)  # a page to share (atomic_write_bytes creates 0600 files)
    day = next((g["day"] for g in src.generations if g["id"] == src.current), None)
    if day:
        dated = ws.reports_dir / f"report-{day}.html"
        atomic_write_bytes(dated, page)
        dated.chmod(0o644)
    return index


__all__ = ["write_report"]
