"""``twotower init DIR``: a workspace with a feature repo of your own to edit, and sample data.

The scaffold (``scaffold/*.tmpl``) declares string-keyed users and items with one feature of
each kind (categorical, numeric, list, pretrained vector), the platform's user ID embedding
view with its PushSource, the two feature services and ``twotower.toml``. The sample data is a
small synthetic world in the shape of the declarations (users with interests, items with
genres, a few days of impressions, clicks and ranked-out candidates) so that every next step
runs at once; replace it with your own files.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.core.errors import UserError

SCAFFOLD = Path(__file__).resolve().parent / "scaffold"
REPO_FILES = {"entities.py": "entities.py.tmpl", "sources.py": "sources.py.tmpl",
              "feature_views.py": "feature_views.py.tmpl", "feature_services.py": "feature_services.py.tmpl",
              ".feastignore": "feastignore.tmpl"}  # fmt: skip
GENRES = ("news", "sports", "music", "film", "food", "travel", "science", "games")
COUNTRIES = ("de", "fr", "jp", "br", "us", "in", "ng", "se")
START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def sample_data(users: int = 400, items: int = 200, days: int = 3, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Users, items and events of a small world whose clicks follow the users' interests."""
    rng = np.random.default_rng(seed)
    g = len(GENRES)
    centroids = rng.standard_normal((g, 8)).astype(np.float32)
    item_genre = rng.integers(0, g, items)
    item_ids = [f"it-{i:05d}" for i in range(items)]
    items_frame = pd.DataFrame({
        "item_id": item_ids,
        "genre": [GENRES[k] for k in item_genre],
        "price": np.round(rng.gamma(2.0, 5.0, items), 2),
        "topics": [[f"{GENRES[k]}-{t}" for t in rng.choice(6, rng.integers(1, 4), replace=False)] for k in item_genre],
        "text_vector": [list(centroids[k] + 0.3 * rng.standard_normal(8).astype(np.float32)) for k in item_genre],
        "event_timestamp": pd.Timestamp(START - timedelta(days=30)),
    })  # fmt: skip
    likes = [rng.choice(g, rng.integers(1, 3), replace=False) for _ in range(users)]
    user_ids = [f"{u:06d}" for u in range(1, users + 1)]  # leading zeros: kept as given
    users_frame = pd.DataFrame({
        "user_id": user_ids,
        "country": [COUNTRIES[k] for k in rng.integers(0, len(COUNTRIES), users)],
        "age": rng.integers(16, 80, users),
        "activity": np.round(rng.exponential(1.0, users), 3),
        "interests": [[GENRES[k] for k in like] for like in likes],
        "event_timestamp": pd.Timestamp(START - timedelta(days=30)),
    })  # fmt: skip
    by_genre = [np.flatnonzero(item_genre == k) for k in range(g)]
    rows, request = [], 0
    for day in range(days):
        for u in range(users):
            for _ in range(2):
                request += 1
                t = START + timedelta(days=day, seconds=int(rng.integers(0, 86_400)))
                liked = by_genre[int(rng.choice(likes[u]))]
                shown = np.unique(np.concatenate([rng.choice(liked, 3), rng.integers(0, items, 5)]))[:8]
                for position, i in enumerate(shown):
                    rows.append((request, user_ids[u], item_ids[i], "impression", position, t))
                clicked = [i for i in shown if item_genre[i] in likes[u]][:1] or ([shown[0]] if rng.random() < 0.2 else [])
                for i in clicked:
                    rows.append((request, user_ids[u], item_ids[i], "click", int(np.flatnonzero(shown == i)[0]), t + timedelta(seconds=5)))
                for i in rng.integers(0, items, 2):
                    rows.append((request, user_ids[u], item_ids[i], "ranked_out", -1, t))
    events = pd.DataFrame(rows, columns=["request_id", "user_id", "item_id", "event_type", "position", "event_timestamp"])
    return {"users": users_frame, "items": items_frame, "events": events}


def init(target: Path, seed: int = 0) -> list[str]:
    """Write the scaffold into ``target`` (a new or empty directory); the lines to print."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise UserError(f"twotower init: {target} is not empty; give a new directory")
    repo, data = target / "feature_repo", target / "data"
    repo.mkdir(parents=True)
    data.mkdir()
    for name, template in REPO_FILES.items():
        (repo / name).write_text((SCAFFOLD / template).read_text())
    (target / "twotower.toml").write_text((SCAFFOLD / "twotower.toml.tmpl").read_text())
    frames = sample_data(seed=seed)
    frames["users"].to_parquet(data / "users.parquet", index=False)
    frames["items"].to_parquet(data / "items.parquet", index=False)
    events = frames["events"].assign(event_timestamp=frames["events"]["event_timestamp"].map(lambda t: t.isoformat()))
    events.to_csv(data / "events.csv", index=False)
    days = sorted({t.date() for t in frames["events"]["event_timestamp"]})
    ws = f"--workspace {target}"
    return [
        f"wrote {target}: feature_repo/ (entities, sources, views, services), twotower.toml, "
        f"data/ ({len(frames['users'])} users, {len(frames['items'])} items, {len(events):,} events)",
        "next:",
        f"  twotower {ws} ingest --events {data / 'events.csv'}",
        *(f"  twotower {ws} full-update {d}" for d in days[:-1]),
        f"  twotower {ws} serve",
        f"edit {repo / 'feature_views.py'} to declare your own features, and point {repo / 'sources.py'} at your data",
    ]
