"""The FastAPI app of `artemis serve`: OpenAI-compatible routes over a `Referrer`, batched across requests.

Routes: ``POST /v1/chat/completions`` (JSON, or server-sent events streaming the answer token by token),
``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health``, ``GET /docs`` and ``GET /openapi.json``.
Every failure is an OpenAI-style error body (``{"error": {"message", "type", "param", "code"}}``) with
its status, and no answer shows a server path: 400 bad JSON / fields / conversation / target / a prompt
that does not fit (``context_length_exceeded``) / a video over the work limits; 401 missing or wrong key;
403 a path missing or outside ``--allow-path`` (one message for both); 404 unknown model or route; 408 a
body that does not arrive in time; 413 a body over ``--max-request-mb``; 415 a body that is not JSON;
503 shutting down or too busy (``Retry-After``); 500 a failure inside the model (that request only: a
batch that raises is rerun one request at a time).

A request is checked first (cheap checks in the event loop, anything that reads files or tokenises in
a thread); a target seen before is answered from the memo; a new one is prepared (tracked and
featurised, cached) by the `Preparer`, in threads of its own, bounded and cancellable; then the
request waits in a `BatchQueue` and is answered together with others by `Referrer.ask_many`, one
generation call per batch of requests with the same decoding settings. A streamed request gets its
role chunk at once, SSE comments (``: artemis {"stage": "track", "progress": 0.4}``, ``: keep-alive``)
while its video is prepared and it waits, then its own tokens as the batch generates them. What goes
back (errors, completions, streamed events) is built in `responses`; the OpenAPI text is in `openapi`.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from fastapi import FastAPI, Request  # module level: FastAPI resolves the routes' annotations here
from fastapi.responses import JSONResponse, StreamingResponse

from artemis_cli.model.generation import DecodingSettings
from artemis_cli.serve.batching import BatchQueue, QueueClosed, QueueFull
from artemis_cli.serve.guard import APIError, BodyBudget, Guard, parse_json, public_message, read_body, stderr_log
from artemis_cli.serve.openapi import CHAT_OPENAPI, OPENAPI_DESCRIPTION, openapi_schema
from artemis_cli.serve.preparing import Preparer, WorkStopped
from artemis_cli.serve.responses import EventStream, Relay, api_error, completion
from artemis_cli.serve.schemas import MAX_MESSAGES, ChatRequest, unsupported_fields
from artemis_cli.serve.targets import PreparedTargets, files_of, read_conversation, record_target, video_target

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass
class AppSettings:
    """What the routes need besides the model: the key, the readable folders, limits."""

    api_key: Optional[str] = field(default=None, repr=False)
    allow_paths: Sequence[Path] = ()
    upload_dir: Path = Path(".")
    cache_dir: Optional[Path] = None  # what `cache_quota_bytes` bounds (uploads, tracks, features)
    cache_quota_bytes: Optional[int] = None  # None: no quota
    max_request_bytes: int = 64_000_000
    max_new_tokens: int = 1024  # the ceiling of max_tokens, and its default
    max_batch: int = 16
    batch_wait_s: float = 0.02
    max_queue: int = 256  # requests waiting for generation
    served_name: Optional[str] = None  # the model id clients name (default: the referrer's)
    allowed_hosts: Optional[Sequence[str]] = None  # None: any Host header (a key guards the server)
    cors_origins: Sequence[str] = ()
    body_timeout_s: float = 60.0
    prepare_timeout_s: float = 120.0
    prepare_workers: int = 1
    max_waiting_prepare: int = 32
    limits: Any = None  # video.VideoLimits for each request's video (None: the library's defaults)
    keepalive_s: float = 5.0  # an SSE comment at least this often while a streamed request waits
    access_log: Optional[Callable[[str], None]] = stderr_log


@dataclass
class Job:
    """One answer a request waits for (a request with n > 1 samples has n)."""

    prepared: Any  # PreparedTarget
    question: str
    history: list
    decoding: DecodingSettings
    system: Optional[str] = None
    stop: Sequence[str] = ()
    sample: int = 0
    top_logprobs: Optional[int] = None
    on_text: Optional[Callable[[str], Optional[bool]]] = None
    prepare_s: float = 0.0

    def query(self):
        from artemis_cli.ownvideo.referrer import Query

        return Query(self.prepared, self.question, tuple(self.history), system=self.system, stop=tuple(self.stop),
                     sample=self.sample, top_logprobs=self.top_logprobs, on_text=self.on_text)


def batch_key(job: Job) -> str:
    return job.decoding.model_dump_json()


def decoding_of(chat: ChatRequest, max_new_tokens: int) -> DecodingSettings:
    """OpenAI sampling fields -> `DecodingSettings`: temperature 0 or absent is greedy."""
    sample = bool(chat.temperature)
    settings: dict[str, Any] = {"sample": sample, "max_new_tokens": max_new_tokens,
                                "seed": chat.seed if chat.seed is not None else 0}
    if sample:
        settings.update(temperature=chat.temperature, top_p=chat.top_p, top_k=chat.top_k)
    return DecodingSettings(**settings)


@dataclass
class _Request:
    """What a chat request turned into once checked: the conversation, decoding, its target's preparation."""

    chat: ChatRequest
    conversation: Any
    decoding: DecodingSettings
    prepared: Any = None  # a PreparedTarget, once known
    preparing: Any = None  # a concurrent Future while the Preparer works on it
    progress: Optional[asyncio.Queue] = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    pins: list = field(default_factory=list)
    released: bool = False  # `release` ran: pins taken later (a preparation ending after) are not kept
    lock: threading.Lock = field(default_factory=threading.Lock)
    new_upload: Optional[Path] = None
    prepare_s: float = 0.0


def build_app(referrer, settings: AppSettings, *, queue: Optional[BatchQueue] = None):
    """The app over `referrer` (anything with `model_name`, `prepare(Target, progress=, limits=, check=)`,
    `ask_many`, and optionally `check_target`, `count_prompt_tokens`, `check_context`, `context_length`). Its batch
    queue starts with the app and is drained (every accepted request answered) when it stops;
    `app.state.stopping` (a `threading.Event`) stops preparations and slow uploads at once."""
    from contextlib import asynccontextmanager

    from pydantic import ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from artemis_cli.common.config import format_validation_error
    from artemis_cli.ownvideo.cache import CacheQuota

    def run_batch(jobs: list[Job]) -> list:
        for job in jobs:  # a batch that failed is rerun one by one: its streams resume where they were
            if isinstance(job.on_text, Relay):
                job.on_text.restart()
        return referrer.ask_many([job.query() for job in jobs], jobs[0].decoding)

    queue = queue or BatchQueue(run_batch, max_batch=settings.max_batch, wait_s=settings.batch_wait_s, key=batch_key,
                                name="artemis-serve-batch", max_pending=settings.max_queue)
    created = int(time.time())
    model_name = settings.served_name or referrer.model_name
    stopping = threading.Event()
    quota = CacheQuota(Path(settings.cache_dir or settings.upload_dir.parent).resolve(),
                       settings.cache_quota_bytes or 0)
    memo = PreparedTargets()
    budget = BodyBudget(max(4 * settings.max_request_bytes, 256_000_000))

    preparer = Preparer(referrer.prepare, limits=settings.limits, workers=settings.prepare_workers,
                        max_waiting=settings.max_waiting_prepare, timeout_s=settings.prepare_timeout_s,
                        busy=lambda: queue.running)

    def keep(state: _Request, prepared) -> None:
        """In the preparation thread, as soon as it is done: the request's files stay until it ends (even if
        its client goes away meanwhile, `release` unpins them), then the cache goes back under its quota."""
        files = files_of(prepared)
        with state.lock:
            if not state.released:
                quota.pin(*files)
                state.pins.extend(files)
        if settings.cache_quota_bytes:
            quota.enforce()

    @asynccontextmanager
    async def lifespan(app):
        yield
        stopping.set()
        preparer.close(wait=False)
        await run_in_threadpool(queue.close)  # uvicorn stops here after the in-flight requests were answered

    app = FastAPI(title="artemis serve", lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json", version=_version(), description=OPENAPI_DESCRIPTION)
    app.state.queue = queue
    app.state.preparer = preparer
    app.state.stopping = stopping
    app.state.quota = quota
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], max_age=600)
    app.add_middleware(Guard, api_key=settings.api_key, allowed_hosts=settings.allowed_hosts,
                       log=settings.access_log, cors=bool(settings.cors_origins))

    def error_response(error: APIError) -> JSONResponse:
        return JSONResponse(error.body, status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(APIError(exc.status_code, f"{request.method} {request.url.path[:200]}: {exc.detail}",
                                       code=code))

    @app.exception_handler(APIError)
    async def api_error_handler(request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(Exception)
    async def internal_error(request, exc: Exception):  # a bug: one line, no traceback, no paths
        return error_response(APIError(500, f"internal error ({type(exc).__name__}: {exc})", "server_error"))

    @app.get("/health", summary="Liveness and load (no key needed)")
    async def health():
        return {"status": "stopping" if stopping.is_set() else "ok", "model": model_name, "in_flight": queue.depth,
                "preparing": preparer.pending, "batches": queue.stats.to_json(), "cache_evicted": quota.evicted}

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "artemis",
                "max_model_len": getattr(referrer, "context_length", None)}

    @app.get("/v1/models", summary="The served model")
    async def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}", summary="One model by its id")
    async def model(model_id: str):
        if model_id != model_name:
            raise APIError(404, f"The model '{model_id[:200]}' does not exist (this server serves '{model_name}')",
                           param="model", code="model_not_found")
        return model_card()

    # ---- checking a request ------------------------------------------------------------------------
    def validated(payload: dict) -> ChatRequest:
        messages = payload.get("messages")
        if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
            raise APIError(400, f"messages: {len(messages)} messages, over the limit of {MAX_MESSAGES}",
                           param="messages")
        refused = unsupported_fields(payload)
        if refused:
            name, message = refused[0]
            raise APIError(400, message, param=name, code="unsupported_parameter")
        try:
            return ChatRequest.model_validate(payload)
        except ValidationError as exc:
            problems = format_validation_error(exc)
            shown = [p[:300] for p in problems[:5]] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])
            first = exc.errors()[0]["loc"] if exc.errors() else ()
            raise APIError(400, "; ".join(shown), param=".".join(str(p) for p in first)[:200] or None) from None

    def new_tokens(chat: ChatRequest, conversation) -> int:
        """max_tokens checked against --max-new-tokens and the model's positions (runs in a thread: it
        tokenises the messages)."""
        requested = chat.new_tokens
        name = "max_completion_tokens" if chat.max_completion_tokens is not None else "max_tokens"
        if requested is not None and requested > settings.max_new_tokens:
            raise APIError(400, f"{name} {requested} is over this server's limit of {settings.max_new_tokens} "
                                "(--max-new-tokens)", param=name, code="max_tokens_too_large")
        if not hasattr(referrer, "count_prompt_tokens"):
            return requested or settings.max_new_tokens
        prompt = referrer.count_prompt_tokens(conversation.question, conversation.history, conversation.system)
        if requested is None:  # the default shrinks to what fits, as vLLM's does
            requested = max(1, min(settings.max_new_tokens, referrer.context_length - prompt))
        referrer.check_context(prompt, requested)
        return requested

    def early_target(chat: ChatRequest, conversation, request_state: _Request):
        """The target (a memo hit: already prepared), its video's header checked against the limits and its
        boxes against the frame (runs in a thread)."""
        if chat.record is not None:
            return record_target(chat.record, chat.data_root, allow=settings.allow_paths)
        target, new = video_target(chat, conversation, allow=settings.allow_paths, upload_dir=settings.upload_dir)
        quota.pin(target.video)
        request_state.pins.append(target.video)
        quota.used(target.video)
        if new:
            request_state.new_upload = target.video
            if settings.cache_quota_bytes:
                quota.enforce()
        prepared = memo.lookup(target)
        if prepared is not None:
            quota.pin(*files_of(prepared))
            request_state.pins.extend(files_of(prepared))
            if memo.lookup(target) is not None:  # still there now that it is pinned
                return prepared
        if hasattr(referrer, "check_target"):
            referrer.check_target(target, limits=settings.limits)
        cached = referrer.cached(target, limits=settings.limits) if hasattr(referrer, "cached") else None
        if cached is not None:  # on disk already: no preparation thread needed
            quota.pin(*files_of(cached))
            request_state.pins.extend(files_of(cached))
            if all(path.exists() for path in files_of(cached)):  # (not evicted before it was pinned)
                memo.store(cached)
                return cached
        return target

    async def checked(request: Request) -> _Request:
        body = await read_body(request, limit=settings.max_request_bytes, timeout_s=settings.body_timeout_s,
                               stopping=stopping, budget=budget)
        payload = await parse_json(body)
        del body
        chat = validated(payload)
        if chat.model != model_name:
            raise APIError(404, f"The model '{chat.model[:200]}' does not exist (this server serves '{model_name}')",
                           param="model", code="model_not_found")
        try:
            conversation = read_conversation(chat)
            max_new = await run_in_threadpool(new_tokens, chat, conversation)
        except Exception as exc:  # noqa: BLE001 - a bad request is a 4xx
            raise api_error(exc) from None
        state = _Request(chat=chat, conversation=conversation, decoding=decoding_of(chat, max_new))
        try:
            found = await run_in_threadpool(early_target, chat, conversation, state)
        except Exception as exc:  # noqa: BLE001
            release(state, failed=True)
            raise api_error(exc) from None
        if hasattr(found, "record"):
            state.prepared = found
        else:
            start_preparing(state, found)
        return state

    def start_preparing(state: _Request, target) -> None:
        loop = asyncio.get_running_loop()
        state.progress = asyncio.Queue()

        def progress(stage: str, fraction: float) -> None:
            loop.call_soon_threadsafe(state.progress.put_nowait, (stage, fraction))

        try:
            state.preparing = preparer.submit(target, progress=progress, cancelled=state.cancelled,
                                              then=lambda prepared: keep(state, prepared))
        except Exception as exc:  # noqa: BLE001 - busy, stopping
            release(state, failed=True)
            raise api_error(exc) from None
        state.prepare_s = time.perf_counter()

    async def prepared_of(state: _Request):
        if state.prepared is None:
            try:
                state.prepared = await asyncio.wrap_future(state.preparing)
            except BaseException as exc:
                release(state, failed=True)
                if state.preparing.cancelled():  # the server stopped before its turn came
                    raise api_error(WorkStopped("the server is shutting down", 503, "shutting_down")) from None
                if isinstance(exc, asyncio.CancelledError):  # this request's own task: its client went away
                    raise
                raise api_error(exc) from None
            state.prepare_s = time.perf_counter() - state.prepare_s
            memo.store(state.prepared)
        return state.prepared

    def release(state: _Request, failed: bool = False) -> None:
        """Unpin what the request held; a failed request's new upload is removed again. A preparation still
        waiting for its thread is dropped; one under way stops at its next frame."""
        state.cancelled.set()
        if state.preparing is not None:
            state.preparing.cancel()
        with state.lock:
            state.released = True
            pins, state.pins = state.pins, []
        quota.unpin(*pins)
        if failed and state.new_upload is not None and not quota.pinned(state.new_upload):
            state.new_upload.unlink(missing_ok=True)
            memo.forget(state.new_upload)
        state.new_upload = None

    def jobs_of(state: _Request, on_text_for=None) -> list[Job]:
        chat, conversation = state.chat, state.conversation
        count = chat.n if state.decoding.sample else 1  # greedy samples are alike: one is generated
        return [Job(prepared=state.prepared, question=conversation.question, history=conversation.history,
                    decoding=state.decoding, system=conversation.system, stop=chat.stop_strings, sample=index,
                    top_logprobs=(chat.top_logprobs or 0) if chat.logprobs else None,
                    on_text=on_text_for(index) if on_text_for else None, prepare_s=state.prepare_s)
                for index in range(count)]

    def submit(jobs: list[Job]) -> list:
        futures = []
        try:
            for job in jobs:
                futures.append(queue.submit_future(job))
        except (QueueClosed, QueueFull) as exc:
            for future in futures:
                future.cancel()
            raise api_error(exc) from None
        return futures

    # ---- the route ----------------------------------------------------------------------------------
    @app.post("/v1/chat/completions", summary="Answer a question about a boxed target in a video",
              openapi_extra=CHAT_OPENAPI, response_model=None)
    async def chat_completions(request: Request):
        state = await checked(request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if state.chat.stream:
            return StreamingResponse(EventStream(state, completion_id, model_name, settings.keepalive_s, prepared_of,
                                                 jobs_of, submit, release).events(),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        futures: list = []
        watcher = asyncio.ensure_future(_on_disconnect(request, lambda: _give_up(state, futures)))
        try:
            await prepared_of(state)
            jobs = jobs_of(state)
            futures.extend(submit(jobs))
            try:
                answers = [await asyncio.wrap_future(f) for f in futures]
            except Exception as exc:  # noqa: BLE001 - mapped to this request's status
                raise api_error(exc) from None
        finally:
            watcher.cancel()
            release(state)
        return completion(answers, futures, completion_id, model_name, jobs[0].prepare_s, state.chat)

    app.openapi = lambda: openapi_schema(app)
    return app


async def _on_disconnect(request: Request, give_up: Callable[[], None]) -> None:
    """Call `give_up()` if the client goes away before its answer (the body is read: the next message
    the server receives is the disconnect)."""
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # noqa: BLE001 - nothing more to watch
        return
    give_up()


def _give_up(state: _Request, futures: list) -> None:
    """A client went away: its video's preparation stops at the next frame, its queued answers are dropped."""
    state.cancelled.set()
    if state.preparing is not None:
        state.preparing.cancel()
    for future in futures:
        future.cancel()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("artemis")
    except Exception:  # noqa: BLE001 - not installed as a package
        return "0"


__all__ = ["AppSettings", "APIError", "Job", "Relay", "build_app", "api_error", "public_message", "LOOPBACK_NAMES"]
