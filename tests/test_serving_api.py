"""Online recall over real HTTP: `twotower serve` on a world with two real generations.

One world (simulate + two full updates) is built per module; the server runs on a private copy
of it (the tests write profiles, embeddings and CURRENT there). Checked: results (k items,
sorted scores, generation = CURRENT, path), fallbacks, every kind of bad input, metrics, the
OpenAPI schema, the CLI, and a hot swap under concurrent load with no request failing or
mixing generations. Feast's own feature server answering for the same online store is in
test_serving_feast.py.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.online import reader as online_reader
from serving.recall import EMBEDDING, OOV_PROFILE, POPULAR
from serving.retriever import pinned
from serving_support import copy_world, shared_world, twotower_server
from twotower import feature_store
from twotower.core import generations as gens

NEW_USER = 9_000_001  # a profile in the online store, no embedding (signed up after the full update)
STALE_USER = 9_000_002  # a profile + an embedding stamped by another generation in the served slot
UNKNOWN_USER = 123_456_789_012  # nothing at all


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings, ws, ids = shared_world(tmp_path_factory)
    assert gens.read_pointer(ws).current == ids[1]
    return settings, ws, ids


@pytest.fixture(scope="module")
def served(world, tmp_path_factory):
    """A copy of the world with the extra online rows, and `twotower serve` running on it."""
    _, ws0, ids = world
    settings, ws = copy_world(ws0, tmp_path_factory.mktemp("served") / "ws")
    store = feature_store.store(settings, ws)
    now = datetime.now(timezone.utc)
    profiles = pd.DataFrame({
        "user_id": [NEW_USER, STALE_USER], "age_bucket": [3, 2], "gender": [1, 2], "city_tier": [2, 1],
        "interest_tags": [[5, 17, 40, 77, 9], [3]], "event_timestamp": [now, now],
    })  # fmt: skip
    store.write_to_online_store("user_profile", profiles)
    served_gen = gens.load(ws, ids[1])
    stale = pd.DataFrame({
        "user_id": [STALE_USER], "embedding_slot": [served_gen.embedding_slot],
        "embedding": [np.full(settings.model.id_embedding_dim, 0.1, np.float32)], "generation": [ids[0]],
        "event_timestamp": [now], "created_timestamp": [now],
    })  # fmt: skip
    store.write_to_online_store("user_id_embedding", stale)
    log = ws.root / "serve.log"
    with twotower_server(ws, log) as base:
        with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as client:
            yield settings, ws, ids, client


@pytest.fixture(scope="module")
def pinned_retrievers(served):
    """In-process retrievers fixed on each generation, over the same online store."""
    settings, ws, ids, _ = served
    store = feature_store.store(settings, ws)
    read = online_reader(store)
    return {gid: pinned(settings, ws, gid, read) for gid in ids}


def known_users(ws, generation: str, n: int) -> list[int]:
    table = pd.read_parquet(gens.directory(ws, generation) / "user_id_embedding.parquet", columns=["user_id"])
    return table["user_id"].head(n).astype(int).tolist()


def metric_values(client) -> dict[tuple, float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --- results -------------------------------------------------------------------------------
def test_recall_returns_k_sorted_items_of_the_current_generation(served):
    _, ws, ids, client = served
    user = known_users(ws, ids[1], 1)[0]
    body = client.get(f"/recall/{user}", params={"k": 25}).json()
    assert body["generation"] == gens.read_pointer(ws).current == ids[1]
    assert body["channel"] == "two_tower" and body["path"] == EMBEDDING and body["user_id"] == user
    scores = [i["score"] for i in body["items"]]
    assert len(body["items"]) == 25 and scores == sorted(scores, reverse=True)
    assert len({i["item_id"] for i in body["items"]}) == 25
    index_ids = set(np.load(gens.directory(ws, ids[1]) / "index" / "item_ids.npy").tolist())
    assert {i["item_id"] for i in body["items"]} <= index_ids
    # The same answer through the query-parameter route and the default k.
    assert client.get("/recall", params={"user_id": user, "k": 25}).json() == body
    assert len(client.get(f"/recall/{user}").json()["items"]) == 100  # serving.default_k


def test_recall_equals_the_in_process_retriever(served, pinned_retrievers):
    _, ws, ids, client = served
    for user in known_users(ws, ids[1], 5):
        body = client.get(f"/recall/{user}", params={"k": 10}).json()
        want = pinned_retrievers[ids[1]].recall(user, 10)
        assert [i["item_id"] for i in body["items"]] == want.item_ids.tolist()
        assert np.allclose([i["score"] for i in body["items"]], want.scores, atol=1e-5)


def test_batch_is_one_generation_and_keeps_order(served):
    _, ws, ids, client = served
    users = known_users(ws, ids[1], 3) + [NEW_USER, UNKNOWN_USER, STALE_USER]
    body = client.post("/recall", json={"user_ids": users, "k": 7}).json()
    assert body["generation"] == ids[1] and body["channel"] == "two_tower"
    assert [r["user_id"] for r in body["results"]] == users
    assert [r["path"] for r in body["results"]] == [EMBEDDING] * 3 + [OOV_PROFILE, POPULAR, OOV_PROFILE]
    assert all(r["generation"] == ids[1] and len(r["items"]) == 7 for r in body["results"])
    single = client.get(f"/recall/{users[0]}", params={"k": 7}).json()
    # Same items; scores equal up to float32 rounding (batched vs single matmul).
    assert [i["item_id"] for i in body["results"][0]["items"]] == [i["item_id"] for i in single["items"]]
    assert np.allclose([i["score"] for i in body["results"][0]["items"]], [i["score"] for i in single["items"]], atol=1e-5)


# --- fallbacks (DESIGN invariant 8) -----------------------------------------------------------
def test_user_without_embedding_gets_oov_row_plus_profile(served, pinned_retrievers):
    _, ws, ids, client = served
    body = client.get(f"/recall/{NEW_USER}", params={"k": 10}).json()
    assert body["path"] == OOV_PROFILE and len(body["items"]) == 10
    # Not the popularity list: the OOV row + profile went through the tower.
    assert body["items"] != client.get(f"/recall/{UNKNOWN_USER}", params={"k": 10}).json()["items"]
    # An embedding stamped by another generation is not fed to this generation's tower.
    stale = client.get(f"/recall/{STALE_USER}", params={"k": 10}).json()
    assert stale["path"] == OOV_PROFILE and stale["generation"] == ids[1]


def test_unknown_user_gets_popular_items(served):
    _, ws, ids, client = served
    body = client.get(f"/recall/{UNKNOWN_USER}", params={"k": 5}).json()
    assert body["path"] == POPULAR and body["generation"] == ids[1]
    popular = pd.read_parquet(gens.directory(ws, ids[1]) / "popular_items.parquet")
    top = popular.sort_values(["clicks", "item_id"], ascending=[False, True]).head(5)
    assert [i["item_id"] for i in body["items"]] == top["item_id"].tolist()
    assert np.allclose([i["score"] for i in body["items"]], top["clicks"] / popular["clicks"].sum())


# --- bad input (DESIGN invariant 9) ------------------------------------------------------------
BAD_GETS = [
    ("/recall/5?k=0", 422, "query.k"),
    ("/recall/5?k=-3", 422, "query.k"),
    ("/recall/5?k=1001", 422, "query.k"),  # over serving.max_k
    ("/recall/5?k=ten", 422, "query.k"),
    ("/recall/5?k=2.5", 422, "query.k"),
    ("/recall/abc", 422, "path.user_id"),
    ("/recall/9223372036854775808", 422, "path.user_id"),  # int64 max + 1
    ("/recall/-9223372036854775809", 422, "path.user_id"),
    ("/recall?k=5", 422, "query.user_id"),  # missing
    ("/recall/", 422, "query.user_id"),  # missing (redirected to /recall)
]


@pytest.mark.parametrize("url,status,field", BAD_GETS)
def test_bad_get_is_a_4xx_naming_the_field(served, url, status, field):
    response = served[3].get(url)
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(field), response.json()


BAD_POSTS = [
    (b'{"user_ids": [1, 2', 400, "body: malformed JSON"),
    (b'{"user_ids": [1], "k": 5, "debug": true}', 422, "body.debug"),  # unknown field
    (b'{"k": 5}', 422, "body.user_ids"),
    (b'{"user_ids": []}', 422, "body.user_ids"),
    (b'{"user_ids": ["7"]}', 422, "body.user_ids.0"),
    (b'{"user_ids": [true]}', 422, "body.user_ids.0"),
    (b'{"user_ids": [1, 9223372036854775808]}', 422, "body.user_ids.1"),
    (b'{"user_ids": [1], "k": 0}', 422, "body.k"),
    (b'{"user_ids": [1], "k": 1001}', 422, "body.k"),
    (b'{"user_ids": [1], "k": "5"}', 422, "body.k"),
    (b"[1, 2, 3]", 422, "body"),
    (b"", 422, "body"),
]


@pytest.mark.parametrize("payload,status,field", BAD_POSTS)
def test_bad_post_is_a_4xx_naming_the_field(served, payload, status, field):
    response = served[3].post("/recall", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(field), response.json()


def test_batch_over_max_batch_and_oversized_bodies(served):
    settings, _, _, client = served
    too_many = client.post("/recall", json={"user_ids": list(range(settings.serving.max_batch + 1))})
    assert too_many.status_code == 422 and too_many.json()["error"].startswith("body.user_ids")
    assert "at most 256" in too_many.json()["error"]
    big = b'{"user_ids": [' + b"1, " * 30_000 + b"1]}"
    assert len(big) > settings.serving.max_body_bytes
    declared = client.post("/recall", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "serving.max_body_bytes" in declared.json()["error"]

    def chunks():  # no content-length: the limit applies while the body is read
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    chunked = client.post("/recall", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "serving.max_body_bytes" in chunked.json()["error"]
    not_json = client.post("/recall", content=b"user_ids=1", headers={"content-type": "text/plain"})
    assert not_json.status_code == 415 and not_json.json()["error"].startswith("body")
    untyped = client.post("/recall", content=b'{"user_ids": [1]}')  # no content-type at all
    assert untyped.status_code == 415 and "content-type" in untyped.json()["error"]
    # The server is still fine.
    assert client.get("/health").status_code == 200


# --- metrics, health, OpenAPI, CLI -------------------------------------------------------------
def test_metrics_move(served):
    _, ws, ids, client = served
    user = known_users(ws, ids[1], 1)[0]
    before = metric_values(client)
    for _ in range(3):
        assert client.get(f"/recall/{user}", params={"k": 5}).status_code == 200
    assert client.get(f"/recall/{UNKNOWN_USER}").status_code == 200
    assert client.get(f"/recall/{NEW_USER}").status_code == 200
    assert client.get("/recall/5", params={"k": 0}).status_code == 422
    after = metric_values(client)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = "/recall/{user_id}"
    assert delta("twotower_http_requests_total", route=route, method="GET", status="200") == 5
    assert delta("twotower_http_requests_total", route=route, method="GET", status="422") == 1
    assert delta("twotower_http_request_seconds_count", route=route) == 6
    assert delta("twotower_recall_users_total", path=EMBEDDING) == 3
    assert delta("twotower_recall_users_total", path=POPULAR) == 1
    assert delta("twotower_recall_users_total", path=OOV_PROFILE) == 1
    assert delta("twotower_recall_stage_seconds_count", stage="online") == 5
    current = gens.read_pointer(ws).current
    day = gens.load(ws, current).day.isoformat()
    slot = str(gens.load(ws, current).embedding_slot)
    assert after[("twotower_serving_generation", (("day", day), ("generation", current), ("slot", slot)))] == 1


def test_health_generation_and_openapi(served):
    _, ws, ids, client = served
    assert client.get("/health").json() == {
        "status": "ok", "generation": ids[1], "channel": "two_tower",
        "online_store": {"type": "sqlite", "ok": True, "failures": 0},
    }  # fmt: skip
    info = client.get("/generation").json()
    assert info["id"] == info["published"] == ids[1] and info["embedding_slot"] in (0, 1)
    schema = client.get("/openapi.json").json()
    assert {"get", "post"} <= set(schema["paths"]["/recall"]) and "get" in schema["paths"]["/recall/{user_id}"]
    assert {"/health", "/generation", "/metrics"} <= set(schema["paths"])
    batch = schema["components"]["schemas"]["RecallBatchRequest"]
    assert batch["properties"]["user_ids"]["maxItems"] == 256 and batch["additionalProperties"] is False


def test_cli_recall_prints_items_generation_and_path(served):
    from typer.testing import CliRunner

    from twotower.cli import app

    settings, ws, ids, client = served
    user = known_users(ws, ids[1], 1)[0]
    result = CliRunner().invoke(app, ["-w", str(ws.root), "recall", str(user), "-k", "4"])
    assert result.exit_code == 0, result.output
    assert f"generation {ids[1]}" in result.output and "path embedding" in result.output
    items = [i["item_id"] for i in client.get(f"/recall/{user}", params={"k": 4}).json()["items"]]
    assert all(f"item {i:>10}" in result.output for i in items)
    bad = CliRunner().invoke(app, ["-w", str(ws.root), "recall", str(user), "-k", "0"])
    assert bad.exit_code != 0 and "serving.max_k" in str(bad.exception or bad.output)


# --- hot swap (DESIGN invariant 1); runs last: it moves CURRENT ---------------------------------
def test_hot_swap_under_load_never_fails_or_mixes(served, pinned_retrievers):
    _, ws, (g1, g2), client = served
    base = str(client.base_url)
    users = known_users(ws, g1, 40) + [NEW_USER, UNKNOWN_USER]
    started_hour = datetime.now(timezone.utc).hour
    stop_at = time.monotonic() + 5.0
    flipped: dict[str, float] = {}

    def fire(worker: int) -> list[tuple]:
        out = []
        with httpx.Client(base_url=base, timeout=10) as c:
            i = worker
            while time.monotonic() < stop_at:
                user = users[i % len(users)]
                i += 7
                sent = time.monotonic()
                r = c.get(f"/recall/{user}", params={"k": 10})
                body = r.json() if r.status_code == 200 else r.text
                out.append((sent, time.monotonic(), user, r.status_code, body))
        return out

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(fire, w) for w in range(8)]
        time.sleep(1.0)
        flipped["at"] = time.monotonic()
        gens.flip(ws, g1)  # publish-style flip to the other generation
        results = [r for f in futures for r in f.result()]

    assert len(results) > 100
    failures = [r for r in results if r[3] != 200]
    assert not failures, failures[:3]
    assert {r[4]["generation"] for r in results} == {g1, g2}  # both served, nothing else
    # Before the flip only g2; the swap follows the flip promptly (poll 0.2 s + a tiny load);
    # once a g1 answer has arrived, no request sent afterwards is answered by g2 again.
    assert all(r[4]["generation"] == g2 for r in results if r[1] < flipped["at"])
    swapped_at = min(r[1] for r in results if r[4]["generation"] == g1)
    assert swapped_at - flipped["at"] < 3.0
    after = [r for r in results if r[0] > swapped_at]
    assert after and all(r[4]["generation"] == g1 for r in after)
    # No request mixed generations: each answer is exactly what its generation alone produces.
    hours = {started_hour, datetime.now(timezone.utc).hour}  # the tower takes the request's UTC hour
    expected = {
        (g, u, h): pinned_retrievers[g].recall(u, 10, hour=h).item_ids.tolist()
        for g in (g1, g2) for u in users for h in hours
    }  # fmt: skip
    for _sent, _received, user, _status, body in results:
        got = [i["item_id"] for i in body["items"]]
        assert any(got == expected[(body["generation"], user, h)] for h in hours), (user, body["generation"])
    h = min(hours)
    differ = sum(expected[(g1, u, h)] != expected[(g2, u, h)] for u in users)
    assert differ >= len(users) // 2  # the two generations really answer differently

    # Rollback (one command) swaps back the same way.
    assert gens.rollback(ws).current == g2
    deadline = time.monotonic() + 10
    while client.get("/health").json()["generation"] != g2:
        assert time.monotonic() < deadline, "server did not swap back after rollback"
        time.sleep(0.1)
    assert client.get(f"/recall/{users[0]}", params={"k": 3}).json()["generation"] == g2
    assert metric_values(client)[("twotower_generation_swaps_total", ())] == 2
