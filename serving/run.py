"""Entry points behind ``twotower serve`` and ``twotower recall`` (the CLI only parses options)."""

from __future__ import annotations

import json
import os

from twotower.config import Settings
from twotower.workspace import Workspace


def serve(settings: Settings, host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run the HTTP API under uvicorn until interrupted (binds 127.0.0.1 by default)."""
    import uvicorn

    s = settings.serving
    host, port, workers = host or s.host, port or s.port, workers or s.workers
    common = dict(host=host, port=port, access_log=False, log_level="info", timeout_graceful_shutdown=5)
    if workers == 1:
        from serving.app import create_app

        uvicorn.run(create_app(settings), **common)
    else:
        # Each worker process builds its own app (and loads the generation) from the same
        # workspace and configuration, found through the environment.
        os.environ["TWOTOWER_WORKSPACE"] = str(settings.workspace)
        uvicorn.run("serving.app:app_from_env", factory=True, workers=workers, **common)


def recall(settings: Settings, user_id: int, k: int | None = None, as_json: bool = False) -> list[str]:
    """One user's recall in-process; the lines ``twotower recall`` prints."""
    from serving.retriever import Retriever

    retriever = Retriever.open(settings, Workspace(settings.workspace))
    try:
        result = retriever.recall(user_id, k)
    finally:
        retriever.close()
    if as_json:
        return [json.dumps(result.as_dict(), indent=2)]
    lines = [f"user {result.user_id}: generation {result.generation}, channel {result.channel}, path {result.path}"]
    lines += [f"{rank:>4}  item {item:>10}  score {score:.4f}" for rank, (item, score) in enumerate(result.items(), 1)]
    return lines
