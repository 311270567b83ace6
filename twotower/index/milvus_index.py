"""The item index in Milvus (``index.backend = "milvus"``): one collection per generation.

The generation's ``index/`` directory holds what Annoy's does minus the Annoy file: the meta
(``layout: milvus``, the collection, the index type and its tuned search parameter), the
row -> item_id map and the vectors (exact search, evaluation, re-tuning). The collection holds
``row`` (INT64, primary key), ``item_id`` (the IDs as given: INT64 or VARCHAR) and ``vector``
(inner product on the towers' unit vectors = the model's cosine), inserted by Dask tasks.

Which generation a request sees: the server asks the collection *named in the manifest of the
generation it loaded*, beside that generation's user tower, so a request never mixes two
generations. The alias ``<index.milvus_prefix>_serving`` follows ``CURRENT`` (flipped at
publish and rollback) for anyone else who reads the served catalogue; collections of
generations more than ``index.milvus_keep`` flips back are dropped at publish.

A Milvus server is reached by ``index.milvus_uri``. Milvus Lite (``milvus-lite server
--data-dir D --host 127.0.0.1 --port P``) is one: its embedded mode (a local path as URI)
admits one process per data directory, and the full update and the servers are several.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from twotower.core import generations as gens
from twotower.core.encode import id_array
from twotower.core.errors import UserError
from twotower.index.item_index import IDS_FILE, META_FILE, VECTORS_FILE, IndexMeta

logger = logging.getLogger(__name__)

LAYOUT = "milvus"
INSERT_ROWS = 20_000  # rows per insert call (Milvus caps one insert at 64 MB)
KNOB = {"HNSW": "ef", "IVF_FLAT": "nprobe", "FLAT": None}
RETRY_S = 1.0  # after a failed query, requests answer degraded for this long before one tries again


class IndexUnavailable(UserError):
    """The index server could not answer (down, unreachable, timed out), the message naming it:
    a request is answered degraded, a command (full update, rollback) stops with it (exit 2)."""


def client(uri: str, timeout: float):
    from pymilvus import MilvusClient

    try:
        return MilvusClient(uri=uri, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException or grpc errors
        raise IndexUnavailable(f"Milvus at {uri}: {exc}") from exc


def alias(prefix: str) -> str:
    return f"{prefix}_serving"


def _schema(c, dim: int, ids: np.ndarray):
    from pymilvus import DataType

    schema = c.create_schema(auto_id=False, description="twotower item vectors of one generation")
    schema.add_field("row", DataType.INT64, is_primary=True)
    if ids.dtype.kind in "iu":
        schema.add_field("item_id", DataType.INT64)
    else:
        longest = max((len(str(i).encode()) for i in ids.tolist()), default=1)
        schema.add_field("item_id", DataType.VARCHAR, max_length=min(65_535, max(64, 2 * longest)))
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    return schema


def insert_rows(uri: str, timeout: float, collection: str, start: int, ids: np.ndarray, vectors: np.ndarray) -> int:
    """Dask task: insert rows ``start..start+len(ids)`` of a generation's catalogue."""
    c = client(uri, timeout)
    try:
        for a in range(0, len(ids), INSERT_ROWS):
            chunk = range(a, min(a + INSERT_ROWS, len(ids)))
            c.insert(collection, [{"row": start + i, "item_id": ids[i].item(), "vector": vectors[i]} for i in chunk])
    finally:
        c.close()
    return len(ids)


def build(ids, vectors: np.ndarray, out_dir: Path, settings, dask_client) -> dict:
    """A new collection holding the catalogue, indexed and loaded; its meta in ``out_dir``.

    ``settings``: ``IndexSettings``; ``dask_client``: called to get the Dask client whose tasks
    insert the rows (one task per ``INSERT_ROWS * 10`` rows)."""
    ids = id_array(ids)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    name = f"{settings.milvus_prefix}_{uuid.uuid4().hex[:12]}"
    c = client(settings.milvus_uri, settings.milvus_timeout_s * 60)
    try:
        c.create_collection(name, schema=_schema(c, dim, ids))
        step = INSERT_ROWS * 10
        parts = [(a, ids[a:a + step], vectors[a:a + step]) for a in range(0, n, step)]
        dask = dask_client()
        futures = [dask.submit(insert_rows, settings.milvus_uri, settings.milvus_timeout_s * 60, name, a, i, v,
                               key=f"milvus_insert-{name}-{a}", pure=False) for a, i, v in parts]  # fmt: skip
        inserted = sum(dask.gather(futures))
        if inserted != n:
            raise UserError(f"index: {inserted:,} of {n:,} item vectors reached Milvus collection {name}")
        c.flush(name)
        params = c.prepare_index_params()
        kind = settings.milvus_index_type
        build_params = {"HNSW": {"M": settings.milvus_m, "efConstruction": settings.milvus_ef_construction},
                        "IVF_FLAT": {"nlist": settings.milvus_nlist}, "FLAT": {}}[kind]  # fmt: skip
        params.add_index("vector", index_type=kind, metric_type="IP", params=build_params)
        try:
            c.create_index(name, params)
        except Exception as exc:  # noqa: BLE001
            # A long build outlives the gRPC connection (keepalive GOAWAY at 1M rows) and pymilvus
            # retries the call; the server built the index the first time.
            if "already exists" not in str(exc):
                raise
        c.load_collection(name)
    except IndexUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - what Milvus said, with where
        raise IndexUnavailable(f"Milvus at {settings.milvus_uri}, collection {name}: {exc}") from exc
    finally:
        c.close()
    np.save(out_dir / IDS_FILE, ids)
    np.save(out_dir / VECTORS_FILE, vectors)
    meta = {
        "layout": LAYOUT, "dim": dim, "items": n, "n_trees": 0, "search_k": -1, "backend": "milvus",
        "uri": settings.milvus_uri, "collection": name, "alias": alias(settings.milvus_prefix),
        "index_type": kind, "build_params": build_params, "search_param": KNOB[kind],
        "build_seconds": round(time.perf_counter() - started, 3), "size_bytes": int(vectors.nbytes),
        "timeout_s": settings.milvus_timeout_s, "keep": settings.milvus_keep,
    }  # fmt: skip
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    logger.info(f"index: {n:,} x {dim} into Milvus collection {name} ({kind}) in {meta['build_seconds']:.1f}s")
    return meta


class MilvusIndex:
    """The ``ItemIndex`` API over a generation's collection. Safe to share between threads."""

    shard_count = 1

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.raw = json.loads((self.directory / META_FILE).read_text())
        timeout_s = float(self.raw.get("timeout_s", 1.0))
        self.meta = IndexMeta(**{k: self.raw[k] for k in IndexMeta.__dataclass_fields__})
        self.collection, self.knob = self.raw["collection"], self.raw["search_param"]
        self.item_ids = np.load(self.directory / IDS_FILE, mmap_mode="r")
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._failed: tuple[float, str] | None = None  # (when, why) of the last failed call
        try:  # a server started during an outage serves degraded until Milvus answers
            self._client = client(self.raw["uri"], timeout_s)
        except IndexUnavailable as exc:
            self._client, self._failed = None, (time.monotonic() - RETRY_S, str(exc))

    def files(self) -> list[Path]:
        return []  # nothing of it is a local file to warm

    def search_grid(self, k: int) -> list[int]:
        """The search parameter's candidates for a top-``k`` (HNSW: ef >= k; IVF: nprobe <= nlist)."""
        if self.knob == "ef":
            return sorted({int(k * f) for f in (1, 1.25, 1.5, 2, 3, 4, 6, 8, 12, 16)})
        if self.knob == "nprobe":
            nlist = int(self.raw["build_params"]["nlist"])
            return sorted({min(nlist, p) for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, nlist)})
        return [k]

    def search_k_for(self, k: int) -> int:
        return self.meta.search_k if self.meta.search_k > 0 else max(self.search_grid(k))

    def query(self, vector: np.ndarray, k: int, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item_ids, cosine scores), best first. ``search_k``: ef / nprobe."""
        value = self.search_k_for(k) if search_k is None else search_k
        params = {"metric_type": "IP", "params": {self.knob: max(value, k) if self.knob == "ef" else value}}
        if self.knob is None:
            params = {"metric_type": "IP"}
        c = self._usable_client()

        def search():
            return c.search(self.collection, data=[np.asarray(vector, np.float32)], limit=k, search_params=params,
                            output_fields=["row"])[0]  # fmt: skip

        try:
            try:
                hits = search()
            except Exception as exc:  # noqa: BLE001
                if "load()" not in str(exc) and "not loaded" not in str(exc):
                    raise
                c.load_collection(self.collection)  # a restarted server released it: the served one must be loaded
                hits = search()
        except Exception as exc:  # noqa: BLE001 - down, timed out, collection gone: all the same to a request
            why = f"Milvus collection {self.collection}: {str(exc).splitlines()[0][:300]}"
            with self._lock:
                self._failed = (time.monotonic(), why)
            raise IndexUnavailable(why) from exc
        if self._failed is not None:
            with self._lock:
                self._failed = None
        rows = np.fromiter((h["row"] for h in hits), np.int64, len(hits))
        return np.asarray(self.item_ids[rows]), np.fromiter((h["distance"] for h in hits), np.float32, len(hits))

    def _usable_client(self):
        """The client, or - after a failure - nothing for ``RETRY_S`` (requests answer degraded at
        once instead of each waiting for a dead server), then one new connection."""
        with self._lock:
            if self._failed is None:
                return self._client
            when, why = self._failed
            if time.monotonic() - when < RETRY_S:
                raise IndexUnavailable(why)
            self._failed = (time.monotonic(), why)  # this request tries; the others wait RETRY_S more
        fresh = client(self.raw["uri"], self._timeout_s)  # a gRPC channel that failed may wait out a long backoff
        with self._lock:
            old, self._client = self._client, fresh
        if old is not None:
            old.close()
        return fresh

    def nearest(self, vector: np.ndarray, k: int, search_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (item_ids, angular distances), as ``ItemIndex.nearest`` gives them."""
        ids, scores = self.query(vector, k, search_k)
        return ids, np.sqrt(np.maximum(0.0, 2.0 - 2.0 * scores)).astype(np.float32)

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()


def serve(index_dir: Path, timeout_s: float) -> str:
    """Point the serving alias at the collection of the generation in ``index_dir`` (publish and
    rollback call this after ``CURRENT`` moved). Returns the collection."""
    meta = json.loads((Path(index_dir) / META_FILE).read_text())
    c = client(meta["uri"], timeout_s)
    try:
        if meta["alias"] in c.list_aliases()["aliases"]:
            c.alter_alias(meta["collection"], meta["alias"])
        else:
            c.create_alias(meta["collection"], meta["alias"])
    except Exception as exc:  # noqa: BLE001
        raise IndexUnavailable(f"Milvus at {meta['uri']}: alias {meta['alias']} -> {meta['collection']}: {exc}") from exc
    finally:
        c.close()
    return meta["collection"]


def drop_unkept(uri: str, prefix: str, keep: set[str], timeout_s: float) -> list[str]:
    """Drop this platform's collections (``<prefix>_*``) not in ``keep``; returns the dropped."""
    c = client(uri, timeout_s)
    try:
        dropped = [n for n in c.list_collections() if n.startswith(f"{prefix}_") and n not in keep]
        for name in dropped:
            c.drop_collection(name)
    finally:
        c.close()
    return dropped


def follow_current(ws, prefix: str, drop: bool = True) -> str | None:
    """After ``CURRENT`` moved (publish, rollback): the serving alias to the served generation's
    collection, then (``drop``: at publish) the collections of generations more than
    ``index.milvus_keep`` flips back dropped - a rollback drops nothing, not even the
    generation it stepped back from. Returns the served collection (None: not a Milvus index)."""
    def index_dir(generation_id: str) -> Path:
        return gens.directory(ws, generation_id) / gens.load(ws, generation_id).paths["index"]

    def meta_of(generation_id: str) -> dict:
        return json.loads((index_dir(generation_id) / META_FILE).read_text())

    ptr = gens.read_pointer(ws)
    served_dir = index_dir(ptr.current)
    served = json.loads((served_dir / META_FILE).read_text())
    if served.get("layout") != LAYOUT:
        return None
    serve(served_dir, served["timeout_s"] * 10)
    if not drop:
        return served["collection"]
    kept = {m.get("collection") for m in map(meta_of, ptr.history[-int(served["keep"]):])}
    dropped = drop_unkept(served["uri"], prefix, kept, served["timeout_s"] * 10)
    if dropped:
        logger.info(f"index: dropped Milvus collection(s) {', '.join(dropped)} (more than index.milvus_keep flips back)")
    return served["collection"]


def check_servable(index_dir: Path) -> None:
    """UserError unless the collection of the index in ``index_dir`` (if it is Milvus') exists."""
    meta = json.loads((Path(index_dir) / META_FILE).read_text())
    if meta.get("layout") != LAYOUT:
        return
    c = client(meta["uri"], float(meta["timeout_s"]) * 10)
    try:
        if not c.has_collection(meta["collection"]):
            raise UserError(f"Milvus collection {meta['collection']} is gone (index.milvus_keep={meta['keep']}): "
                            "that generation cannot be served again")  # fmt: skip
    finally:
        c.close()
