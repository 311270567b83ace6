"""Feast's own feature server (`feast serve`) still answers for the online store serving reads.

A real `feast -f <ws>/feast/feature_store.yaml serve` subprocess, a real HTTP request for the
`user_tower` feature service: it returns the same profile, ID embedding and generation stamp
that the recall server's reader gets from the store (so anything else - a ranking service, a
debugging session - can use Feast's standard API on the same data).
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd

from serving.online import reader as online_reader
from serving_support import feast_server, shared_world
from twotower import feature_store
from twotower.core import generations as gens

UNKNOWN = 987_654_321


def test_feast_feature_server_answers_user_tower(tmp_path_factory, tmp_path):
    settings, ws, (_g1, g2) = shared_world(tmp_path_factory)
    slot = gens.load(ws, g2).embedding_slot
    table = pd.read_parquet(gens.directory(ws, g2) / "user_id_embedding.parquet").head(3)
    users = table["user_id"].astype(int).tolist() + [UNKNOWN]

    with feast_server(settings, ws, tmp_path / "feast.log") as base:
        response = httpx.post(
            f"{base}/get-online-features",
            json={"feature_service": "user_tower", "entities": {"user_id": users, "embedding_slot": [slot] * len(users)}},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    body = response.json()
    names = body["metadata"]["feature_names"]
    columns = {name: result["values"] for name, result in zip(names, body["results"])}
    statuses = {name: result["statuses"] for name, result in zip(names, body["results"])}
    assert {"age_bucket", "gender", "city_tier", "interest_tags", "embedding", "generation"} <= set(columns)

    # The embeddings are the generation's, stamped with it, in its slot.
    assert columns["generation"][:3] == [g2] * 3
    for i, row in table.iterrows():
        assert np.allclose(columns["embedding"][i], row["embedding"], atol=1e-6)
    assert statuses["embedding"][3] == "NOT_FOUND" and columns["generation"][3] is None

    # ...and what the recall server's reader reads from the same store.
    read = online_reader(feature_store.store(settings, ws))
    spec = feature_store.applied_spec(ws)
    rows = read.read(users, slot, spec)
    assert rows.generations == columns["generation"]
    assert rows.features["age_bucket"][:3].tolist() == columns["age_bucket"][:3]
    assert rows.has_profile.tolist() == [True, True, True, False]
    max_len = spec.user.feature("interest_tags").max_len
    for i in range(3):
        assert np.allclose(rows.embeddings[i], columns["embedding"][i])
        tags = list(columns["interest_tags"][i])[:max_len]
        assert rows.features["interest_tags"][i][: len(tags)].tolist() == tags
