"""Request rules in front of the page (an ASGI middleware gradio's app is built with).

- **Loopback without a login** (the default): only this machine should reach the page, but a web page
  the user opens elsewhere can still make their browser send requests to 127.0.0.1, and a DNS-rebinding
  site can make them look same-origin. So a request must name the page's own host (`Host` is 127.0.0.1,
  localhost or ::1, with its port), and a request that changes something (anything but GET/HEAD/OPTIONS)
  coming from a browser page must come from the page itself (`Origin`). Anything else is a 403.
- **A login** (`--auth`, required off loopback): repeated wrong passwords from one client are slowed
  down: after `FREE_FAILURES` failures in `WINDOW_S`, each further attempt waits twice as long as the last
  (a 429 with Retry-After until then), up to `MAX_WAIT_S`.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Optional
from urllib.parse import urlparse

LOCAL_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
FREE_FAILURES = 5
WINDOW_S = 600.0
MAX_WAIT_S = 300.0


def _host_part(value: str) -> tuple[str, Optional[int]]:
    """("127.0.0.1", 7860) from "127.0.0.1:7860"; ("::1", 7860) from "[::1]:7860"."""
    parsed = urlparse(f"//{value}")
    try:
        port = parsed.port
    except ValueError:
        port = -1  # not a port at all
    return (parsed.hostname or "").lower(), port


class LoginThrottle:
    """Failed logins per client, and how long a client must wait before trying again."""

    def __init__(self, free: int = FREE_FAILURES, window_s: float = WINDOW_S, max_wait_s: float = MAX_WAIT_S,
                 clock=time.monotonic):
        self.free, self.window_s, self.max_wait_s, self.clock = free, window_s, max_wait_s, clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds `client` must still wait (0: it may try now)."""
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window_s]
            self._failures[client] = recent
            extra = len(recent) - self.free
            if extra < 0:
                return 0.0
            wait = min(self.max_wait_s, 2.0 ** extra)
            return max(0.0, recent[-1] + wait - now)

    def failed(self, client: str) -> None:
        with self._lock:
            self._failures.setdefault(client, []).append(self.clock())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


class RequestGuard:
    """The ASGI middleware (see the module doc). `port` is the page's port; `local_only` turns on the Host and
    Origin rules (loopback without a login); `throttle` watches POST /login."""

    def __init__(self, app, *, port: int, local_only: bool, throttle: Optional[LoginThrottle] = None):
        self.app, self.port, self.local_only = app, port, local_only
        self.throttle = throttle or LoginThrottle()

    def _local(self, value: str) -> bool:
        host, port = _host_part(value)
        return host in LOCAL_NAMES and port in (None, self.port)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET")
        if self.local_only:
            if not self._local(headers.get("host", "")):
                return await _refuse(scope, send, 403, "this page answers only requests addressed to this machine "
                                                       "(the Host header names another server)")
            origin = headers.get("origin")
            changes = scope["type"] == "websocket" or method not in SAFE_METHODS
            if origin is not None and changes and not self._local(urlparse(origin).netloc):
                return await _refuse(scope, send, 403, "requests from other web pages are refused (cross-origin)")
        if scope["type"] == "http" and method == "POST" and scope.get("path", "").rstrip("/") == "/login":
            client = (scope.get("client") or ("?", 0))[0]
            wait = self.throttle.wait_s(client)
            if wait > 0:
                return await _refuse(scope, send, 429, f"too many failed logins: try again in {wait:.0f} s",
                                     retry_after=wait)
            return await self.app(scope, receive, self._watch_login(send, client))
        return await self.app(scope, receive, send)

    def _watch_login(self, send, client: str):
        async def watched(message):
            if message["type"] == "http.response.start":
                if message["status"] >= 400:
                    self.throttle.failed(client)
                elif message["status"] < 300:
                    self.throttle.succeeded(client)
            await send(message)
        return watched


async def _refuse(scope, send, status: int, message: str, retry_after: Optional[float] = None) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, int(retry_after + 0.999))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
