"""`serve_web`: load the model once, build the page and serve it until Ctrl-C, then remove the temp files."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from artemis_cli.web.options import WebOptions

DEMO_MODEL_NAME = "toy (trained on generated videos of coloured boxes: it knows nothing else)"


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Backend:
    """One loaded model and a `Referrer` per tracker on it (built when a tracker is first picked)."""

    loaded: Any
    model_name: str
    image_tower: Optional[str] = None
    device: str = "auto"
    tracker_model: Optional[str] = None
    stride: Optional[int] = None  # None: about `TRACK_FPS` tracked frames a second
    cache_dir: Optional[Path] = None
    _referrers: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def referrer(self, tracker: str):
        from artemis_cli.ownvideo.referrer import Referrer

        with self._lock:
            if tracker not in self._referrers:
                tracker_model = self.tracker_model if tracker == "sam2" else None
                self._referrers[tracker] = Referrer(image_tower=self.image_tower, device=self.device, tracker=tracker,
                                                    tracker_model=tracker_model, stride=self.stride,
                                                    cache_dir=self.cache_dir, loaded=self.loaded)
            return self._referrers[tracker]


def load_backend(options: WebOptions, progress: Callable[[str], None] = _log) -> tuple[Backend, list[Path]]:
    """The backend the page talks to and the example videos it offers (the demo's sample videos)."""
    from artemis_cli.model.loading import load_model

    examples: list[Path] = []
    model, model_base, image_tower, name = options.model, options.model_base, options.image_tower, options.model
    if options.demo:
        from artemis_cli.web.demo_assets import ensure_demo_assets

        assets = ensure_demo_assets(options.resolved_cache_dir(), log=progress)
        model, model_base, image_tower, name = str(assets.model), None, str(assets.clip), DEMO_MODEL_NAME
        examples = list(assets.videos)
    # tracks and features: the Referrer's own cache (shared with `artemis ask`) unless --cache-dir
    cache = Path(options.cache_dir) / "ownvideo" if options.cache_dir is not None else None
    if not options.demo and Path(str(model)).expanduser().exists():
        name = Path(str(model)).name  # the page names the model, never the server's path to it
    progress(f"web: loading {model} ...")
    loaded = load_model(model, model_base, device=options.device, dtype=options.dtype, image_tower=image_tower)
    backend = Backend(loaded, str(name), image_tower=image_tower, device=options.device,
                      tracker_model=options.tracker_model, cache_dir=cache)
    backend.referrer(options.tracker)  # the default tracker's errors (a SAM 2 model that is missing) show now
    return backend, examples


def _import_page() -> None:
    try:
        import artemis_cli.web.page  # noqa: F401  (gradio, gradio_image_annotation)
    except Exception:  # imported again (and reported) where the page is built
        pass


def launch_settings(options: WebOptions) -> dict:
    """Keyword arguments of `Blocks.launch` that carry the serving rules (host, login, upload limit, and the
    request rules of `web.guard`: Host and Origin on loopback without a login, slowed-down failed logins)."""
    from starlette.middleware import Middleware

    from artemis_cli.common.net import is_loopback
    from artemis_cli.web.guard import RequestGuard

    credentials = options.credentials()
    guard = Middleware(RequestGuard, port=options.port, local_only=credentials is None and is_loopback(options.host))
    return {"server_name": options.host, "server_port": options.port, "auth": credentials,
            "max_file_size": options.max_upload_bytes, "prevent_thread_lock": True, "show_error": False,
            "quiet": True, "ssr_mode": False, "inbrowser": False, "share": False,
            "app_kwargs": {"middleware": [guard]}}


def serve_web(options: WebOptions, *, ready: Optional[Callable[[str], None]] = None,
              stop: Optional[threading.Event] = None) -> None:
    """Serve the page until Ctrl-C / SIGTERM (or `stop` is set), however the process was started (the
    handlers are installed here: a SIGINT ignored by the parent must not make the page unstoppable).
    Every temp file it made (sessions, uploads, gradio's cache) lives under one folder that is removed
    when it returns."""
    from artemis_cli.common.signals import stop_signals

    with stop_signals():
        _serve_web(options, ready=ready, stop=stop)


def _serve_web(options: WebOptions, *, ready: Optional[Callable[[str], None]],
               stop: Optional[threading.Event]) -> None:
    from artemis_cli.web.session import SessionFolders

    began = time.perf_counter()
    settings = launch_settings(options)  # refuse a bad --host/--auth before loading anything
    folders = SessionFolders()
    previous_temp = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folders.root / "gradio")  # uploads and generated images (read at import too)
    page = None
    try:
        # gradio takes seconds to import: do it while the model loads
        importer = threading.Thread(target=_import_page, name="import-gradio", daemon=True)
        importer.start()
        backend, examples = load_backend(options)
        importer.join()
        loaded_at = time.perf_counter()
        from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION
        from artemis_cli.web.page import CSS, PageHandlers, build_page

        handlers = PageHandlers(backend.referrer, folders, default_question=DEFAULT_QUESTION)
        page = build_page(handlers, model_name=backend.model_name, tracker=options.tracker, examples=examples,
                          max_new_tokens=options.max_new_tokens, concurrency=options.concurrency)
        page.queue(default_concurrency_limit=options.concurrency)
        try:
            page.launch(css=CSS, allowed_paths=[str(p.parent) for p in examples], **settings)
        except OSError as exc:
            from artemis_cli.errors import UsageError

            raise UsageError(f"cannot serve on {options.host}:{options.port}: {exc}",
                             hint="pick another --port (or stop what is using it)") from None
        url = f"http://{options.host}:{options.port}/"
        login = f" (login required: user {settings['auth'][0]})" if settings["auth"] else ""
        _log(f"web: serving {backend.model_name} on {url}{login}; upload limit {options.max_upload_mb:g} MB, "
             f"{options.concurrency} worker(s); ready in {time.perf_counter() - began:.1f} s (model "
             f"{loaded_at - began:.1f} s, page {time.perf_counter() - loaded_at:.1f} s); Ctrl-C stops")
        if ready is not None:
            ready(url)
        while stop is None or not stop.is_set():
            time.sleep(0.2)
    finally:
        if page is not None:
            try:
                page.close(verbose=False)  # gradio would print "Closing server ..." on stdout
            except Exception:  # a page that never launched has nothing to close; the temp root must still go
                pass
        folders.close()
        if previous_temp is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_temp
