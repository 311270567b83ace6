"""Repeated random kill -9 of ``twotower incremental`` while it consumes a stream (invariants 6, 7).

The world serves g1 (slot 0); day 2 is replayed onto the stream. An uninterrupted twin (same
stream, same online store, in-process) is run first and every state it persists is recorded:
that is, for each stream position, exactly what "trained once on everything up to here" is.
Then the updater runs as a subprocess and is SIGKILLed at random moments, round after round,
each round resuming where the last one died. After EVERY kill:

* invariant 6 - the durable chain state is bitwise the twin's state at the same position (no
  event lost, none trained twice), and the consumer group's committed position is that position
  or the one before it (a crash between persisting and committing); never ahead of the state;
* invariant 7 - the online slot holds only rows stamped g1, and each user's row is the newest
  the durable state says was pushed - or the one the very next (trained, pushed, not yet
  persisted) micro-batch pushed, bitwise what the twin pushed there; never older.

A final plain resume consumes everything and ends bitwise equal to the twin, online rows too.
Kill moments come from a seeded RNG (``TWOTOWER_FAULT_SEED`` replays one; printed with the
rounds). Once on the file event log + SQLite store (state compacted every 4 publishes, so kills
also land in compactions), once on Redis Streams + the Redis store.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from datetime import datetime, time as dtime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from incremental_support import S, chain_state, finish, online_rows, redis_server, serving_g1, start_incremental
from serving_support import shared_world
from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.pipelines.incremental import run
from twotower.pipelines.incremental.state import StateStore
from twotower.stream import open_stream
from twotower.stream.emit import emit_day
from twotower.core.workspace import Workspace

pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone

SEED = int(os.environ.get("TWOTOWER_FAULT_SEED", "20261102"))
MAX_EVENTS = "400"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return shared_world(tmp_path_factory)


def twin_states(settings, ws, monkeypatch) -> dict[str, tuple[int, dict]]:
    """Run the updater uninterrupted in-process; every persisted state by its stream position."""
    states: dict[str, tuple[int, dict]] = {}
    create, append = StateStore.create, StateStore.append

    def recording_create(self, state):
        create(self, state)
        states[state.position] = (state.seq, {k: v.copy() for k, v in state.arrays.items()})

    def recording_append(self, state):
        seq = append(self, state)
        states[state.position] = (seq, {k: v.copy() for k, v in state.arrays.items()})
        return seq

    with monkeypatch.context() as m:  # observes what is persisted; changes nothing
        m.setattr(StateStore, "create", recording_create)
        m.setattr(StateStore, "append", recording_append)
        run(settings, ws, max_events=int(MAX_EVENTS))
    return states


def check_after_kill(settings, ws, g1: str, g1_table: pd.DataFrame, twin: dict, why: str) -> int:
    """Invariants 6 and 7 right after a crash; returns the seq the durable state is at."""
    by_seq = {seq: (position, arrays) for position, (seq, arrays) in twin.items()}
    committed = open_stream(settings, ws).committed(settings.stream.group)
    users = next(iter(by_seq.values()))[1]["user_vocab"]
    online = online_rows(settings, ws, users, 0)
    assert set(online.generation.dropna()) <= {g1}, f"{why}: slot 0 holds {set(online.generation.dropna())}"
    if not StateStore(ws.incremental_dir / g1).exists():  # died before the chain's first snapshot
        assert committed in (None, by_seq[0][0]), why
        base = g1_table.reindex(users)
        present = online.generation.notna().to_numpy()
        assert present.tolist() == base.embedding.notna().tolist(), why
        np.testing.assert_array_equal(np.stack(online.embedding[present]), np.stack(base.embedding[present]), err_msg=why)
        return -1
    state = chain_state(ws, g1)
    assert state.position in twin, f"{why}: state at position {state.position}, which the uninterrupted run never persisted"
    seq, want = twin[state.position]
    assert state.seq == seq, why
    for name in want:  # invariant 6: trained exactly once on everything up to the position
        assert np.array_equal(state.arrays[name], want[name]), f"{why}: {name} differs from the uninterrupted run"
    allowed = {state.position} | ({by_seq[seq - 1][0]} if seq > 0 else {None})
    assert committed in allowed, f"{why}: committed {committed}, state at {state.position}"

    # Invariant 7: each online row is the newest the state says was pushed, or the next batch's.
    stamps, table = state.arrays["stamp_us"], state.arrays["user_table"]
    nxt = by_seq.get(seq + 1, (None, None))[1]
    rows = pd.Index(state.arrays["user_vocab"]).get_indexer(users)
    for i, u in enumerate(users.tolist()):
        r, got = rows[i], online.iloc[i]
        if got.generation is None:
            assert stamps[r] == 0 and u not in g1_table.index, f"{why}: user {u}'s pushed row is missing"
            continue
        sec, emb = got.event_us // S, got.embedding
        if stamps[r] and sec == stamps[r] // S:
            assert np.array_equal(emb, table[r]), f"{why}: user {u} has another embedding under the same stamp"
        elif nxt is not None and nxt["stamp_us"][r] != stamps[r] and sec == nxt["stamp_us"][r] // S:
            assert np.array_equal(emb, nxt["user_table"][r]), f"{why}: user {u}: unpersisted push differs from the twin's"
        else:
            assert stamps[r] == 0 and u in g1_table.index, f"{why}: user {u}'s row is older or newer than any push"
            assert np.array_equal(emb, g1_table.embedding[u]), f"{why}: user {u}'s g1 row changed"
    return seq


def campaign(settings, ws, g1: str, twin: dict, rounds: int, rng: random.Random, label: str) -> list[dict]:
    """Kill -9 the updater ``rounds`` times at random moments; check the invariants after each."""
    g1_table = pd.read_parquet(gens.directory(ws, g1) / "user_id_embedding.parquet").set_index("user_id")
    log: list[dict] = []
    for n in range(1, rounds + 1):
        proc = start_incremental(settings, "--max-events", MAX_EVENTS)
        lines = []
        if n == 1:  # anywhere from start-up (chain creation) on
            delay = rng.uniform(2.0, 7.0)
            time.sleep(delay)
        else:  # after a random number of publishes, somewhere in the next micro-batch: read,
            # train, push, read back, persist, commit (or compact)
            publishes, seen = rng.randint(0, 5), -1  # 5 rounds x at most 6 batches < the stream's 43
            for line in proc.stdout:
                lines.append(line)
                seen += line.startswith(("incremental: resuming", "incremental: new chain", "publish "))
                if seen == publishes:
                    break
            delay = rng.uniform(0.0, 0.4)
            time.sleep(delay)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it drained the stream first: reported below
            pass
        rest, _ = proc.communicate(timeout=60)
        lines += rest.splitlines(keepends=True)
        publishes = sum(line.startswith("publish ") for line in lines)
        why = f"{label} seed {SEED}, round {n} (kill -9 {delay:.2f}s in, after {publishes} publishes)"
        assert proc.returncode == -signal.SIGKILL, f"{why}: the run ended before the kill:\n{''.join(lines[-20:])}"
        seq = check_after_kill(settings, ws, g1, g1_table, twin, why)
        log.append({"round": n, "delay_s": round(delay, 2), "publishes_seen": publishes, "state_seq": seq,
                    "of": len(twin) - 1})  # fmt: skip
    return log


def check_final(settings, ws, g1: str, twin: dict, settings_b, ws_b) -> None:
    final_seq = max(seq for seq, _ in twin.values())
    position, (seq, want) = next((p, v) for p, v in twin.items() if v[0] == final_seq)
    state = chain_state(ws, g1)
    assert state.position == position == open_stream(settings, ws).end() and state.seq == seq
    for name in want:
        assert np.array_equal(state.arrays[name], want[name]), name
    assert open_stream(settings, ws).committed(settings.stream.group) == position
    users = want["user_vocab"]
    a, b = online_rows(settings, ws, users, 0), online_rows(settings_b, ws_b, users, 0)
    assert a.generation.tolist() == b.generation.tolist() and ((a.event_us // S) == (b.event_us // S)).all()
    present = a.generation.notna().to_numpy()
    np.testing.assert_array_equal(np.stack(a.embedding[present]), np.stack(b.embedding[present]))


def report(label: str, rounds: list[dict], seconds: float) -> None:
    print(f"\n{label}: fault seed {SEED}: {len(rounds)} kill -9 rounds survived in {seconds:.0f}s")
    for r in rounds:
        print(f"  {r}")


def test_random_kill_9_on_the_file_log_loses_and_repeats_nothing(shared, tmp_path, monkeypatch):
    _, ws, g1, _g2 = serving_g1(shared, tmp_path / "a")
    # A snapshot every 4 publishes (not 50): kills also land in compactions.
    (ws.root / "twotower.toml").write_text("[incremental]\ncompact_every = 4\n")
    settings = load_settings(workspace=ws.root)
    assert settings.incremental.compact_every == 4
    emit_day(settings, ws, gens.load(ws, g1).day + timedelta(days=1))
    shutil.copytree(ws.root, tmp_path / "twin")  # identical stream, state, online store, settings
    settings_b = load_settings(workspace=tmp_path / "twin")
    ws_b = Workspace(settings_b.workspace)
    feature_store.prepare(settings_b, ws_b)
    twin = twin_states(settings_b, ws_b, monkeypatch)
    assert chain_state(ws_b, g1).seq > 40 and not (ws_b.incremental_dir / g1 / "deltas" / f"{4:012d}.npz").exists()
    assert len(twin) > 20, "enough micro-batches to kill in"

    started = time.monotonic()
    rounds = campaign(settings, ws, g1, twin, 5, random.Random(SEED), "file log")
    assert "resuming the chain of" in finish(start_incremental(settings, "--max-events", MAX_EVENTS))
    check_final(settings, ws, g1, twin, settings_b, ws_b)
    report("incremental, file log + SQLite", rounds, time.monotonic() - started)
    assert any(r["state_seq"] > 0 for r in rounds), f"seed {SEED}: no kill landed after a publish: {rounds}"


def test_random_kill_9_on_redis_streams_loses_and_repeats_nothing(shared, tmp_path, monkeypatch):
    """A: Redis Streams + Redis store, killed; B (twin): the same entries, IDs and all, on another
    stream key + its own SQLite store, uninterrupted."""
    import redis
    from materialize.user_embeddings import write_online

    with redis_server() as port:
        _, ws0, g1, _g2 = serving_g1(shared, tmp_path / "a")
        settings = load_settings(
            workspace=ws0.root, online_store={"type": "redis", "redis_port": port},
            stream={"type": "redis", "redis_port": port, "name": "events"},
        )  # fmt: skip
        ws = Workspace(settings.workspace)
        feature_store.apply(settings, ws)
        g1_end = datetime.combine(gens.load(ws, g1).day, dtime(0), tzinfo=timezone.utc) + timedelta(days=1)
        feature_store.store(settings, ws).materialize(
            start_date=datetime(2000, 1, 1, tzinfo=timezone.utc), end_date=g1_end, feature_views=["user_profile"]
        )
        write_online(settings, ws, g1)
        emit_day(settings, ws, gens.load(ws, g1).day + timedelta(days=1))
        client = redis.Redis(port=port)
        with client.pipeline(transaction=True) as pipe:
            for entry_id, fields in client.xrange("events"):
                pipe.xadd("events-b", fields, id=entry_id)
            pipe.execute()
        _, ws_b0, _, _ = serving_g1(shared, tmp_path / "b")
        settings_b = load_settings(workspace=ws_b0.root, stream={"type": "redis", "redis_port": port, "name": "events-b"})
        ws_b = Workspace(settings_b.workspace)
        twin = twin_states(settings_b, ws_b, monkeypatch)

        started = time.monotonic()
        rounds = campaign(settings, ws, g1, twin, 3, random.Random(SEED + 1), "redis")
        assert "resuming the chain of" in finish(start_incremental(settings, "--max-events", MAX_EVENTS))
        check_final(settings, ws, g1, twin, settings_b, ws_b)
        group = {g["name"].decode(): g for g in client.xinfo_groups("events")}[settings.stream.group]
        assert group["last-delivered-id"].decode() == open_stream(settings, ws).end() and group["pending"] == 0
        report("incremental, Redis Streams + Redis store", rounds, time.monotonic() - started)
