"""The simulator: deterministic, schema-true, and carrying the behaviour the project measures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from twotower.core import schema
from twotower.research.simulate import tables
from twotower.core.timeutil import to_us
from twotower.core.errors import UserError
from twotower.research.simulate import Truth, simulate
from twotower.core.workspace import Workspace


def _clicks_with_category(ws: Workspace) -> pd.DataFrame:
    events = pd.read_parquet(ws.events_dir)
    items = pd.read_parquet(ws.items_path, columns=["item_id", "category"])
    return events[events.event_type == "click"].merge(items, on="item_id")


def test_same_seed_same_world_other_seed_other_world(settings, tmp_path):
    from twotower.core.config import load_settings

    worlds = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        s = load_settings(workspace=tmp_path / name)
        simulate(s, Workspace(s.workspace), users=200, items=100, days=2, seed=seed)
        worlds[name] = Workspace(s.workspace)
    for table in ("users.parquet", "items.parquet", "events/day=2026-11-02/part-00000.parquet"):
        a, b, c = (pq.read_table(worlds[n].offline / table) for n in "abc")
        assert a.equals(b), table
        assert not a.equals(c), table


def test_tables_follow_the_schema(small_world):
    _, ws = small_world
    assert pq.read_schema(ws.users_path).remove_metadata() == tables.USERS
    assert pq.read_schema(ws.items_path).remove_metadata() == tables.ITEMS
    assert len(ws.days()) == 3
    for day in ws.days():
        table = pq.read_table(ws.events_day_dir(day))
        assert table.schema.remove_metadata() == schema.EVENTS
        ev = table.to_pandas()
        assert ev.event_timestamp.dt.date.eq(day).all(), "events must lie inside their day partition"
        assert ev.event_id.is_unique
        assert set(ev.event_type) == set(schema.EVENT_TYPES)


def test_requests_have_impressions_clicks_and_ranked_out(small_world):
    settings, ws = small_world
    sim = settings.simulator
    ev = pd.read_parquet(ws.events_day_dir(ws.days()[0]))
    per_request = ev.groupby(["request_id", "event_type"]).size().unstack(fill_value=0)
    assert (per_request["impression"] == sim.impressions_per_request).all()
    assert (per_request["ranked_out"] == sim.ranked_out_per_request).all()
    assert (ev.loc[ev.event_type == "ranked_out", "position"] == -1).all()
    shown = set(zip(ev.request_id[ev.event_type == "impression"], ev.item_id[ev.event_type == "impression"]))
    clicks = ev[ev.event_type == "click"]
    assert all(pair in shown for pair in zip(clicks.request_id, clicks.item_id)), "clicks only on shown items"
    ctr = len(clicks) / (per_request["impression"].sum())
    assert 0.05 < ctr < 0.5


def test_new_users_and_items_appear_and_nothing_comes_from_the_future(small_world):
    _, ws = small_world
    users = pd.read_parquet(ws.users_path)
    items = pd.read_parquet(ws.items_path)
    ev = pd.read_parquet(ws.events_dir).merge(
        users[["user_id", "event_timestamp"]].rename(columns={"event_timestamp": "signup"}), on="user_id"
    ).merge(items[["item_id", "created_at"]], on="item_id")
    first_day, last_day = ws.days()[0], ws.days()[-1]
    assert (users.signup_date > first_day).sum() > 0, "users sign up during the simulated days"
    assert (items.created_at.dt.date > first_day).sum() > 0, "items are created during the simulated days"
    assert (ev.event_timestamp >= ev.signup).all(), "no event before its user's signup"
    assert (ev.event_timestamp >= ev.created_at).all(), "no event on an item not yet created"
    late_users = users.user_id[users.signup_date == last_day]
    assert ev.user_id.isin(late_users).any(), "users who sign up on a day are active that day"


def test_interests_shift_with_time_of_day(small_world):
    """A user's favourite noon category is clearly less favoured in the evening."""
    _, ws = small_world
    clicks = _clicks_with_category(ws)
    hour = clicks.event_timestamp.dt.hour
    noon, evening = clicks[(hour >= 10) & (hour < 15)], clicks[(hour >= 19) & (hour < 23)]
    half = np.random.default_rng(0).random(len(noon)) < 0.5
    favourite = noon[half].groupby("user_id").category.agg(lambda s: s.value_counts().index[0])

    def share_of_favourite(df: pd.DataFrame) -> float:
        d = df.assign(fav=df.user_id.map(favourite)).dropna(subset=["fav"])
        return float((d.category == d.fav).mean())

    held_out_noon, at_evening = share_of_favourite(noon[~half]), share_of_favourite(evening)
    assert held_out_noon > at_evening + 0.15, (held_out_noon, at_evening)


def test_new_interests_show_up_in_clicks_after_they_start(small_world):
    _, ws = small_world
    clicks = _clicks_with_category(ws)
    acquired = pd.read_parquet(ws.truth_dir / "new_interests.parquet")
    assert len(acquired) > 0
    assert acquired.since.dt.hour.between(6, 10).all(), "new interests start in the morning"
    m = clicks.merge(acquired, on="user_id", suffixes=("", "_new"))
    hit = m.category == m.category_new
    before, after = hit[m.event_timestamp < m.since].mean(), hit[m.event_timestamp >= m.since].mean()
    assert after > 0.3 and before < 0.1, (before, after)
    # "served by noon": the same day, between the new interest and 14:00, it already shows.
    same_day = (m.event_timestamp >= m.since) & (m.event_timestamp.dt.date == m.since.dt.date) & (
        m.event_timestamp.dt.hour < 14
    )
    assert hit[same_day].mean() > 0.3


def test_oracle_recall_far_above_chance(small_world):
    _, ws = small_world
    truth = Truth(ws.truth_dir)
    clicks = pd.read_parquet(ws.events_day_dir(ws.days()[-1]))
    clicks = clicks[clicks.event_type == "click"].sample(300, random_state=0)
    t_us = to_us(clicks.event_timestamp)
    top = truth.oracle_topk(clicks.user_id.to_numpy(), t_us, 50)
    recall = np.mean([item in row for item, row in zip(clicks.item_id, top)])
    chance = 50 / len(truth.item_id)
    assert recall > 3 * chance, (recall, chance)


def test_bad_options_and_existing_world_are_rejected(small_world, settings, ws):
    with pytest.raises(UserError, match="--users"):
        simulate(settings, ws, users=0, items=100, days=1)
    existing_settings, existing = small_world
    before = sorted(p.stat().st_mtime_ns for p in existing.offline.rglob("*") if p.is_file())
    with pytest.raises(UserError, match="--force"):
        simulate(existing_settings, existing, users=50, items=50, days=1)
    after = sorted(p.stat().st_mtime_ns for p in existing.offline.rglob("*") if p.is_file())
    assert before == after, "a refused simulate writes nothing"
