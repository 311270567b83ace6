"""Shared fixtures: every test gets its own workspace; nothing touches the user's."""

from __future__ import annotations

import pytest

from twotower.core.config import Settings, load_settings
from twotower.research.simulate import simulate
from twotower.core.workspace import Workspace

SMALL_WORLD = dict(users=600, items=400, days=3, seed=7)


def pytest_collection_modifyitems(config, items):
    """Files marked ``slow`` first. ``make test`` hands whole files to the pytest-xdist workers
    in collection order (``--dist loadfile --no-loadscope-reorder``), so the long ones start
    early instead of one of them running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order kept


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    # A developer's own TWOTOWER_* variables must not leak into tests.
    import os

    for key in list(os.environ):
        if key.startswith("TWOTOWER_"):
            monkeypatch.delenv(key)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings(workspace=tmp_path / "ws")


@pytest.fixture
def ws(settings) -> Workspace:
    return Workspace(settings.workspace)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> tuple[Settings, Workspace]:
    """A small simulated world shared read-only by tests (copy it before writing into it)."""
    settings = load_settings(workspace=tmp_path_factory.mktemp("small_world") / "ws")
    ws = Workspace(settings.workspace)
    simulate(settings, ws, **SMALL_WORLD)
    return settings, ws


def write_default_spec(ws: Workspace) -> None:
    """The package repo's feature spec as ``feast apply`` would leave it, without running Feast
    (for tests of the layers below the feature store: validation, examples)."""
    import json

    from model_data import default_spec

    ws.feast_dir.mkdir(parents=True, exist_ok=True)
    ws.feature_spec_path.write_text(json.dumps(default_spec().to_dict()))
