"""What stands between a client and the routes of `artemis serve`: who may ask, and what a request may cost.

- `Guard` (ASGI middleware, outermost): one access-log line per request (method, path, status, seconds,
  bytes; never a header, so never the key); with no API key, a ``Host`` that is not the bound address or
  a loopback name is refused (a web page on another site that resolves its name to 127.0.0.1, DNS
  rebinding, cannot reach the server); the API key; ``POST`` bodies must say ``application/json`` (a
  cross-site form or ``text/plain`` POST, which browsers send without asking, is refused).
- `read_body`: the body within `--max-request-mb`, received within `--body-timeout` (a slow upload
  cannot hold a connection open), stopped at once when the server shuts down.
- `parse_json`: refuses, before building any object, bodies with more than `MAX_CONTAINERS` JSON
  objects and arrays, nesting deeper than `MAX_DEPTH`, ``NaN``/``Infinity`` and numbers too long to
  parse; bodies over 1 MB are parsed off the event loop.
- `public_message`: an error message with every absolute path cut to its last part, so no answer
  shows where the server keeps its files.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

from artemis_cli.serve.schemas import error_body

MAX_CONTAINERS = 20_000  # JSON objects + arrays in one body (a request needs a few dozen)
MAX_DEPTH = 32  # JSON nesting (a request needs 6; a prepared record a few more)
OFF_LOOP_BYTES = 1_000_000  # bodies larger than this are parsed in a thread
OPEN_PATHS = ("/health", "/docs", "/openapi.json")  # no key needed: nothing secret, nothing costly
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/(),;]+/)+([^\s'\"/(),;]*)")


class APIError(Exception):
    """An error answer: HTTP status + OpenAI error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", *, param: Optional[str] = None,
                 code: Optional[str] = None, headers: Optional[dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.body = error_body(public_message(message), kind, param=param, code=code)
        self.headers = headers or {}


def public_message(text: str, limit: int = 2000) -> str:
    """`text` with each absolute path replaced by its last part (``/srv/cache/uploads/ab12.mp4`` -> ``ab12.mp4``),
    cut to `limit` characters."""
    text = _PATH.sub(lambda m: m.group(1) or "(a folder)", str(text))
    return text if len(text) <= limit else text[:limit] + " ..."


def host_name(header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8000`` -> ``::1``, ``localhost:80`` -> ``localhost``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """The ASGI middleware of the module doc, in front of the FastAPI app.

    `allowed_hosts` None: any ``Host`` (a key is set: a reverse proxy may forward any name). `cors`: a
    `CORSMiddleware` sits inside (``--cors-origin``), so CORS preflights pass without a key."""

    def __init__(self, app, *, api_key: Optional[str], allowed_hosts: Optional[Sequence[str]],
                 log: Optional[Callable[[str], None]], cors: bool = False):
        self.app = app
        self.api_key = api_key
        self.allowed_hosts = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.log = log
        self.cors = cors

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        sent = {"status": 0, "bytes": 0}

        async def counting_send(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                from fastapi.responses import JSONResponse

                await JSONResponse(refusal.body, status_code=refusal.status)(scope, receive, counting_send)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            if self.log is not None:
                client = scope.get("client") or ("-", 0)
                self.log(f'{client[0]}:{client[1]} "{scope["method"]} {scope["path"][:200]} HTTP/{scope.get("http_version", "1.1")}" '
                         f'{sent["status"] or "-"} {time.perf_counter() - start:.3f}s {sent["bytes"]}B')

    def _refusal(self, scope) -> Optional[APIError]:
        headers = {}
        for name, value in scope.get("headers", []):
            if name in (b"host", b"authorization", b"content-type", b"origin") and name.decode() not in headers:
                headers[name.decode()] = value.decode("latin-1")
        if self.allowed_hosts is not None and "host" in headers and host_name(headers["host"]) not in self.allowed_hosts:
            return APIError(403, "this server answers only requests to its own address (the Host header names "
                                 "another): behind a proxy, set an API key or forward Host as 127.0.0.1",
                            "permission_error", code="invalid_host")
        if self.cors and scope["method"] == "OPTIONS":
            return None  # a CORS preflight: the CORS middleware answers it
        if self.api_key and scope["path"] not in OPEN_PATHS:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
                # never echo what was sent: it may be a real key meant for another server
                return APIError(401, "missing or wrong API key (send Authorization: Bearer KEY)", code="invalid_api_key")
        if scope["method"] == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return APIError(415, "the request body must be JSON, sent with Content-Type: application/json",
                                code="unsupported_media_type")
        return None


class BodyBudget:
    """Bytes of request bodies being received at once, across requests (bounds the memory uploads take)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0


async def read_body(request, *, limit: int, timeout_s: float, stopping: threading.Event,
                    budget: Optional[BodyBudget] = None) -> bytes:
    """The request body: 413 over `limit` bytes (at once when Content-Length says so), 408 when it has not
    all arrived within `timeout_s`, 503 when the server starts stopping meanwhile or too many bodies are
    being received at once."""
    too_big = APIError(413, f"request body over the server's limit ({limit / 1e6:g} MB, --max-request-mb)",
                       code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if stopping.is_set():
                raise APIError(503, "the server is shutting down", "server_error", code="shutting_down")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise APIError(408, f"the request body did not arrive within {timeout_s:g} s (--body-timeout)",
                               code="request_timeout")
            try:  # short waits, so a shutdown is noticed while a slow client sends nothing
                message = await asyncio.wait_for(request.receive(), min(remaining, 0.25))
            except (asyncio.TimeoutError, TimeoutError):
                continue
            if message["type"] == "http.disconnect":
                raise APIError(400, "the client went away before sending the whole body", code="client_closed")
            chunk = message.get("body", b"")
            size += len(chunk)
            if budget is not None:
                budget.used += len(chunk)
                if budget.used > budget.limit:
                    raise APIError(503, "too many request bodies are being received at once: try again in a while",
                                   "server_error", code="server_busy", headers={"Retry-After": "2"})
            if size > limit:
                raise too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    finally:
        if budget is not None:
            budget.used -= size


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _parse(body: bytes) -> Any:
    return json.loads(body, parse_constant=_no_constant)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


async def parse_json(body: bytes) -> dict:
    """The body as a JSON object, or a 400 `APIError` (see the module doc)."""
    containers = body.count(b"{") + body.count(b"[")
    if containers > MAX_CONTAINERS:
        raise APIError(400, f"the request body has over {MAX_CONTAINERS} JSON objects and arrays (a request needs "
                            "a few dozen)", code="invalid_json")
    try:
        if len(body) > OFF_LOOP_BYTES:
            from starlette.concurrency import run_in_threadpool

            payload = await run_in_threadpool(_parse, body)
        else:
            payload = _parse(body)
    except RecursionError:
        raise APIError(400, "the request body's JSON is nested too deeply", code="invalid_json") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, NaN, a number of over 4,300 digits
        raise APIError(400, f"the request body is not valid JSON ({str(exc)[:200]})", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(payload).__name__}",
                       code="invalid_json")
    if _depth(payload) > MAX_DEPTH:
        raise APIError(400, f"the request body's JSON is nested deeper than {MAX_DEPTH} levels", code="invalid_json")
    return payload


def stderr_log(line: str) -> None:
    print(f"INFO: {line}", file=sys.stderr, flush=True)
