"""The recall HTTP API (FastAPI): ``/recall``, ``/health``, ``/generation``, ``/metrics``.

Handlers are ``async`` and call the retriever inline. Why not FastAPI's thread pool: one recall
is ~0.1-1 ms of CPU under the GIL (online read, numpy tower, Annoy query), so handing it to a
worker thread adds a context switch per request and buys no parallelism on 2 cores; more
cores are used with more uvicorn workers (``serving.workers``), each process with its own
retriever and generation watcher. Responses are serialised straight from the result
(``Recall.to_json``); the response models document the shape in the OpenAPI schema. No
``from __future__ import annotations`` here: the routes' parameter types are built from the
settings inside ``create_app`` and FastAPI must see them as objects, not strings.
"""

import gc
import json
import logging
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Body, FastAPI, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from serving import api
from twotower.adapters import uvicorn_http
from serving.generation import served_user_id_type
from serving.guard import Guard
from serving.metrics import LatencySnapshots, ServingMetrics
from serving.retriever import Retriever
from serving.watcher import GenerationWatcher
from twotower.core import generations as gens
from twotower.core.config import Settings, load_settings
from twotower.core.errors import UserError
from twotower.core.workspace import Workspace

log = logging.getLogger("serving")


def _json(text: str) -> Response:
    return Response(text, media_type="application/json")


def create_app(settings: Settings, retriever: Retriever | None = None, watch: bool = True) -> FastAPI:
    """The app; loads the served generation at startup unless a ``retriever`` is given."""
    s = settings.serving
    ws = Workspace(settings.workspace)
    state: dict = {"retriever": retriever, "watcher": None, "snapshots": None}
    metrics = ServingMetrics(
        lambda: state["retriever"].current if state["retriever"] is not None else None,
        freshness=ws.stream_dir / "freshness.json",
        online=lambda: state["retriever"].online_health if state["retriever"] is not None else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state["retriever"] is None:
            state["retriever"] = Retriever.open(settings, ws)
        r: Retriever = state["retriever"]
        if watch:
            state["watcher"] = GenerationWatcher(
                r, s.poll_interval_s,
                on_swap=lambda old, new: metrics.swaps.inc(), on_error=lambda exc: metrics.load_failures.inc(),
            ).start()  # fmt: skip
        state["snapshots"] = LatencySnapshots(metrics, ws.serving_dir, s.latency_snapshot_s, lambda: r.current.id).start()
        log.info("serving %s (channel %s)", r.current.id, s.channel)
        # Everything loaded so far (TensorFlow, Feast, the generation) lives for the whole
        # process: move it out of the collector's reach, or each full collection walks
        # millions of objects and costs a p99 spike of tens of milliseconds.
        gc.collect()
        gc.freeze()
        yield
        state["snapshots"].stop()
        if state["watcher"] is not None:
            state["watcher"].stop()
        r.close()

    app = FastAPI(
        title="twotower recall",
        version="1",
        description="Two-tower recall channel: online features -> user tower -> ANN top-k, one generation per request.",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, api.validation_error)
    app.add_exception_handler(HTTPException, api.http_error)
    app.add_exception_handler(UserError, api.user_error)
    app.add_exception_handler(Exception, api.internal_error)
    app.add_middleware(Guard, max_body_bytes=s.max_body_bytes, metrics=metrics,
                       max_url_bytes=s.max_url_bytes, max_header_bytes=s.max_header_bytes)  # fmt: skip
    uvicorn_http.configure(s.max_url_bytes, s.max_header_bytes)  # the server's own head bound (run.py)
    app.state.metrics = metrics
    app.state.serving = state

    # User IDs are typed as the served generation's user entity declares them (Int64 or String).
    id_type = retriever.current.tower.spec.user.id_type if retriever is not None else served_user_id_type(ws)
    Batch = api.batch_request_model(s.max_batch, s.max_k, s.default_k, id_type)
    K = Annotated[int, Query(ge=1, le=s.max_k, description=f"items to return, 1..{s.max_k}")]
    if id_type == "string":
        PathId = Annotated[str, Path(min_length=1, max_length=api.MAX_ID_CHARS, description="user ID (string)")]
        QueryId = Annotated[str, Query(min_length=1, max_length=api.MAX_ID_CHARS, description="user ID (string)")]
    else:
        PathId = Annotated[int, Path(ge=api.INT64_MIN, le=api.INT64_MAX, description="int64 user ID")]
        QueryId = Annotated[int, Query(ge=api.INT64_MIN, le=api.INT64_MAX, description="int64 user ID")]
    errors = api.error_responses()

    Exclude = Annotated[bool | None, Query(description="leave out the user's recently clicked items (default: "
                                                   f"serving.exclude_seen = {str(s.exclude_seen).lower()})")]  # fmt: skip

    def one(user_id, k: int, exclude_seen: bool | None) -> Response:
        result = state["retriever"].recall_batch([user_id], k, exclude_seen=exclude_seen)
        metrics.observe_batch(result)
        return _json(result.recalls[0].to_json())

    @app.get("/recall/{user_id}", response_model=api.RecallResponse, responses=errors, dependencies=[api.known_query("k", "exclude_seen")])
    async def recall_path(user_id: PathId, k: K = s.default_k, exclude_seen: Exclude = None):
        """Top-k items of one user (this channel's candidates)."""
        return one(user_id, k, exclude_seen)

    @app.get("/recall", response_model=api.RecallResponse, responses=errors, dependencies=[api.known_query("user_id", "k", "exclude_seen")])
    async def recall_query(user_id: QueryId, k: K = s.default_k, exclude_seen: Exclude = None):
        """Same as ``/recall/{user_id}``, with the ID as a query parameter."""
        return one(user_id, k, exclude_seen)

    @app.post("/recall", response_model=api.BatchResponse, responses=errors, dependencies=[api.known_query()])
    async def recall_batch(request: Annotated[Batch, Body()]):  # type: ignore[valid-type]
        """Top-k of up to ``serving.max_batch`` users: one online read, one tower forward, one generation."""
        result = state["retriever"].recall_batch(request.user_ids, request.k, exclude_seen=request.exclude_seen)
        metrics.observe_batch(result)
        top = {"generation": result.generation, "channel": s.channel}
        if result.degraded is not None:
            top["degraded"] = result.degraded
        head = json.dumps(top)[:-1]
        return _json(head + ',"results":[' + ",".join(r.to_json() for r in result.recalls) + "]}")

    @app.get("/health")
    async def health():
        """``ok``, or ``degraded`` (HTTP 200 still: recalls are answered, from the popular items)
        with the online store's error; see serving/online_health.py."""
        r = state["retriever"]
        online = r.check_online()
        status = "ok" if online["ok"] else "degraded"
        return {"status": status, "generation": r.current.id, "channel": s.channel, "online_store": online}

    @app.get("/generation")
    async def generation():
        """The served generation (manifest summary), and what ``CURRENT`` names right now."""
        r = state["retriever"]
        ptr = gens.read_pointer(ws)
        return {**r.current.describe(), "published": ptr.current if ptr else None, "swaps": r.swaps}

    @app.get("/metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``serving.app:app_from_env``): settings from env/config file, for workers."""
    return create_app(load_settings())
