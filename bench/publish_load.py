"""Load during a publish: keep-alive clients hammer ``twotower serve`` while a real
``twotower full-update DAY`` publishes the next generation; then what they saw is checked.

Used by ``bench/bench_load.py`` (60 s, a 5k-user world) and ``tests/test_load_publish.py``
(a tiny world). The client is a bounded asyncio loop on raw keep-alive sockets (as in
``bench_serving._client``): ``concurrency`` connections, each sending its next request as soon
as the previous answer is read. Every answer is kept as a small record (times, status,
generation(s), a hash of each user's item IDs, paths), so all of them can be checked.

What "no mixed generation" means with several uvicorn workers. Each worker process swaps on
its own (its watcher polls ``CURRENT``), so right after a flip one worker can still answer
with the old generation while the other already answers with the new one: that is allowed.
What is checked:

1. every answer is 200 and names one of the two generations; a batch names one generation
   for all of its users;
2. an answer received before the flip is of the old generation;
3. per connection (one connection is served by one worker for its whole life) the generation
   never goes back: after the first answer of the new generation, no old one;
4. each answer is internally consistent with the generation it states: its item IDs are
   exactly what an in-process ``Retriever`` pinned on that generation computes for the same
   users, k and UTC hour, over the same online store. Profiles are not generation-bound (the
   publish refreshes them before the flip), so an old-generation answer may match the old
   generation on the profiles before *or* after the publish; nothing else is accepted. A
   request that mixed generations (this generation's tower with the other's index or ID
   embedding slot) matches neither.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Request:
    kind: str  # "get" | "batch"
    key: int  # user ID (get) or batch number (batch)
    users: tuple[int, ...]
    wire: bytes  # the HTTP/1.1 request as sent


def build_requests(users: Sequence[int], batches: Sequence[Sequence[int]], k: int, batch_repeat: int = 3) -> list[Request]:
    """GET /recall/{user}?k= for every user, POST /recall for each batch (``batch_repeat`` times)."""
    out = [
        Request("get", int(u), (int(u),), f"GET /recall/{int(u)}?k={k} HTTP/1.1\r\nhost: load\r\n\r\n".encode())
        for u in users
    ]
    for b, members in enumerate(batches):
        body = json.dumps({"user_ids": [int(u) for u in members], "k": k}).encode()
        head = f"POST /recall HTTP/1.1\r\nhost: load\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        out += [Request("batch", b, tuple(int(u) for u in members), head.encode() + body)] * batch_repeat
    return out


@dataclass
class Answer:
    conn: int
    request: int  # index into the request list
    sent: float  # time.monotonic()
    received: float
    hour: tuple[int, int]  # UTC hour at send and at receipt
    status: int  # 0 = transport error
    generation: str | None = None
    generations: tuple = ()  # per user
    hashes: tuple = ()  # per user: hash of the item ID tuple
    paths: tuple = ()
    error: str | None = None


@dataclass
class LoadRun:
    answers: list[Answer]
    started: float
    ended: float
    publish_started: float | None = None  # subprocess launched
    publish_step: float | None = None  # its "== publish" line
    publish_exit: float | None = None
    publish_rc: int | None = None
    flip: float | None = None  # CURRENT replaced (its mtime, on the monotonic clock)
    flip_observed: float | None = None  # when the client's poll saw it
    new_generation: str | None = None
    log: list[tuple[float, str]] = field(default_factory=list)


def _parse(conn: int, index: int, req: Request, sent: float, hour0: int, head: bytes, body: bytes) -> Answer:
    received = time.monotonic()
    status = int(head[9:12])
    answer = Answer(conn, index, sent, received, (hour0, time.gmtime().tm_hour), status)
    if status != 200:
        answer.error = body[:300].decode(errors="replace")
        return answer
    data = json.loads(body)
    results = [data] if req.kind == "get" else data["results"]
    answer.generation = data["generation"]
    answer.generations = tuple(r["generation"] for r in results)
    answer.hashes = tuple(hash(tuple(i["item_id"] for i in r["items"])) for r in results)
    answer.paths = tuple(r["path"] for r in results)
    return answer


async def _connection(conn: int, port: int, requests: list[Request], stop: asyncio.Event, out: list[Answer],
                      pause_s: float) -> None:  # fmt: skip
    n, i = len(requests), conn
    reader = writer = None
    while not stop.is_set():
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as exc:
                now = time.monotonic()
                out.append(Answer(conn, -1, now, now, (0, 0), 0, error=f"connect: {exc!r}"))
                await asyncio.sleep(0.05)
                continue
        i = (i + 7919) % n
        req = requests[i]
        sent, hour0 = time.monotonic(), time.gmtime().tm_hour
        try:
            writer.write(req.wire)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            out.append(_parse(conn, i, req, sent, hour0, head, body))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            now = time.monotonic()
            out.append(Answer(conn, i, sent, now, (hour0, time.gmtime().tm_hour), 0, error=repr(exc)))
            writer.close()
            reader = writer = None
        if pause_s:
            await asyncio.sleep(pause_s)
    if writer is not None:
        writer.close()


async def _watch_pointer(pointer: Path, old: str, run: LoadRun, stop: asyncio.Event, every_s: float = 0.005) -> None:
    """Time the flip: CURRENT is replaced (new inode) naming another generation."""
    offset = time.time() - time.monotonic()
    seen = os.stat(pointer).st_ino
    while not stop.is_set() and run.flip is None:
        await asyncio.sleep(every_s)
        try:
            st = os.stat(pointer)
        except FileNotFoundError:
            continue
        if st.st_ino == seen:
            continue
        seen = st.st_ino
        current = json.loads(pointer.read_text())["current"]
        if current != old:
            run.flip_observed = time.monotonic()
            run.flip = min(run.flip_observed, st.st_mtime_ns / 1e9 - offset)
            run.new_generation = current


async def _publish(cmd: list[str], env: dict, run: LoadRun, log_path: Path) -> None:
    run.publish_started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=dict(env, PYTHONUNBUFFERED="1"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    with open(log_path, "w") as log:
        async for raw in proc.stdout:
            now, line = time.monotonic(), raw.decode(errors="replace").rstrip()
            log.write(f"{now - run.started:9.3f} {line}\n")
            run.log.append((now, line))
            if line.strip() == "== publish" and run.publish_step is None:
                run.publish_step = now
    run.publish_rc = await proc.wait()
    run.publish_exit = time.monotonic()


async def _run(port, requests, concurrency, publish_cmd, publish_env, publish_at, min_seconds, tail_s, max_seconds,
               pause_s, pointer, old_generation, log_path) -> LoadRun:  # fmt: skip
    stop = asyncio.Event()
    answers: list[Answer] = []
    run = LoadRun(answers, started=time.monotonic(), ended=0.0)
    clients = [asyncio.create_task(_connection(c, port, requests, stop, answers, pause_s)) for c in range(concurrency)]
    watcher = asyncio.create_task(_watch_pointer(pointer, old_generation, run, stop))
    publisher = None
    while True:
        await asyncio.sleep(0.05)
        now = time.monotonic() - run.started
        if publisher is None and now >= publish_at:
            publisher = asyncio.create_task(_publish(publish_cmd, publish_env, run, log_path))
        done = run.flip is not None and time.monotonic() >= run.flip + tail_s and now >= min_seconds
        failed = run.publish_rc not in (None, 0) or (run.publish_rc == 0 and run.flip is None and publisher.done())
        if done or failed or now >= max_seconds:
            break
    stop.set()
    await asyncio.gather(*clients)
    run.ended = time.monotonic()
    await watcher
    if publisher is not None:
        await publisher  # the publish finishes (report writing) even when the load has ended
    return run


def run_load(port: int, requests: list[Request], *, concurrency: int, publish_cmd: list[str], publish_env: dict,
             pointer: Path, old_generation: str, log_path: Path, publish_at: float = 10.0, min_seconds: float = 60.0,
             tail_s: float = 5.0, max_seconds: float = 600.0, pause_s: float = 0.0) -> LoadRun:  # fmt: skip
    """Load from t=0; start ``publish_cmd`` at ``publish_at``; stop at ``min_seconds`` or
    ``tail_s`` after the flip, whichever is later (``max_seconds`` at most, or when the
    publish failed)."""
    return asyncio.run(_run(port, requests, concurrency, publish_cmd, publish_env, publish_at, min_seconds, tail_s,
                            max_seconds, pause_s, pointer, old_generation, log_path))  # fmt: skip


# --- expectations ------------------------------------------------------------------------------
def expected(retriever, requests: list[Request], k: int, hours: set[int]) -> dict[tuple, tuple]:
    """(kind, key, hour) -> per-user item-ID hashes, computed in-process by a pinned retriever."""
    out: dict[tuple, tuple] = {}
    for req in {(r.kind, r.key): r for r in requests}.values():
        for hour in hours:
            result = retriever.recall_batch(list(req.users), k, hour=hour)
            out[(req.kind, req.key, hour)] = tuple(hash(tuple(r.item_ids.tolist())) for r in result.recalls)
    return out


def hours_of(run: LoadRun) -> set[int]:
    return {h for a in run.answers for h in a.hour if a.status == 200}


# --- checks and summary -----------------------------------------------------------------------
def check(run: LoadRun, requests: list[Request], old: str, new: str, expect: dict[str, list[dict]]) -> dict:
    """The four checks of the module docstring; returns counts and the first problems found."""
    problems: list[str] = []
    ok = [a for a in run.answers if a.status == 200]
    errors = [a for a in run.answers if a.status != 200]
    for a in errors[:5]:
        problems.append(f"error: conn {a.conn} status {a.status} {a.error}")
    foreign = [a for a in ok if a.generation not in (old, new) or set(a.generations) != {a.generation}]
    for a in foreign[:5]:
        problems.append(f"generation: answer names {a.generation} / users {a.generations}")
    early = [a for a in ok if run.flip is not None and a.received < run.flip and a.generation != old]
    if run.flip is None:
        early = [a for a in ok if a.generation != old]
    for a in early[:5]:
        problems.append(f"before the flip: {a.generation} answered {run.flip - a.received if run.flip else '?'} s early")
    back = []
    first_new: dict[int, float] = {}
    for a in sorted(ok, key=lambda a: a.received):
        if a.generation == new:
            first_new.setdefault(a.conn, a.received)
        elif a.conn in first_new and a.sent > first_new[a.conn]:
            back.append(a)
    for a in back[:5]:
        problems.append(f"went back: conn {a.conn} got {old} after {new}")
    inconsistent = []
    for a in ok:
        req = requests[a.request]
        states = expect.get(a.generation, [])
        if not any(state.get((req.kind, req.key, h)) == a.hashes for state in states for h in a.hour):
            inconsistent.append(a)
    for a in inconsistent[:5]:
        problems.append(f"inconsistent: {requests[a.request].kind} {requests[a.request].users[:4]} under {a.generation}")
    new_answers = [a.received for a in ok if a.generation == new]
    old_after = [a.received for a in ok if a.generation == old and run.flip is not None and a.received >= run.flip]
    return {
        "answers": len(run.answers), "ok": len(ok), "errors": len(errors), "foreign_or_mixed_batches": len(foreign),
        "new_generation_before_flip": len(early), "went_back_on_a_connection": len(back),
        "checked_against_pinned_retriever": len(ok), "inconsistent": len(inconsistent),
        "answers_by_generation": {g: sum(a.generation == g for a in ok) for g in (old, new)},
        "flip_to_first_new_answer_s": _r(min(new_answers) - run.flip) if new_answers and run.flip else None,
        "flip_to_last_old_answer_s": _r(max(old_after) - run.flip) if old_after else 0.0 if run.flip else None,
        "flip_to_first_new_answer_per_connection_s": sorted(_r(t - run.flip) for t in first_new.values()) if run.flip else [],
        "connections_that_saw_the_new_generation": len(first_new),
        "problems": problems,
    }  # fmt: skip


def _r(x: float) -> float:
    return round(float(x), 4)


def latency(answers: list[Answer]) -> dict:
    if not answers:
        return {"requests": 0}
    lat = np.array([a.received - a.sent for a in answers]) * 1e3
    span = max(a.received for a in answers) - min(a.sent for a in answers)
    return {
        "requests": len(answers), "errors": sum(a.status != 200 for a in answers),
        "req_per_s": round(len(answers) / span, 1) if span > 0 else None,
        "p50_ms": _r(np.percentile(lat, 50)), "p90_ms": _r(np.percentile(lat, 90)),
        "p99_ms": _r(np.percentile(lat, 99)), "max_ms": _r(lat.max()), "mean_ms": _r(lat.mean()),
    }  # fmt: skip


def summary(run: LoadRun, requests: list[Request], swap_tail_s: float = 5.0) -> dict:
    """Request counts, rate and latency overall and per phase of the publish."""
    a = [x for x in run.answers if x.request >= 0]
    t0 = run.started

    def between(lo, hi):
        return [x for x in a if lo <= x.sent < hi]

    phases = {"overall": latency(a)}
    for kind in ("get", "batch"):
        phases[f"overall_{kind}"] = latency([x for x in a if requests[x.request].kind == kind])
    if run.publish_started is not None:
        phases["before_publish"] = latency(between(t0, run.publish_started))
    if run.flip is not None:
        phases["update_running_until_flip"] = latency(between(run.publish_started, run.flip))
        if run.publish_step is not None:
            phases["swap_window"] = latency(between(run.publish_step, run.flip + swap_tail_s))
        phases["after_swap_window"] = latency(between(run.flip + swap_tail_s, run.ended))

    def rel(t):
        return None if t is None else _r(t - t0)

    return {
        "seconds": _r(run.ended - t0),
        "timeline_s": {"publish_started": rel(run.publish_started), "publish_step": rel(run.publish_step),
                       "flip": rel(run.flip), "flip_observed_by_client": rel(run.flip_observed),
                       "publish_exit": rel(run.publish_exit), "load_ended": rel(run.ended)},  # fmt: skip
        "swap_window": f"from the update's '== publish' step to {swap_tail_s} s after the flip",
        "publish_returncode": run.publish_rc,
        "phases": phases,
    }
