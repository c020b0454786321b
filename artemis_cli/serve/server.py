"""`serve`: check the settings, bind, load the model, run the app on uvicorn, stop gracefully.

Order matters for safety and for clear errors: a non-loopback host without an API key is refused
before anything binds or loads; the port is bound before the (slow) model load, so a port in use
fails at once; uvicorn then serves on that socket. SIGTERM (and Ctrl-C) stop taking connections,
stop the videos being prepared and the bodies being received (those requests get a 503), finish the
answers in flight, drain the batch queue, and return within `--shutdown-timeout`; Ctrl-C then surfaces
as `KeyboardInterrupt` (exit 130), SIGTERM as a normal stop (exit 0).

Connections are bounded too (`GuardedH11`): at most `--max-connections` at once (more get a 503 and are
closed), and a request's headers must arrive within `--request-timeout` (a client that opens
connections and sends half a request cannot hold them). Exposed beyond this machine, put a reverse
proxy (nginx, Caddy) in front for TLS and per-client limits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from artemis_cli.common.devices import DeviceName
from artemis_cli.common.net import is_loopback
from artemis_cli.errors import UsageError
from artemis_cli.model.quantize import Quantize

API_KEY_ENV = "ARTEMIS_API_KEY"


class ServeConfig(BaseModel):
    """Settings of `serve` (the flags of `artemis serve`)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    model_base: Optional[str] = None
    image_tower: Optional[str] = None
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8000, ge=0, le=65535)  # 0: a free port (printed)
    max_batch: int = Field(16, ge=1, le=256)
    batch_wait_ms: float = Field(20, ge=0, le=10_000)
    api_key: Optional[SecretStr] = None  # None: $ARTEMIS_API_KEY
    allow_paths: list[Path] = Field(default_factory=list)
    max_request_mb: float = Field(64, gt=0)
    max_new_tokens: int = Field(1024, ge=1)  # the ceiling of a request's max_tokens, and its default
    served_model_name: Optional[str] = Field(None, min_length=1, max_length=256)
    cors_origins: list[str] = Field(default_factory=list)
    request_timeout_s: float = Field(60, gt=0)  # headers and body must arrive within this
    prepare_timeout_s: float = Field(120, gt=0)
    prepare_workers: int = Field(1, ge=1, le=64)
    max_video_frames: int = Field(18_000, ge=1)
    max_frame_pixels: int = Field(1920 * 1080, ge=1)
    max_video_pixels: float = Field(6e9, gt=0)  # frames x pixels per frame
    cache_quota_gb: float = Field(10, ge=0)  # 0: no quota
    max_connections: int = Field(512, ge=1)
    max_queue: int = Field(256, ge=1)
    shutdown_timeout_s: float = Field(60, ge=1)
    access_log: bool = True
    quantize: Quantize = "none"
    tracker: str = "csrt"
    stride: Optional[int] = Field(None, ge=1)  # None: about 6 tracked frames a second
    cache_dir: Optional[Path] = None
    device: DeviceName = "auto"
    dtype: str = "auto"

    def resolved_key(self, env: Optional[dict] = None) -> Optional[str]:
        """The key from `api_key`, else `$ARTEMIS_API_KEY`; a non-loopback host without one is refused."""
        env = os.environ if env is None else env
        key = self.api_key.get_secret_value() if self.api_key is not None else env.get(API_KEY_ENV) or None
        if key is not None and len(key) < 8:
            raise UsageError("--api-key: use at least 8 characters")
        if key is None and not is_loopback(self.host):
            raise UsageError(f"--host {self.host} is reachable from other machines: it needs an API key",
                             hint=f"set {API_KEY_ENV}=KEY (or pass --api-key KEY), or serve on 127.0.0.1")
        return key


@dataclass
class ServeSummary:
    """How the server stopped, and what it answered."""

    url: str
    stopped_by: Optional[str] = None  # "SIGTERM", "SIGINT" or None
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); in use / not bindable is a `UsageError`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})",
                         hint="pick another --port (0 = any free one)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def serve(config: ServeConfig, *, referrer=None, on_ready: Optional[Callable[[str], None]] = None) -> ServeSummary:
    """Serve `config.model` (or the given `referrer`) until SIGTERM / Ctrl-C; returns how it stopped.

    Ctrl-C raises `KeyboardInterrupt` after the graceful stop. `on_ready(url)` is called once the model
    is loaded and the server is about to take requests (default: print ``serving URL`` on stderr).
    The stop handlers are installed here, so a server started with SIGINT ignored still stops."""
    from artemis_cli.common.signals import stop_signals

    with stop_signals():
        return _serve(config, referrer, on_ready)


def _serve(config: ServeConfig, referrer, on_ready: Optional[Callable[[str], None]]) -> ServeSummary:
    key = config.resolved_key()
    if referrer is None:  # a mode this machine cannot run fails before anything binds or loads
        from artemis_cli.common.devices import resolve_device
        from artemis_cli.model.quantize import check_quantize

        check_quantize(config.quantize, resolve_device(config.device))
    sock = bind(config.host, config.port)
    try:
        port = sock.getsockname()[1]
        shown_host = f"[{config.host}]" if ":" in config.host else config.host
        url = f"http://{shown_host}:{port}/v1"
        if referrer is None:
            from artemis_cli.ownvideo.referrer import Referrer

            _say(f"loading {config.model} ...")
            referrer = Referrer(config.model, config.model_base, image_tower=config.image_tower, device=config.device,
                                dtype=config.dtype, tracker=config.tracker, stride=config.stride,
                                cache_dir=config.cache_dir, quantize=config.quantize)
        return _run(config, referrer, key, sock, url, on_ready or (lambda u: _say(f"serving {u} (model "
                                                                                   f"{referrer.model_name!r})")))
    finally:
        sock.close()


def app_settings(config: ServeConfig, referrer, key: Optional[str]):
    """The app's settings from the flags (the cache folder is the referrer's)."""
    from artemis_cli.ownvideo.video import VideoLimits
    from artemis_cli.serve.app import LOOPBACK_NAMES, AppSettings
    from artemis_cli.serve.guard import stderr_log

    cache = Path(getattr(referrer, "cache_dir", None) or config.cache_dir or Path.cwd() / ".artemis-serve").resolve()
    return AppSettings(
        api_key=key, allow_paths=[p.expanduser().resolve() for p in config.allow_paths], upload_dir=cache / "uploads",
        cache_dir=cache, cache_quota_bytes=int(config.cache_quota_gb * 1e9) or None,
        max_request_bytes=int(config.max_request_mb * 1_000_000), max_new_tokens=config.max_new_tokens,
        max_batch=config.max_batch, batch_wait_s=config.batch_wait_ms / 1000, max_queue=config.max_queue,
        served_name=config.served_model_name,
        # no key: only requests to this machine's own names (a page elsewhere cannot rebind its name to us)
        allowed_hosts=None if key else [*LOOPBACK_NAMES, config.host.strip("[]")],
        cors_origins=list(config.cors_origins), body_timeout_s=config.request_timeout_s,
        prepare_timeout_s=config.prepare_timeout_s, prepare_workers=config.prepare_workers,
        limits=VideoLimits(max_frames=config.max_video_frames, max_frame_pixels=config.max_frame_pixels,
                           max_pixel_frames=config.max_video_pixels),
        access_log=stderr_log if config.access_log else None)


def guarded_h11(request_timeout_s: float, max_connections: int):
    """uvicorn's h11 protocol with a connection limit (more connections get a 503 and are closed) and a
    deadline for each request's headers (a half-sent request is answered 408 and closed)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    def raw(status: str, message: str, code: str) -> bytes:
        from artemis_cli.serve.schemas import error_body

        kind = "server_error" if status.startswith("5") else "invalid_request_error"
        body = json.dumps(error_body(message, kind, code=code)).encode()
        return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n").encode() + body

    class GuardedH11(H11Protocol):
        _header_timer = None
        _partial = False

        def connection_made(self, transport):
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(raw("503 Service Unavailable", f"over {max_connections} connections at once "
                                    "(--max-connections): try again in a while", "server_busy"))
                transport.close()
                return
            self._arm()

        def _arm(self):
            self._disarm()
            self._header_timer = self.loop.call_later(request_timeout_s, self._headers_too_slow)

        def _disarm(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self):
            self._header_timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return  # a request is under way (the app bounds its body)
            if self._partial:  # half a request: answer it
                self.transport.write(raw("408 Request Timeout", f"the request's headers did not arrive within "
                                         f"{request_timeout_s:g} s (--request-timeout)", "request_timeout"))
                self.transport.close()
            elif self.cycle is None:  # connected, never sent a byte
                self.transport.close()
            # else idle between requests: uvicorn's keep-alive timeout closes it

        def data_received(self, data):
            if self.cycle is None or self.cycle.response_complete:
                self._partial = True  # bytes of a request whose headers are not complete yet
            super().data_received(data)

        def handle_events(self):
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._partial = False
                self._disarm()  # a request is under way: the app bounds the time its body takes

        def on_response_complete(self):
            super().on_response_complete()
            self._partial = False
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11


def _run(config: ServeConfig, referrer, key: Optional[str], sock: socket.socket, url: str, on_ready) -> ServeSummary:
    import uvicorn

    from artemis_cli.serve.app import build_app

    app = build_app(referrer, app_settings(config, referrer, key))

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # Before uvicorn waits for the requests in flight: the videos being prepared and the bodies being
            # received stop now (those requests get a 503), so only answers already under way are waited for.
            # (Only Event.set here: it is a signal handler on the event loop's thread.)
            app.state.stopping.set()
            app.state.preparer.stopping.set()
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=5,
                                   server_header=False, http=guarded_h11(config.request_timeout_s,
                                                                         config.max_connections),
                                   timeout_graceful_shutdown=max(1, int(config.shutdown_timeout_s))))
    summary = ServeSummary(url=url)
    caught: list[int] = []
    # uvicorn handles SIGINT/SIGTERM while it runs (stop accepting, finish in-flight requests), then
    # restores these handlers and re-raises the signal: they note which one it was, and a signal that
    # comes before uvicorn took over (between `on_ready` and its start) makes it stop at once.

    def note(number, frame):
        caught.append(number)
        server.should_exit = True

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    start = time.perf_counter()
    try:
        on_ready(url)
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary.seconds = time.perf_counter() - start
    summary.stats = app.state.queue.stats.to_json()
    if caught:
        summary.stopped_by = signal.Signals(caught[-1]).name
    if summary.stopped_by == "SIGINT":
        raise KeyboardInterrupt
    return summary
