"""The user's own feature repo drives the towers, with no code change (issue: schema-driven).

A repo written by hand (tests/own_repo_support.py: String join keys, one feature of each kind
on each side, its own names for the services and the embedding view) and an events file go
through the CLI as a user runs it: ingest -> full update (two days, the second warm-started)
-> serve over HTTP -> emit + incremental push. Checked: the IDs come back exactly as given,
each declared feature reaches its tower, the push moves the member's served vector.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import httpx
import numpy as np
import pandas as pd
import pytest

import own_repo_support as own
from serving_support import twotower_in_process as cli, twotower_server
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.core.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    paths = own.write(tmp_path_factory.mktemp("own_repo"))
    ws = paths["ws"]
    out = {"ingest": cli(ws, "ingest", "--events", str(paths["events"]))}
    for day in own.DAYS[:2]:
        out[str(day)] = cli(ws, "full-update", str(day))
    settings = load_settings(workspace=ws)
    return settings, Workspace(settings.workspace), paths, out


def test_two_full_updates_publish_a_warm_started_chain(world):
    settings, ws, _, out = world
    assert "events: " in out["ingest"] and "3 day(s)" in out["ingest"]
    g1, g2 = [m for m in gens.listing(ws)]
    assert (g2.parent, gens.read_pointer(ws).current) == (g1.id, g2.id)
    training = json.loads((gens.directory(ws, g2.id) / "training.json").read_text())
    assert training["warm_start_from"] == g1.id
    spec = json.loads(ws.feature_spec_path.read_text())
    assert [f["name"] for f in spec["user"]["features"]] == ["home_region", "birth_year", "spend", "badges"]
    assert [(f["name"], f["kind"]) for f in spec["item"]["features"]] == [
        ("seller", "categorical"), ("price", "numeric"), ("keywords", "multi"), ("text_vec", "vector")]
    assert spec["user"]["join_key"] == "member_id" and spec["user"]["id_type"] == "string"
    embeddings = pd.read_parquet(gens.directory(ws, g2.id) / "user_id_embedding.parquet")
    assert {"0000001", "ü00007"} <= set(embeddings["user_id"])  # the IDs exactly as given


def test_http_takes_and_returns_the_ids_exactly(world, tmp_path):
    settings, ws, paths, _ = world
    listings = set(pd.read_parquet(paths["data"] / "listings.parquet")["listing_id"])
    with twotower_server(ws, tmp_path / "serve.log") as base, httpx.Client(base_url=base, timeout=30) as client:
        for member in ("0000001", "ü00007"):
            got = client.get(f"/recall/{member}", params={"k": 5}).json()
            assert (got["user_id"], got["path"]) == (member, "embedding")
            assert len(got["items"]) == 5 and {i["item_id"] for i in got["items"]} <= listings
        assert client.get("/recall", params={"user_id": "0000001", "k": 3}).json()["user_id"] == "0000001"
        batch = client.post("/recall", json={"user_ids": ["0000002", "no-such-member"], "k": 4}).json()
        assert [r["user_id"] for r in batch["results"]] == ["0000002", "no-such-member"]
        assert [r["path"] for r in batch["results"]] == ["embedding", "popular"]
        refused = client.post("/recall", json={"user_ids": [2], "k": 4})  # "2"? "0000002"? not guessed
        assert refused.status_code == 422 and "body.user_ids.0" in refused.json()["error"]


def test_every_declared_feature_reaches_its_tower(world):
    from serving.online import reader
    from serving.recall import plan, user_vectors
    from serving.retriever import Retriever
    from tfrs_models.checkpoint import load_model
    from tfrs_models.export import item_vectors

    settings, ws, paths, _ = world
    retriever = Retriever.open(settings, ws)
    try:
        gen = retriever.current
        spec = gen.tower.spec
        members = ["0000001", "0000002", "0000003", "0000004", "0000005"]
        rows = reader(retriever.reader.store).read(members, gen.slot, spec)
        base = user_vectors(rows, plan(rows, gen.id, gen.tower), gen.tower, {"hour": 9, "weekday": 2})
        for f in spec.user.features:
            values = rows.features[f.name]
            changed = values.copy()
            changed[0] = values[1] if not np.array_equal(values[0], values[1]) else values[2]
            if f.kind == "numeric":
                changed[0] = values[0] + 10.0 * (abs(values[0]) + 1.0)
            other = replace(rows, features={**rows.features, f.name: changed})
            moved = user_vectors(other, plan(other, gen.id, gen.tower), gen.tower, {"hour": 9, "weekday": 2})
            assert not np.allclose(moved[0], base[0], atol=1e-6), f"user feature {f.name} does not reach the tower"
            np.testing.assert_allclose(moved[1:], base[1:], atol=1e-6)
    finally:
        retriever.close()

    model = load_model(gens.directory(ws, gen.id) / "checkpoint", settings.model)
    listings = pd.read_parquet(paths["data"] / "listings.parquet").head(4)
    _, base_items = item_vectors(model, listings)
    for name in ("seller", "price", "keywords", "text_vec"):
        changed = listings.copy()
        changed.at[0, name] = listings.at[1, name] if name != "price" else listings.at[0, name] * 5 + 50
        _, moved = item_vectors(model, changed)
        assert not np.allclose(moved[0], base_items[0], atol=1e-6), f"item feature {name} does not reach the tower"


def test_an_incremental_push_moves_the_served_vector(world, tmp_path):
    settings, ws, paths, _ = world
    events = pd.read_csv(paths["events"], dtype={"user_id": str, "item_id": str})
    day3 = events.loc[events["event_timestamp"].str.startswith(str(own.DAYS[2])) & (events["event_type"] == "click")]
    member = day3["user_id"].value_counts().index[0]  # the busiest clicker of day 3

    def served() -> tuple[list, str]:
        with twotower_server(ws, tmp_path / f"serve-{len(list(tmp_path.iterdir()))}.log") as base:
            got = httpx.get(f"{base}/recall/{member}", params={"k": 20}, timeout=30).json()
        return [(i["item_id"], round(i["score"], 5)) for i in got["items"]], got["path"]

    before, path = served()
    assert path == "embedding"
    day3_events = events["event_timestamp"].str.startswith(str(own.DAYS[2])).sum()
    assert cli(paths["ws"], "emit", "--day", str(own.DAYS[2])).startswith(f"appended {day3_events:,} events")
    summary = cli(paths["ws"], "incremental")
    pushed = int(summary.split(" user embeddings pushed")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert pushed >= day3["user_id"].nunique() // 2, summary
    from twotower.core.timeutil import day_start_us
    from twotower.pipelines.incremental.push import OnlineEmbeddings

    stored = OnlineEmbeddings(settings, ws).read(np.array([member], dtype=object), gens.current(ws).embedding_slot)
    assert stored["event_us"].iloc[0] >= day_start_us(own.DAYS[2])  # stamped by a day-3 click, not the full update
    after, path = served()
    assert path == "embedding" and after != before


def test_a_changed_feature_set_is_refused_until_a_fresh_model_is_asked_for(world):
    """Runs last: it changes the repo (a field removed) and publishes a third generation."""
    import subprocess

    from serving_support import TWOTOWER

    settings, ws, paths, _ = world
    views = paths["repo"] / "views.py"
    views.write_text(views.read_text().replace('        Field(name="badges", dtype=Array(String), tags={"max_len": "4"}),\n', ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTOWER_")}
    refused = subprocess.run([str(TWOTOWER), "--workspace", str(paths["ws"]), "full-update", str(own.DAYS[2])],
                             capture_output=True, text=True, env=env, timeout=900)  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "user feature 'badges' removed" in refused.stderr and "--fresh" in refused.stderr
    served = gens.read_pointer(ws).current
    assert not (ws.root / "work" / str(own.DAYS[2])).exists()  # refused before any data was read
    cli(paths["ws"], "full-update", str(own.DAYS[2]), "--fresh")
    g3 = gens.current(ws)
    assert (g3.day, g3.parent) == (own.DAYS[2], served)
    assert json.loads((gens.directory(ws, g3.id) / "training.json").read_text())["warm_start_from"] is None
    assert "badges" not in [f["name"] for f in json.loads(ws.feature_spec_path.read_text())["user"]["features"]]
