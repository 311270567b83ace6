"""Entry points behind ``twotower serve`` and ``twotower recall`` (the CLI only parses options)."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import logging
import os
import socket

from twotower.core.config import Settings
from twotower.core.errors import UserError
from twotower.core.workspace import Workspace

log = logging.getLogger("serving")


def is_loopback(host: str) -> bool:
    """True if every address ``host`` names is a loopback one (``localhost``, 127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False  # uvicorn will fail to bind it; not ours to accept
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, allow_public: bool) -> None:
    """Refuse a non-loopback interface unless ``serving.allow_public_bind`` says it is meant.

    The API has no authentication and no TLS: by default it answers this machine only. Binding
    ``0.0.0.0`` (every interface) or a LAN address is a deployment decision, so it takes an
    explicit setting, and it is logged as a warning every time.
    """
    if is_loopback(host):
        return
    if not allow_public:
        raise UserError(
            f"serving.host={host!r} is not a loopback address: the recall API has no authentication or TLS. "
            "To expose it anyway (behind a proxy, in a trusted network) set serving.allow_public_bind=true "
            "(TWOTOWER_SERVING__ALLOW_PUBLIC_BIND=true or [serving] allow_public_bind = true in twotower.toml)"
        )
    log.warning("binding %s (not loopback; serving.allow_public_bind=true): the API has no authentication or TLS", host)


def http_protocol() -> str:
    """httptools with a bounded request head when httptools is there, else uvicorn's h11."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"  # bounded by h11_max_incomplete_event_size
    return "twotower.adapters.uvicorn_http:BoundedHttpToolsProtocol"


def serve(settings: Settings, host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run the HTTP API under uvicorn until interrupted (binds 127.0.0.1 by default)."""
    import uvicorn

    from twotower.adapters.uvicorn_http import head_limit

    s = settings.serving
    host, port, workers = host or s.host, port or s.port, workers or s.workers
    check_bind(host, s.allow_public_bind)
    common = dict(
        host=host, port=port, access_log=False, log_level="info", timeout_graceful_shutdown=5,
        http=http_protocol(), h11_max_incomplete_event_size=head_limit(), limit_concurrency=s.max_concurrency,
    )  # fmt: skip
    if workers == 1:
        from serving.app import create_app

        uvicorn.run(create_app(settings), **common)
    else:
        # Each worker process builds its own app (and loads the generation) from the same
        # workspace and configuration, found through the environment.
        os.environ["TWOTOWER_WORKSPACE"] = str(settings.workspace)
        uvicorn.run("serving.app:app_from_env", factory=True, workers=workers, **common)


def user_id_of(value: str, id_type: str):
    """A user ID typed on the command line, as the served user entity types it."""
    if id_type == "string":
        return value
    try:
        uid = int(value)
    except ValueError:
        raise UserError(f"USER must be an int64 user ID (the user entity's join key is Int64), got {value!r}") from None
    if not -(2**63) <= uid < 2**63:
        raise UserError(f"USER {value} is out of the int64 range")
    return uid


def recall(settings: Settings, user_id: str, k: int | None = None, as_json: bool = False,
           exclude_seen: bool | None = None) -> list[str]:  # fmt: skip
    """One user's recall in-process; the lines ``twotower recall`` prints."""
    from serving.retriever import Retriever

    retriever = Retriever.open(settings, Workspace(settings.workspace))
    try:
        result = retriever.recall(user_id_of(str(user_id), retriever.current.tower.spec.user.id_type), k,
                                  exclude_seen=exclude_seen)  # fmt: skip
    finally:
        retriever.close()
    if as_json:
        return [json.dumps(result.as_dict(), indent=2)]
    lines = [f"user {result.user_id}: generation {result.generation}, channel {result.channel}, path {result.path}"]
    if result.degraded:
        lines.append(f"degraded: {result.degraded}")
    lines += [f"{rank:>4}  item {item:>10}  score {score:.4f}" for rank, (item, score) in enumerate(result.items(), 1)]
    return lines
