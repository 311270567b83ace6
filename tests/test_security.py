"""Security basics of the recall server and the configuration.

1. ``twotower serve`` listens on loopback only unless told otherwise, and a non-loopback
   interface needs ``serving.allow_public_bind=true`` (the API has no auth and no TLS).
2. Request size limits: URL, headers (also a head that never ends), body, batch size, k: each
   a 4xx whose error names the setting; the server keeps serving afterwards.
3. No path from a request to the filesystem: every parameter of every route is an integer
   (checked on the app's routes, so a new endpoint must be reviewed here), unknown query
   parameters are refused, and traversal attempts get 4xx and never a file's content.
4. The Redis password comes only from the environment: with a real redis-server that requires
   it, a unique canary password appears in no output, log or file (feast yaml, feast apply,
   materialize, serve + requests, /health, /metrics, failing commands, Redis down).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, time as dtime, timedelta, timezone
from typing import get_args

import httpx
import psutil
import pytest

from bench import local_servers
from serving_support import TWOTOWER, copy_world, free_port, running, shared_world, twotower_server
from twotower import feature_store
from twotower.core import generations as gens
from twotower.core.config import load_settings
from twotower.core.workspace import Workspace

pytestmark = pytest.mark.slow  # started first (conftest): a long file must not end the run alone


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`twotower serve` with the default configuration over a copy of the shared world."""
    _, ws0, ids = shared_world(tmp_path_factory)
    settings, ws = copy_world(ws0, tmp_path_factory.mktemp("security") / "ws")
    with twotower_server(ws, ws.root / "serve.log") as base:
        yield settings, ws, ids, base


def known_user(ws, generation: str) -> int:
    import pandas as pd

    return int(pd.read_parquet(gens.directory(ws, generation) / "user_id_embedding.parquet")["user_id"].iloc[0])


def raw(base: str, data: bytes, chunk: int = 16384, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``data`` on a fresh connection, stopping as soon as the server answers; return
    (status, body). For heads that never end, so no HTTP client library normalises them."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        for i in range(0, len(data), chunk):
            try:
                sock.sendall(data[i : i + chunk])
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0.02)[0]:
                break
        response = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                part = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not part:
                break
            response += part
            head, _, body = response.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head[9:12]), body


# --- 1. binding ------------------------------------------------------------------------------
def test_serve_listens_on_loopback_only_by_default(served):
    from twotower.core.config import Settings

    assert Settings().serving.host == "127.0.0.1" and Settings().serving.allow_public_bind is False
    port = int(served[3].rsplit(":", 1)[1])
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and all(c.laddr.ip in ("127.0.0.1", "::1") for c in listening), listening
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")]  # fmt: skip
    for address in others:  # this machine's other interfaces do not answer
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_public_bind_needs_the_explicit_setting(served, how):
    _, ws, _, _ = served
    port = free_port()
    env = dict(os.environ, TWOTOWER_WORKSPACE=str(ws.root))
    cmd = [str(TWOTOWER), "serve", "--port", str(port)]
    if how == "flag":
        cmd += ["--host", "0.0.0.0"]
    else:
        env["TWOTOWER_SERVING__HOST"] = "0.0.0.0"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "serving.host='0.0.0.0' is not a loopback address" in proc.stderr
    assert "serving.allow_public_bind=true" in proc.stderr
    assert not [c for c in psutil.net_connections("inet") if c.laddr.port == port]


def test_bind_decision(caplog):
    from serving.run import check_bind, is_loopback
    from twotower.core.errors import UserError

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "no-such-host.invalid"))
    check_bind("localhost", allow_public=False)
    with pytest.raises(UserError, match="serving.allow_public_bind"):
        check_bind("10.1.2.3", allow_public=False)
    with caplog.at_level("WARNING", logger="serving"):
        check_bind("0.0.0.0", allow_public=True)  # allowed, and said loudly
    assert "no authentication" in caplog.text


# --- 2. size limits -----------------------------------------------------------------------------
def test_size_limits_are_4xx_naming_the_setting(served):
    settings, ws, ids, base = served
    s = settings.serving
    user = known_user(ws, ids[1])
    with httpx.Client(base_url=base, timeout=10) as client:
        long_url = client.get(f"/recall/{user}", params={"k": 5, "pad": "x" * s.max_url_bytes})
        assert long_url.status_code == 414 and "serving.max_url_bytes" in long_url.json()["error"]
        one_big = client.get(f"/recall/{user}", headers={"x-pad": "x" * s.max_header_bytes})
        assert one_big.status_code == 431 and "serving.max_header_bytes" in one_big.json()["error"]
        many = client.get(f"/recall/{user}", headers={f"x-pad-{i}": "x" * 60 for i in range(200)})
        assert many.status_code == 431 and "serving.max_header_bytes" in many.json()["error"]
        body = client.post("/recall", content=b'{"user_ids": [' + b"1," * s.max_body_bytes + b"1]}",
                           headers={"content-type": "application/json"})  # fmt: skip
        assert body.status_code == 413 and "serving.max_body_bytes" in body.json()["error"]
        batch = client.post("/recall", json={"user_ids": list(range(s.max_batch + 1))})
        assert batch.status_code == 422 and "serving.max_batch" in batch.json()["error"]
        big_k = client.get(f"/recall/{user}", params={"k": s.max_k + 1})
        assert big_k.status_code == 422 and "serving.max_k" in big_k.json()["error"]
        # Just under the limits is fine.
        ok = client.get(f"/recall/{user}", params={"k": 5}, headers={"x-pad": "x" * (s.max_header_bytes // 2)})
        assert ok.status_code == 200 and ok.json()["generation"] == ids[1]
        counts = client.get("/metrics").text
        assert 'status="414"' in counts and 'status="431"' in counts


def test_a_head_that_never_ends_is_cut_off(served):
    """uvicorn's httptools protocol alone would buffer these without limit."""
    settings, ws, ids, base = served
    endless_header = b"GET /recall/1 HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * (4 << 20)
    status, body = raw(base, endless_header)
    assert status == 431 and b"serving.max_header_bytes" in body, body
    endless_url = b"GET /recall/1?k=5&pad=" + b"a" * (4 << 20)
    status, body = raw(base, endless_url)
    assert status == 414 and b"serving.max_url_bytes" in body, body
    many_headers = b"GET /recall/1 HTTP/1.1\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(200_000))
    status, body = raw(base, many_headers)
    assert status == 431, body
    assert httpx.get(f"{base}/recall/{known_user(ws, ids[1])}?k=3", timeout=10).status_code == 200


# --- 3. no path from a request to the filesystem -----------------------------------------------
ROUTES = {("/recall/{user_id}", "GET"), ("/recall", "GET"), ("/recall", "POST"), ("/health", "GET"),
          ("/generation", "GET"), ("/metrics", "GET")}  # fmt: skip


def test_every_route_parameter_is_an_integer(served):
    """A structural check: a new endpoint (e.g. one taking a generation id or a file name) fails
    here until it is reviewed for path safety and added."""
    from fastapi.routing import APIRoute

    from serving.app import create_app

    app = create_app(served[0], watch=False)
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert {(r.path, m) for r in routes for m in r.methods} == ROUTES
    for route in routes:
        d = route.dependant
        for param in d.path_params + d.query_params:  # IDs and k are integers; exclude_seen a flag
            want = bool | None if param.name == "exclude_seen" else int
            assert param.field_info.annotation == want, (route.path, param.name)
        for param in d.body_params:
            fields = param.field_info.annotation.model_fields
            assert set(fields) == {"user_ids", "k", "exclude_seen"}, fields
            (flag, _none) = get_args(fields["exclude_seen"].annotation)  # Optional[StrictBool]
            assert get_args(flag)[0] is bool and _none is type(None)
            (item,) = get_args(fields["user_ids"].annotation)  # list[StrictInt]
            assert get_args(item)[0] is int and any(getattr(m, "strict", False) for m in get_args(item)[1:])
            assert fields["k"].annotation is int
        for dep in d.dependencies:
            assert not dep.path_params and not dep.query_params and not dep.body_params


TRAVERSALS = [
    b"/recall/..%2F..%2Fetc%2Fpasswd", b"/recall/%2e%2e%2f%2e%2e%2fetc%2fpasswd", b"/recall/../../etc/passwd",
    b"/../../etc/passwd", b"/generation/../../etc/passwd", b"/generation/..%2F..%2Fgenerations%2FCURRENT",
    b"/generation/CURRENT", b"/docs/../../../etc/passwd", b"/openapi.json/..%2f..%2fetc%2fpasswd",
    b"/recall/1%00", b"/recall/1?k=5&generation=..%2F..%2Fetc%2Fpasswd", b"/recall?user_id=1&file=/etc/passwd",
    b"/recall/1?k=5&index=/etc/passwd", b"/recall/~root", b"/recall/%2Fetc%2Fpasswd",
]  # fmt: skip


@pytest.mark.parametrize("target", TRAVERSALS, ids=lambda t: t.decode())
def test_traversal_attempts_get_4xx_and_no_file(served, target):
    _, ws, _, base = served
    status, body = raw(base, b"GET " + target + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert 400 <= status < 500, (status, body[:200])
    current = (ws.generations_dir / gens.POINTER).read_bytes()
    assert b"root:" not in body and current[:40] not in body


def test_unknown_query_parameter_is_named(served):
    _, ws, ids, base = served
    r = httpx.get(f"{base}/recall/{known_user(ws, ids[1])}", params={"k": 3, "generation": ids[0]}, timeout=10)
    assert r.status_code == 422 and r.json()["error"].startswith("query.generation: unknown query parameter")
    r = httpx.post(f"{base}/recall", params={"generation": ids[0]}, json={"user_ids": [1]}, timeout=10)
    assert r.status_code == 422 and "query.generation" in r.json()["error"]


# --- 4. the Redis password stays a secret ------------------------------------------------------
@contextmanager
def redis_requiring(password: str):
    """redis-server on loopback that requires ``password`` (given on stdin, not argv)."""
    import redis

    with local_servers.redis_server(password=password) as (port, proc):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).get("x")  # the password is really required
        yield port, proc


def run_cli(args: list[str], env: dict, outputs: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(TWOTOWER), *args], env=env, capture_output=True, text=True, timeout=180)
    outputs.append(proc.stdout + proc.stderr)
    return proc


def test_redis_password_never_leaves_the_environment(tmp_path_factory, monkeypatch, capfd):
    from materialize.user_embeddings import write_online

    canary = f"canary-{uuid.uuid4().hex}"
    _, ws0, (g1, g2) = shared_world(tmp_path_factory)
    _, ws = copy_world(ws0, tmp_path_factory.mktemp("secret") / "ws")
    outputs: list[str] = []
    with redis_requiring(canary) as (port, redis_proc):
        redis_env = {"TWOTOWER_WORKSPACE": str(ws.root), "TWOTOWER_ONLINE_STORE__TYPE": "redis",
                     "TWOTOWER_ONLINE_STORE__REDIS_PORT": str(port), "TWOTOWER_ONLINE_STORE__REDIS_PASSWORD": canary}  # fmt: skip
        for key, value in redis_env.items():
            monkeypatch.setenv(key, value)
        env = dict(os.environ)
        settings = load_settings()
        ws = Workspace(settings.workspace)
        assert settings.online_store.redis_password.get_secret_value() == canary
        assert canary not in repr(settings) and canary not in str(settings.model_dump())

        yaml_path = run_cli(["feast", "yaml"], env, outputs).stdout.strip()
        assert "${TWOTOWER_ONLINE_STORE__REDIS_PASSWORD}" in open(yaml_path).read()
        assert run_cli(["feast", "apply"], env, outputs).returncode == 0, outputs[-1]
        end = datetime.combine(gens.load(ws, g2).day, dtime(0), tzinfo=timezone.utc) + timedelta(days=1)
        store = feature_store.store(settings, ws)
        store.materialize(start_date=datetime(2000, 1, 1, tzinfo=timezone.utc), end_date=end,
                          feature_views=["user_profile", "item_profile"])  # fmt: skip
        write_online(settings, ws, g2)

        user = known_user(ws, g2)
        base_port = free_port()
        base = f"http://127.0.0.1:{base_port}"
        serve_log = ws.root / "serve.log"
        with running([str(TWOTOWER), "serve", "--port", str(base_port)], f"{base}/health", serve_log, env=env):
            with httpx.Client(base_url=base, timeout=10) as client:
                got = client.get(f"/recall/{user}", params={"k": 5})
                assert got.status_code == 200 and got.json()["path"] == "embedding", got.text  # Redis, authenticated
                responses = [got, client.post("/recall", json={"user_ids": [user, 5], "k": 3}), client.get("/health"),
                             client.get("/metrics"), client.get("/generation"), client.get("/openapi.json"),
                             client.get("/recall/abc")]  # fmt: skip
                ok = run_cli(["recall", str(user), "-k", "3"], env, outputs)
                assert ok.returncode == 0 and "path embedding" in ok.stdout, ok.stdout + ok.stderr
                # Failing commands: the store unreachable, a bad option value, a missing day.
                run_cli(["recall", str(user)], dict(env, TWOTOWER_ONLINE_STORE__REDIS_PORT=str(free_port())), outputs)
                assert run_cli(["serve"], dict(env, TWOTOWER_ONLINE_STORE__REDIS_PORT="not-a-port"), outputs).returncode != 0
                assert run_cli(["full-update", "2030-01-01"], env, outputs).returncode != 0
                # Redis goes away under the running server: what it answers and logs now.
                redis_proc.terminate()
                redis_proc.wait(timeout=10)
                responses += [client.get(f"/recall/{user}"), client.get("/health"), client.get("/metrics")]
                run_cli(["recall", str(user)], env, outputs)
        outputs += [f"{r.status_code} {r.headers} {r.text}" for r in responses]

    captured = capfd.readouterr()
    outputs += [captured.out, captured.err]
    leaks = [i for i, text in enumerate(outputs) if canary in text]
    assert not leaks, [outputs[i][:500] for i in leaks]
    scanned = 0
    for root in (ws.root, feature_store.FEATURE_REPO):
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                assert canary.encode() not in path.read_bytes(), path
    assert scanned > 50 and serve_log.stat().st_size > 0


@pytest.mark.parametrize("section", ["online_store", "stream"])
def test_a_password_in_the_config_file_is_refused(tmp_path, section):
    canary = f"canary-{uuid.uuid4().hex}"
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "twotower.toml").write_text(f'[{section}]\nredis_password = "{canary}"\n')
    proc = subprocess.run([str(TWOTOWER), "-w", str(ws), "feast", "yaml"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"TWOTOWER_{section.upper()}__REDIS_PASSWORD" in proc.stderr, proc.stderr
    assert canary not in proc.stdout + proc.stderr
    assert not (ws / "feast").exists()  # nothing written
