"""``twotower status``: what an operator checks first, in one command.

Each check reads what the pipelines left in the workspace, except the last one, which asks the
serving path itself for one known user (so it also tells whether the online store answers):

* ``generation`` - the served generation, its day and parent, its recall against popularity;
* ``index``      - the served item index: items, size, shards, ``search_k``;
* ``gate``       - the newest day Great Expectations judged, and its verdict;
* ``incremental``- the chain of intraday pushes: which generation, when it last published, its
  committed stream position and append -> visible lag (``stream/freshness.json``);
* ``serving``    - one recall for a user of the served generation: the path it took (``embedding``
  = the online store answered with the user's row) and how long it took.

A check is *ok* unless it finds something to act on (nothing published, the last gate refused a
day, the chain follows another generation, the online store did not answer).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import pyarrow.parquet as pq

from twotower.core import generations as gens
from twotower.core.config import Settings
from twotower.core.workspace import Workspace


@dataclass
class Check:
    name: str
    ok: bool
    line: str
    data: dict = field(default_factory=dict)


def _age(stamp: str | datetime | None) -> str:
    if not stamp:
        return "?"
    then = stamp if isinstance(stamp, datetime) else datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = (datetime.now(timezone.utc) - then).total_seconds()
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _generation(served: gens.Manifest | None) -> Check:
    if served is None:
        return Check("generation", False, "nothing published: run `twotower backfill START END` or `twotower full-update DAY`")
    m = served.metrics
    quality = ""
    if "recall@100" in m:
        quality = f"; recall@100 {m['recall@100']:.3f} (popularity {m.get('popularity_recall@100', float('nan')):.3f})"
    line = f"{served.id} (day {served.day}, parent {served.parent or '-'}), published {_age(served.created_at)}{quality}"
    return Check("generation", True, line, {"id": served.id, "day": str(served.day), "parent": served.parent,
                                             "created_at": served.created_at.isoformat(), "metrics": m})  # fmt: skip


def _index(served: gens.Manifest) -> Check:
    index = served.index
    if index.get("backend") == "milvus":
        line = (f"{index.get('items', 0):,} items in Milvus collection {index.get('collection')} ({index.get('index_type')}, "
                f"{index.get('search_param')} {index.get('search_k')})")  # fmt: skip
        return Check("index", True, line, dict(index))
    line = (f"{index.get('items', 0):,} items, {index.get('size_bytes', 0) / 2**20:.1f} MiB in {index.get('shards', 1)} "
            f"shard(s), {index.get('n_trees')} trees, search_k {index.get('search_k')}")  # fmt: skip
    return Check("index", True, line, dict(index))


def _gate(ws: Workspace) -> Check:
    summaries = sorted((ws.gx_dir / "summaries").glob("*.json"))
    if not summaries:
        return Check("gate", True, "no day validated yet")
    data = json.loads(summaries[-1].read_text())
    failed = {name: s["failures"] for name, s in data.get("suites", {}).items() if not s.get("success", True)}
    if data.get("success"):
        line = f"{data['day']} passed ({len(data.get('suites', {}))} suites, {_age(data.get('validated_at'))})"
    else:
        what = "; ".join(f"{name}: {len(f)} failed" for name, f in failed.items())
        line = f"{data['day']} REFUSED ({what}): `twotower validate {data['day']}` names each expectation"
    return Check("gate", bool(data.get("success")), line, {"day": data["day"], "success": data.get("success"),
                                                            "validated_at": data.get("validated_at"), "failed": failed})  # fmt: skip


def _incremental(ws: Workspace, served: gens.Manifest) -> Check:
    path = ws.stream_dir / "freshness.json"
    if not path.exists():
        return Check("incremental", True, "no incremental update has published yet (`twotower incremental`)")
    data = json.loads(path.read_text())
    stream, lag = data.get("stream", {}), data.get("window", {}).get("append_to_visible_seconds", {})
    follows = data.get("generation")
    line = (f"chain of {follows}, last publish {_age(data.get('updated_at'))}, committed {stream.get('committed')} "
            f"of the {stream.get('type')} stream {stream.get('name')!r}")  # fmt: skip
    if stream.get("lag_events") is not None:
        line += f" ({stream['lag_events']:,} events behind)"
    if lag.get("p95") is not None:
        line += f", append -> visible p95 {lag['p95']:.2f} s"
    ok = follows == served.id
    if not ok:
        line += f"; NOT the served generation {served.id}: start `twotower incremental` to follow it"
    return Check("incremental", ok, line, {"generation": follows, "updated_at": data.get("updated_at"),
                                           "stream": stream, "append_to_visible_seconds": lag})  # fmt: skip


def _serving(settings: Settings, ws: Workspace, served: gens.Manifest) -> Check:
    from serving.retriever import Retriever

    # One user of the generation: the first row of its embedding table (not the whole table).
    first = next(pq.ParquetFile(gens.directory(ws, served.id) / served.paths["user_id_embedding"]).iter_batches(batch_size=1), None)
    if first is None or first.num_rows == 0:
        return Check("serving", True, "the served generation has no user ID embeddings to ask for")
    user = first.column(0)[0].as_py()
    try:
        retriever = Retriever.open(settings, ws)
    except Exception as exc:  # noqa: BLE001 - what an operator needs is the reason, whatever it is
        return Check("serving", False, f"cannot open the served generation: {exc}")
    try:
        started = time.perf_counter()
        got = retriever.recall(user, k=10)
        ms = (time.perf_counter() - started) * 1000
    finally:
        retriever.close()
    ok = got.path == "embedding" and got.degraded is None
    line = f"user {user!r} -> path {got.path}, {len(got.item_ids)} items from {got.generation} in {ms:.1f} ms"
    if got.degraded:
        line += f"; online store: {got.degraded}"
    return Check("serving", ok, line, {"user_id": user, "path": got.path, "degraded": got.degraded, "ms": round(ms, 2)})


def status(settings: Settings, ws: Workspace) -> list[Check]:
    served = gens.current(ws)
    checks = [_generation(served)]
    if served is not None:
        checks.append(_index(served))
    checks.append(_gate(ws))
    if served is not None:
        checks += [_incremental(ws, served), _serving(settings, ws, served)]
    return checks


def as_json(checks: list[Check]) -> str:
    return json.dumps({"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, indent=2, default=str)
