"""The FastAPI app of `artemis serve`: OpenAI-compatible routes over a `Referrer`, batched across requests.

Routes: ``POST /v1/chat/completions`` (JSON or server-sent events), ``GET /v1/models``, ``GET /health``.
Every failure is an OpenAI-style error body (``{"error": {"message", "type", "param", "code"}}``)
with its status: 400 bad JSON / fields / conversation / target (box outside the frame, no ``<bbox>``),
401 missing or wrong key, 403 a path outside ``--allow-path``, 404 unknown model or route, 413 a body
over ``--max-request-mb``, 503 shutting down, 500 a failure inside the model (that request only: a
batch that raises is rerun one request at a time).

Requests are checked and their targets prepared (tracked and featurised, cached) as they arrive;
then they wait in a `BatchQueue` and are answered together by `Referrer.ask_many`, one generation
call per batch of requests with the same decoding settings.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from fastapi import FastAPI, Request  # module level: FastAPI resolves the routes' annotations here
from fastapi.responses import JSONResponse, StreamingResponse

from artemis_cli.errors import ArtemisError, InputError, UsageError
from artemis_cli.model.generation import DecodingSettings
from artemis_cli.serve.batching import BatchQueue, QueueClosed
from artemis_cli.serve.schemas import ChatRequest, error_body
from artemis_cli.serve.targets import (Forbidden, PreparedTargets, read_conversation, record_target,
                                      video_target)


@dataclass
class AppSettings:
    """What the routes need besides the model: the key, the readable folders, limits."""

    api_key: Optional[str] = field(default=None, repr=False)
    allow_paths: Sequence[Path] = ()
    upload_dir: Path = Path(".")
    max_request_bytes: int = 64_000_000
    max_new_tokens: int = 1024  # when a request gives no max_tokens
    max_batch: int = 16
    batch_wait_s: float = 0.02


class APIError(Exception):
    """An error answer: HTTP status + OpenAI error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", *, param: Optional[str] = None,
                 code: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.body = error_body(message, kind, param=param, code=code)


def api_error(exc: BaseException) -> APIError:
    """The HTTP answer for an exception raised while serving one request."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, Forbidden):
        return APIError(403, exc.message, "permission_error", code="path_not_allowed")
    if isinstance(exc, (UsageError, InputError)):
        message = exc.message + (f" ({exc.hint})" if exc.hint else "")
        # the Referrer words its errors for the command line: name the request's fields instead
        param = next((name for name in ("box", "frame") if message.startswith(f"--{name} ")), None)
        for name in ("box", "frame"):
            message = message.replace(f"--{name} ", f"{name} ")
        return APIError(400, message, param=param)
    if isinstance(exc, QueueClosed):
        return APIError(503, "the server is shutting down", "server_error", code="shutting_down")
    if isinstance(exc, ArtemisError):
        return APIError(500, exc.message, "server_error")
    return APIError(500, f"internal error in the model ({type(exc).__name__}: {exc})", "server_error")


@dataclass
class Job:
    """One request waiting for the model."""

    prepared: Any  # PreparedTarget
    question: str
    history: list
    decoding: DecodingSettings
    prepare_s: float = 0.0


def batch_key(job: Job) -> str:
    return job.decoding.model_dump_json()


def decoding_of(chat: ChatRequest, default_max_new_tokens: int) -> DecodingSettings:
    """OpenAI sampling fields -> `DecodingSettings`: temperature 0 or absent is greedy."""
    sample = bool(chat.temperature)
    settings: dict[str, Any] = {"sample": sample, "max_new_tokens": chat.new_tokens or default_max_new_tokens,
                                "seed": chat.seed if chat.seed is not None else 0}
    if sample:
        settings.update(temperature=chat.temperature, top_p=chat.top_p, top_k=chat.top_k)
    return DecodingSettings(**settings)


def build_app(referrer, settings: AppSettings, *, queue: Optional[BatchQueue] = None):
    """The app over `referrer` (anything with `model_name`, `prepare(Target)` and `ask_many`). Its
    batch queue starts with the app and is drained (every accepted request answered) when it stops."""
    from contextlib import asynccontextmanager

    from pydantic import ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from artemis_cli.common.config import format_validation_error

    def run_batch(jobs: list[Job]) -> list:
        return referrer.ask_many([(j.prepared, j.question, j.history) for j in jobs], jobs[0].decoding)

    queue = queue or BatchQueue(run_batch, max_batch=settings.max_batch, wait_s=settings.batch_wait_s, key=batch_key,
                                name="artemis-serve-batch")
    created = int(time.time())
    model_name = referrer.model_name

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(queue.close)  # uvicorn stops here after the in-flight requests were answered

    app = FastAPI(title="artemis serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.queue = queue

    def error_response(error: APIError) -> JSONResponse:
        return JSONResponse(error.body, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code))

    @app.exception_handler(APIError)
    async def api_error_handler(request, exc: APIError):
        return error_response(exc)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if settings.api_key and request.url.path != "/health":
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.api_key.encode()):
                # never echo what was sent: it may be a real key meant for another server
                return error_response(APIError(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                                               code="invalid_api_key"))
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "in_flight": queue.depth, "batches": queue.stats.to_json()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "artemis"}]}

    async def read_body(request: Request) -> bytes:
        limit = settings.max_request_bytes
        declared = request.headers.get("content-length")
        too_big = APIError(413, f"request body over the server's limit ({limit / 1e6:g} MB, --max-request-mb)",
                           code="request_too_large")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    memo = PreparedTargets()

    def prepare(chat: ChatRequest, conversation):
        start = time.perf_counter()
        if chat.record is not None:
            prepared = record_target(chat.record, chat.data_root, allow=settings.allow_paths)
        else:
            target = video_target(chat, conversation, allow=settings.allow_paths, upload_dir=settings.upload_dir)
            prepared = memo.lookup(target)
            if prepared is None:
                prepared = referrer.prepare(target)
                memo.store(prepared)
        return prepared, time.perf_counter() - start

    def remembered(chat: ChatRequest, conversation):
        """A memo hit (or a bad box on a known video) without a thread; None: prepare in a thread."""
        if chat.record is not None or conversation.video_url is None or conversation.video_url.startswith("data:"):
            return None
        target = video_target(chat, conversation, allow=settings.allow_paths, upload_dir=settings.upload_dir)
        prepared = memo.lookup(target)
        return None if prepared is None else (prepared, 0.0)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await read_body(request)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise APIError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from None
        if not isinstance(payload, dict):
            raise APIError(400, f"the request body must be a JSON object, got {type(payload).__name__}")
        try:
            chat = ChatRequest.model_validate(payload)
        except ValidationError as exc:
            problems = format_validation_error(exc)
            first = exc.errors()[0]["loc"] if exc.errors() else ()
            raise APIError(400, "; ".join(problems), param=".".join(str(p) for p in first) or None) from None
        if chat.model != model_name:
            raise APIError(404, f"the model {chat.model!r} does not exist (this server serves {model_name!r})",
                           param="model", code="model_not_found")
        decoding = decoding_of(chat, settings.max_new_tokens)
        try:
            conversation = read_conversation(chat)  # cheap checks here: a bad request never waits for a thread
            known = remembered(chat, conversation)
            prepared, prepare_s = known or await run_in_threadpool(prepare, chat, conversation)
        except Exception as exc:  # noqa: BLE001 - a bad target is a 4xx, anything else this request's 500
            raise api_error(exc) from None
        job = Job(prepared=prepared, question=conversation.question, history=conversation.history, decoding=decoding,
                  prepare_s=prepare_s)
        try:
            future = queue.submit_future(job)
        except QueueClosed as exc:
            raise api_error(exc) from None
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return StreamingResponse(_events(future, completion_id, model_name, job, include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            answer = await asyncio.wrap_future(future)
        except Exception as exc:  # noqa: BLE001 - mapped to this request's status
            raise api_error(exc) from None
        return _completion(answer, future, completion_id, model_name, job)

    return app


def _extension(answer, future, job: Job) -> dict[str, Any]:
    info = getattr(future, "batch_info", None)
    timings = {"prepare": job.prepare_s, **answer.timings}
    if info is not None:
        timings["queued"] = info.queued_s
    return {"frames_used": answer.frames_used, "batch_size": info.size if info else 1,
            "timings": {k: round(v, 4) for k, v in timings.items()}}


def _finish_reason(answer, job: Job) -> str:
    return "length" if answer.completion_tokens >= job.decoding.max_new_tokens else "stop"


def _usage(answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def _completion(answer, future, completion_id: str, model_name: str, job: Job) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                         "finish_reason": _finish_reason(answer, job), "logprobs": None}],
            "usage": _usage(answer), "artemis": _extension(answer, future, job)}


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(future, completion_id: str, model_name: str, job: Job, include_usage: bool):
    """Server-sent events in the OpenAI chunk format. The answer of a batched generation is complete
    when its batch finishes, so it comes as one content chunk after the opening role chunk."""
    created = int(time.time())

    def chunk(delta: dict, finish: Optional[str] = None, **extra) -> dict:
        return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}

    yield _sse(chunk({"role": "assistant", "content": ""}))
    try:
        answer = await asyncio.wrap_future(future)
    except Exception as exc:  # noqa: BLE001 - the status line is sent: the error goes in the stream
        yield _sse(api_error(exc).body)
        yield "data: [DONE]\n\n"
        return
    yield _sse(chunk({"content": answer.answer}))
    yield _sse(chunk({}, _finish_reason(answer, job), artemis=_extension(answer, future, job)))
    if include_usage:
        yield _sse({"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                    "choices": [], "usage": _usage(answer)})
    yield "data: [DONE]\n\n"
