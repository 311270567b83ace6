"""``twotower init DIR``: a workspace whose own feature repo the platform reads as it is."""

from __future__ import annotations

import subprocess

import pandas as pd

from serving_support import TWOTOWER, twotower_in_process
from twotower.core.config import load_settings
from twotower.core.workspace import Workspace
from twotower.feature_store import read_spec


def test_init_writes_a_repo_the_towers_take_and_data_that_ingests(tmp_path):
    target = tmp_path / "mine"
    out = subprocess.run([str(TWOTOWER), "init", str(target)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"twotower --workspace {target} ingest --events {target / 'data' / 'events.csv'}" in out.stdout
    assert sorted(p.name for p in (target / "feature_repo").iterdir()) == [
        ".feastignore", "entities.py", "feature_services.py", "feature_views.py", "sources.py"]

    settings = load_settings(workspace=target)  # twotower.toml: feature_repo relative to it
    assert settings.feature_repo == (target / "feature_repo").resolve()
    spec = read_spec(settings, Workspace(settings.workspace))
    assert [(f.name, f.kind) for f in spec.user.features] == [
        ("country", "categorical"), ("age", "numeric"), ("activity", "numeric"), ("interests", "multi")]
    assert [(f.name, f.kind) for f in spec.item.features] == [
        ("genre", "categorical"), ("price", "numeric"), ("topics", "multi"), ("text_vector", "vector")]
    assert (spec.user.id_type, spec.item.id_type, spec.context) == ("string", "string", ("hour", "weekday"))

    summary = twotower_in_process(target, "ingest", "--events", str(target / "data" / "events.csv"))
    assert "3 day(s) (2026-11-01..2026-11-03)" in summary
    stored = pd.read_parquet(Workspace(target).events_day_dir(pd.Timestamp("2026-11-01").date()))
    assert stored["user_id"].str.fullmatch(r"\d{6}").all()  # zero-padded IDs kept as given

    again = subprocess.run([str(TWOTOWER), "init", str(target)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "is not empty" in again.stderr
