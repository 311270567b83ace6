"""A feature repo written by hand with plain Feast declarations, and data in its shape.

Nothing here is the simulator's: members and listings keyed by String IDs (leading zeros,
unicode), on members a String, an Int64, a Float64 and an Array(String) feature, on listings a
String, a Float64, an Array(String) and an Array(Float32) vector of length 8, services and the
embedding view under names of its own (twotower.toml says which). Clicks follow the members'
badges (listings of a matching seller group), so there is something to learn.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ENTITIES = '''
from feast import Entity, ValueType

member = Entity(name="member", join_keys=["member_id"], value_type=ValueType.STRING)
listing = Entity(name="listing", join_keys=["listing_id"], value_type=ValueType.STRING)
embedding_slot = Entity(name="embedding_slot", join_keys=["embedding_slot"], value_type=ValueType.INT64)
'''

SOURCES = '''
import os
from pathlib import Path

from feast import FileSource, PushSource

DATA = Path(__file__).resolve().parent.parent / "data"
members = FileSource(name="members", path=str(DATA / "members.parquet"), timestamp_field="valid_from")
listings = FileSource(name="listings", path=str(DATA / "listings.parquet"), timestamp_field="valid_from")
member_vectors = FileSource(
    name="member_vectors",
    path=str(Path(os.environ["TWOTOWER_WORKSPACE"]) / "offline" / "user_id_embedding"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)
member_vectors_push = PushSource(name="member_vectors_push", batch_source=member_vectors)
'''

VIEWS = '''
from datetime import timedelta

from entities import embedding_slot, listing, member
from feast import FeatureView, Field
from feast.types import Array, Float32, Float64, Int64, String
from sources import listings, member_vectors_push, members

member_facts = FeatureView(
    name="member_facts", entities=[member], ttl=timedelta(days=3650), source=members, online=True,
    schema=[
        Field(name="home_region", dtype=String),
        Field(name="birth_year", dtype=Int64, tags={"buckets": "128"}),
        Field(name="spend", dtype=Float64),
        Field(name="badges", dtype=Array(String), tags={"max_len": "4"}),
    ],
)
listing_facts = FeatureView(
    name="listing_facts", entities=[listing], ttl=timedelta(days=3650), source=listings, online=True,
    schema=[
        Field(name="seller", dtype=String, tags={"buckets": "256"}),
        Field(name="price", dtype=Float64),
        Field(name="keywords", dtype=Array(String)),
        Field(name="text_vec", dtype=Array(Float32), tags={"dim": "8"}),
    ],
)
member_id_vectors = FeatureView(
    name="member_id_vectors", entities=[member, embedding_slot], ttl=timedelta(days=30),
    source=member_vectors_push, online=True,
    schema=[Field(name="embedding", dtype=Array(Float32)), Field(name="generation", dtype=String)],
)
'''

SERVICES = '''
from feast import FeatureService
from views import listing_facts, member_facts, member_id_vectors

members_in = FeatureService(name="members_in", features=[member_facts, member_id_vectors])
listings_in = FeatureService(name="listings_in", features=[listing_facts])
'''

SETTINGS = '''
feature_repo = "../repo"

[features]
user_service = "members_in"
item_service = "listings_in"
embedding_view = "member_id_vectors"
context = ["hour", "weekday"]

[model]
batch_size = 64
'''

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
DAYS = [(START + timedelta(days=d)).date() for d in range(3)]
GROUPS = ("ceramics", "bikes", "books", "plants", "records")


def member_id(i: int) -> str:
    return f"ü{i:05d}" if i % 7 == 0 else f"{i:07d}"  # unicode, leading zeros


def write(root: Path, members: int = 240, listings: int = 120, seed: int = 3) -> dict[str, Path]:
    """The repo, the data files and the workspace config under ``root``."""
    rng = np.random.default_rng(seed)
    repo, data, ws = root / "repo", root / "data", root / "ws"
    for d in (repo, data, ws):
        d.mkdir(parents=True)
    for name, text in (("entities.py", ENTITIES), ("sources.py", SOURCES), ("views.py", VIEWS),
                       ("services.py", SERVICES)):  # fmt: skip
        (repo / name).write_text(text.lstrip())
    (ws / "twotower.toml").write_text(SETTINGS.lstrip())

    group = rng.integers(0, len(GROUPS), listings)
    centroids = rng.standard_normal((len(GROUPS), 8))
    listing_ids = [f"L-{i:04d}" for i in range(listings)]
    pd.DataFrame({
        "listing_id": listing_ids,
        "seller": [f"{GROUPS[g]}-shop-{rng.integers(0, 4)}" for g in group],
        "price": rng.gamma(2.0, 10.0, listings),
        "keywords": [[GROUPS[g], f"kw{rng.integers(0, 20)}"] for g in group],
        "text_vec": [list((centroids[g] + 0.3 * rng.standard_normal(8)).astype(np.float32)) for g in group],
        "valid_from": pd.Timestamp(START - timedelta(days=10)),
    }).to_parquet(data / "listings.parquet", index=False)  # fmt: skip
    likes = [rng.choice(len(GROUPS), 2, replace=False) for _ in range(members)]
    member_ids = [member_id(i) for i in range(1, members + 1)]
    pd.DataFrame({
        "member_id": member_ids,
        "home_region": [f"region-{rng.integers(0, 6)}" for _ in range(members)],
        "birth_year": rng.integers(1950, 2008, members),
        "spend": rng.exponential(50.0, members),
        "badges": [[GROUPS[g] for g in like] for like in likes],
        "valid_from": pd.Timestamp(START - timedelta(days=10)),
    }).to_parquet(data / "members.parquet", index=False)  # fmt: skip
    by_group = [np.flatnonzero(group == g) for g in range(len(GROUPS))]
    rows, request = [], 0
    for day in range(len(DAYS)):
        for m in range(members):
            for _ in range(3):
                request += 1
                t = START + timedelta(days=day, seconds=int(rng.integers(0, 86_000)))
                shown = np.unique(np.concatenate([rng.choice(by_group[int(rng.choice(likes[m]))], 2),
                                                  rng.integers(0, listings, 4)]))  # fmt: skip
                for position, i in enumerate(shown):
                    rows.append((request, member_ids[m], listing_ids[i], "impression", position, t))
                liked = [i for i in shown if group[i] in likes[m]]
                if liked:
                    rows.append((request, member_ids[m], listing_ids[liked[0]], "click", 0, t + timedelta(seconds=3)))
                for i in rng.integers(0, listings, 2):
                    rows.append((request, member_ids[m], listing_ids[i], "ranked_out", -1, t))
    events = pd.DataFrame(rows, columns=["request_id", "user_id", "item_id", "event_type", "position", "event_timestamp"])
    events["event_timestamp"] = events["event_timestamp"].map(lambda t: t.isoformat())
    events.to_csv(data / "events.csv", index=False)
    return {"repo": repo, "data": data, "ws": ws, "events": data / "events.csv"}
