"""Publish writes a generation's user ID embeddings into its online slot in batches, exactly as
its offline file holds them, and leaves the other slot alone (SQLite and Redis)."""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from incremental_support import redis_server
from twotower import feature_store
from twotower.core.config import load_settings
from twotower.core.workspace import Workspace

AS_OF = datetime(2026, 11, 1, 23, 59, 59, 999999, tzinfo=timezone.utc)


def online_rows(settings, ws, users, slot):
    frame = feature_store.store(settings, ws).get_online_features(
        features=["user_id_embedding:embedding", "user_id_embedding:generation"],
        entity_rows=[{"user_id": int(u), "embedding_slot": slot} for u in users],
    ).to_df()
    return frame.set_index("user_id")


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_write_online_batches_one_slot_exactly(tmp_path, store):
    from bench.serving_world import write_offline_store
    from materialize.user_embeddings import write_offline, write_online

    with redis_server() if store == "redis" else contextlib.nullcontext() as port:
        online = {"type": "redis", "redis_port": port} if store == "redis" else {}
        settings = load_settings(workspace=tmp_path, online_store={**online, "write_batch_rows": 7})
        ws = Workspace(settings.workspace)
        rng = np.random.default_rng(0)
        write_offline_store(ws, 40, 10, rng)
        feature_store.apply(settings, ws)
        dim = settings.model.id_embedding_dim
        old = rng.standard_normal((40, dim)).astype(np.float32)
        new = rng.standard_normal((25, dim)).astype(np.float32)
        write_offline(ws, pd.DataFrame({"user_id": np.arange(1, 41), "embedding": list(old)}), "g1", 0, AS_OF)
        assert write_online(settings, ws, "g1") == 40
        # The next generation: 25 users (23 = 3 full batches of 7 + 4), into the other slot.
        write_offline(ws, pd.DataFrame({"user_id": np.arange(1, 26), "embedding": list(new)}), "g2", 1, AS_OF)
        assert write_online(settings, ws, "g2") == 25

        slot1 = online_rows(settings, ws, range(1, 41), 1)
        assert (slot1.loc[1:25, "generation"] == "g2").all()
        np.testing.assert_array_equal(np.stack(slot1.loc[1:25, "embedding"].to_list()), new)
        assert slot1.loc[26:40, "embedding"].isna().all()  # never written to slot 1
        slot0 = online_rows(settings, ws, range(1, 41), 0)  # the served slot: untouched
        assert (slot0["generation"] == "g1").all()
        np.testing.assert_array_equal(np.stack(slot0["embedding"].to_list()), old)
