"""Helpers of the incremental-update tests: a world serving g1 with day 2 still to come, probes."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from bench import local_servers
from bench.local_servers import free_port  # noqa: F401  (tests import it from here)
from twotower.core import generations as gens
from twotower.core.config import Settings, load_settings
from twotower.core.workspace import Workspace

TWOTOWER = str(Path(sys.executable).with_name("twotower"))
S = 1_000_000


def serving_g1(shared, target: Path, **overrides) -> tuple[Settings, Workspace, str, str]:
    """A private copy of the shared two-generation world, rolled back to serve g1 (day 1).

    g2 (day 2, slot 1) stays published-but-not-served: flipping to it is "the next full update
    was published". Day 2's events are still to be replayed on the stream.
    """
    from serving_support import copy_world

    _, ws0, (g1, g2) = shared
    _, ws = copy_world(ws0, target)
    gens.rollback(ws)
    settings = load_settings(workspace=ws.root, **overrides)
    return settings, Workspace(settings.workspace), g1, g2


def pick_user_and_categories(ws: Workspace, generation: str, retriever, hour: int, k: int = 50, min_items: int = 15):
    """A user with an own row and a profile, and two categories they barely see in their top-k.

    "Barely" = the smallest non-zero shares: a category with no item at all in the top-k sits
    where the item tower puts it far from every user (measured: none of those moved into the
    top-50 after 30 clicks, while 2-10% shares rose).
    """
    items = pd.read_parquet(ws.items_path)
    sizes = items["category"].value_counts()
    table = pd.read_parquet(gens.directory(ws, generation) / "user_id_embedding.parquet")
    user = int(table["user_id"].iloc[7])
    got = retriever.recall(user, k, hour=hour)
    assert got.path == "embedding", got.path
    share = category_share(items, got.item_ids)
    candidates = [int(c) for c in sizes.index if sizes[c] >= min_items and 0 < share.get(c, 0.0) <= 0.1]
    first, second = sorted(candidates, key=lambda c: (share[c], -sizes[c]))[:2]
    return user, first, second


def user_vector(retriever, user: int, hour: int) -> np.ndarray:
    """The user tower's output for ``user`` as the next request computes it (online row + profile)."""
    from serving.recall import plan, user_vectors

    gen = retriever.current
    online = retriever.reader.read([user], gen.slot, gen.tower.spec)
    return user_vectors(online, plan(online, gen.id, gen.tower), gen.tower, {"hour": hour})[0]


def category_scores(ws: Workspace, generation: str, vector: np.ndarray) -> dict:
    """Mean cosine of ``vector`` with each category's item vectors (the generation's index)."""
    from twotower.index.item_index import IDS_FILE

    index = gens.directory(ws, generation) / "index"
    ids, vectors = np.load(index / IDS_FILE), np.load(index / "vectors.npy")
    items = pd.read_parquet(ws.items_path).drop_duplicates("item_id", keep="last").set_index("item_id")
    cats = items["category"].reindex(ids).to_numpy()
    scores = vectors @ vector
    return {int(c): float(scores[cats == c].mean()) for c in np.unique(cats)}


def category_share(items: pd.DataFrame, item_ids) -> dict:
    cat = dict(zip(items["item_id"], items["category"]))
    return pd.Series([cat[i] for i in item_ids]).value_counts(normalize=True).to_dict()


@contextmanager
def redis_server():
    """A throwaway redis-server on 127.0.0.1 and a free port (no persistence); yields the port."""
    with local_servers.redis_server() as (port, _proc):
        yield port


def env_for(settings: Settings) -> dict[str, str]:
    """Environment that gives a ``twotower`` subprocess the same stream/online-store settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTOWER_")}
    env["TWOTOWER_WORKSPACE"] = str(settings.workspace)
    for section in ("online_store", "stream"):
        for name, value in getattr(settings, section).model_dump().items():
            if value is not None:
                value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
                env[f"TWOTOWER_{section.upper()}__{name.upper()}"] = str(value)
    return env


def start_incremental(settings: Settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [TWOTOWER, "incremental", *args], env=env_for(settings), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def chain_state(ws: Workspace, generation: str):
    from twotower.pipelines.incremental.state import StateStore

    return StateStore(ws.incremental_dir / generation).load()


def online_rows(settings: Settings, ws: Workspace, user_ids, slot: int) -> pd.DataFrame:
    from twotower.pipelines.incremental.push import OnlineEmbeddings

    return OnlineEmbeddings(settings, ws).read(np.asarray(user_ids), slot, embeddings=True)
