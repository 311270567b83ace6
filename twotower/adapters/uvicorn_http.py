"""uvicorn's httptools protocol with a bound on the request head (URL + headers).

Why: uvicorn's httptools protocol (the fast one, picked whenever httptools is installed) puts
no limit on the request line or the headers; it buffers them until the blank line that ends
the head. A client that never sends that line can grow one connection's memory without
bound. (The h11 protocol has ``h11_max_incomplete_event_size``; ``serving.run`` sets it too.)

The exact limits are checked in ``serving.guard`` once the head is complete (414/431 naming
``serving.max_url_bytes`` / ``serving.max_header_bytes``). Here only a head that is still
incomplete is cut short: the URL as soon as it is longer than its limit (414), the head once
more bytes than both limits together arrived without completing it (431). Head bytes are
counted per received chunk that neither started nor ended the head, so a pipelined request
is never blamed for the previous one's body; memory per connection stays below the limits
plus two reads (asyncio reads at most 256 KiB at a time).
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Request line, CRLFs and header separators beyond the two limits.
SLACK_BYTES = 1024
_limits = {"url": 2048, "header": 8192}


def configure(max_url_bytes: int, max_header_bytes: int) -> None:
    """Set the limits (the app factory calls this in every worker before it serves)."""
    _limits["url"], _limits["header"] = max_url_bytes, max_header_bytes


def head_limit() -> int:
    return _limits["url"] + _limits["header"] + SLACK_BYTES


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.url = b""
        self._in_head = False
        self._head_bytes = 0
        self._begun = 0  # messages begun on this connection
        self._rejected = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        self._begun += 1

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        in_head, begun = self._in_head, self._begun
        super().data_received(data)
        if not self._in_head or self.parser is None:
            return
        if len(self.url) > _limits["url"]:
            self._reject(414, "URI Too Long", f"url: more than {_limits['url']} bytes exceed serving.max_url_bytes={_limits['url']}")
        elif in_head and begun == self._begun:  # a chunk wholly inside this head
            self._head_bytes += len(data)
            if self._head_bytes > head_limit():
                self._reject(431, "Request Header Fields Too Large",
                             f"headers: request head over {head_limit()} bytes without its end; limits "
                             f"serving.max_url_bytes={_limits['url']}, serving.max_header_bytes={_limits['header']}")  # fmt: skip

    def _reject(self, status: int, reason: str, error: str) -> None:
        self._rejected = True
        body = json.dumps({"error": error, "detail": []}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.logger.warning("rejected a request head from %s: %s", self.client, error)
        self.transport.write(head.encode() + body)
        self.transport.close()
