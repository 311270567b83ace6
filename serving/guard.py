"""ASGI middleware in front of the app: request size limits + request metrics.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which costs a task and a memory
stream per request). It answers a request target longer than ``serving.max_url_bytes`` with
414 and headers larger than ``serving.max_header_bytes`` with 431 (exact sizes, whatever the
HTTP server; ``twotower.adapters.uvicorn_http`` stops an endless head before it is buffered), and a body
over the limit with 413 before it is read when the client declares its length, and while
reading when it does not (chunked). It records every request - including the 4xx answered
before a handler runs - by route template and status.
"""

from __future__ import annotations

import json
import time

from starlette.exceptions import HTTPException


class Guard:
    def __init__(self, app, max_body_bytes: int, metrics, max_url_bytes: int | None = None,
                 max_header_bytes: int | None = None):  # fmt: skip
        self.app, self.max_body, self.metrics = app, max_body_bytes, metrics
        self.max_url, self.max_header = max_url_bytes, max_header_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            declared = _content_length(scope)
            head = self._head_problem(scope)
            if head is not None:
                await self._reply(send_tracked, *head)
            elif declared is None:
                await self._reply(send_tracked, 400, "header content-length: not a non-negative integer")
            elif declared > self.max_body:
                await self._reply(send_tracked, 413, self._too_large(declared))
            else:
                await self.app(scope, self._limited(receive), send_tracked)
        except HTTPException as exc:  # raised by the limited receive outside FastAPI's handlers
            if not status["sent"]:
                await self._reply(send_tracked, exc.status_code, str(exc.detail))
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope.get("method", ""), str(status["code"])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)

    def _head_problem(self, scope) -> tuple[int, str] | None:
        if self.max_url is not None:
            url = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
            if url > self.max_url:
                return 414, f"url: {url} bytes exceed serving.max_url_bytes={self.max_url}"
        if self.max_header is not None:
            size = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))  # "name: value\r\n"
            if size > self.max_header:
                return 431, f"headers: {size} bytes exceed serving.max_header_bytes={self.max_header}"
        return None

    def _too_large(self, size: int) -> str:
        return f"body: {size} bytes exceed serving.max_body_bytes={self.max_body}"

    def _limited(self, receive):
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, self._too_large(seen))
            return message

        return limited

    @staticmethod
    async def _reply(send, code: int, error: str) -> None:
        body = json.dumps({"error": error, "detail": []}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    """The declared body length (0 when absent); None when the header is malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return None
            return n if n >= 0 else None
    return 0
