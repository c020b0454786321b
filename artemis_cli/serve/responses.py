"""What `artemis serve` answers: a chat completion, the server-sent events of a streamed one, and the
OpenAI-style error for an exception raised while serving a request.

`api_error` maps the library's exceptions to statuses (`app` documents them); `completion` builds a
`chat.completion` body; `EventStream` is one streamed request's events (the role chunk at once, progress
comments while its video is prepared, its own tokens as its batch generates them, the last chunk with the
`artemis` field, usage, ``[DONE]``); `Relay` hands a request's new text to its stream exactly once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from artemis_cli.errors import ArtemisError, InputError, UsageError
from artemis_cli.serve.batching import QueueClosed, QueueFull
from artemis_cli.serve.guard import APIError
from artemis_cli.serve.preparing import Busy, WorkStopped
from artemis_cli.serve.targets import Forbidden

if TYPE_CHECKING:
    from artemis_cli.serve.schemas import ChatRequest


def api_error(exc: BaseException) -> APIError:
    """The HTTP answer for an exception raised while serving one request."""
    from artemis_cli.ownvideo.referrer import ContextLengthError

    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, Forbidden):
        return APIError(403, exc.message, "permission_error", code="path_not_allowed")
    if isinstance(exc, ContextLengthError):
        return APIError(400, exc.message, param="messages", code="context_length_exceeded")
    if isinstance(exc, WorkStopped):
        kind = "server_error" if exc.status >= 500 else "invalid_request_error"
        return APIError(exc.status, exc.message, kind, code=exc.code)
    if isinstance(exc, (Busy, QueueFull)):
        return APIError(503, exc.args[0] if exc.args else "the server is busy", "server_error", code="server_busy",
                        headers={"Retry-After": "2"})
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


class Relay:
    """A stream's `on_text`: hands new text to `emit`, once, even when its answer is generated again (a
    failed batch rerun one request at a time restarts the answer; what was already sent is skipped)."""

    def __init__(self, emit: Callable[[str], None], gone: threading.Event):
        self.emit, self.gone = emit, gone
        self.sent = ""
        self.attempt = ""

    def restart(self) -> None:
        self.attempt = ""

    def __call__(self, piece: str) -> bool:
        self.attempt += piece
        if len(self.attempt) > len(self.sent) and self.attempt.startswith(self.sent):
            fresh, self.sent = self.attempt[len(self.sent):], self.attempt
            self.emit(fresh)
        return self.gone.is_set()


def extension(answer, future, prepare_s: float) -> dict[str, Any]:
    """The `artemis` field of an answer: frames fed to the RoI module, its batch's size, timings."""
    info = getattr(future, "batch_info", None)
    timings = {"prepare": prepare_s, **answer.timings}
    if info is not None:
        timings["queued"] = info.queued_s
    return {"frames_used": answer.frames_used, "batch_size": info.size if info else 1,
            "timings": {k: round(v, 4) for k, v in timings.items()}}


def usage(answers: list) -> dict[str, int]:
    prompt = answers[0].prompt_tokens
    generated = sum(a.completion_tokens for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def logprobs_of(answer, chat: ChatRequest):
    return {"content": answer.logprobs or []} if chat.logprobs else None


def completion(answers: list, futures: list, completion_id: str, model_name: str, prepare_s: float,
               chat: ChatRequest) -> dict[str, Any]:
    answers = answers * chat.n if len(answers) == 1 else answers  # greedy: n alike answers, generated once
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model_name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": a.answer},
                         "finish_reason": getattr(a, "finish_reason", "stop"), "logprobs": logprobs_of(a, chat)}
                        for i, a in enumerate(answers)],
            "usage": usage(answers), "artemis": extension(answers[0], futures[0], prepare_s)}


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class EventStream:
    """The server-sent events of one streamed request (OpenAI's chunk format). `state` is the app's checked
    request; `prepared_of`, `jobs_of`, `submit` and `release` are the app's steps for it."""

    def __init__(self, state, completion_id: str, model_name: str, keepalive_s: float, prepared_of,
                 jobs_of, submit, release):
        self.state, self.id, self.model, self.keepalive_s = state, completion_id, model_name, keepalive_s
        self.prepared_of, self.jobs_of, self.submit, self.release = prepared_of, jobs_of, submit, release
        self.created = int(time.time())
        self.gone = threading.Event()

    def chunk(self, index: int, delta: dict, finish: Optional[str] = None, **extra) -> str:
        return sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                    "choices": [{"index": index, "delta": delta, "finish_reason": finish,
                                 "logprobs": extra.pop("logprobs", None)}], **extra})

    async def events(self):
        state, chat = self.state, self.state.chat
        try:
            for index in range(chat.n):  # at once: the client knows the request was taken
                yield self.chunk(index, {"role": "assistant", "content": ""})
            try:
                if state.prepared is None:
                    async for comment in self._while_preparing():
                        yield comment
                await self.prepared_of(state)
                loop = asyncio.get_running_loop()
                pieces: asyncio.Queue = asyncio.Queue()

                def on_text_for(index: int) -> Relay:
                    return Relay(lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, (index, piece)), self.gone)

                jobs = self.jobs_of(state, on_text_for)
                futures = self.submit(jobs)
                async for event in self._tokens(futures, pieces):
                    yield event
                answers = [f.result() for f in futures]
            except Exception as exc:  # noqa: BLE001 - the status line is sent: the error goes in the stream
                yield sse(api_error(exc).body)
                yield "data: [DONE]\n\n"
                return
            if len(answers) == 1 and chat.n > 1:  # greedy: alike answers, generated once, streamed as each
                answers = answers * chat.n
            for index, answer in enumerate(answers):
                if chat.logprobs:
                    yield self.chunk(index, {"content": ""}, logprobs=logprobs_of(answer, chat))
                yield self.chunk(index, {}, getattr(answer, "finish_reason", "stop"),
                                 artemis=extension(answer, futures[min(index, len(futures) - 1)], jobs[0].prepare_s))
            if chat.stream_options and chat.stream_options.include_usage:
                yield sse({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model, "choices": [], "usage": usage(answers)})
            yield "data: [DONE]\n\n"
        finally:  # also when the client went away (the generator is closed): stop its work
            self.gone.set()
            self.release(state)

    async def _while_preparing(self):
        """SSE comments until the preparation ends: progress when there is some, else a keep-alive."""
        state = self.state
        shown = (None, -1.0)
        done = asyncio.ensure_future(asyncio.wrap_future(state.preparing))
        try:
            while not done.done():
                getter = asyncio.ensure_future(state.progress.get())
                finished, _ = await asyncio.wait({done, getter}, timeout=self.keepalive_s,
                                                 return_when=asyncio.FIRST_COMPLETED)
                if getter in finished:
                    stage, fraction = getter.result()
                    if stage != shown[0] or fraction - shown[1] >= 0.05 or fraction >= 1.0:
                        shown = (stage, fraction)
                        yield f": artemis {json.dumps({'stage': stage, 'progress': round(fraction, 3)})}\n\n"
                else:
                    getter.cancel()
                    if not finished:
                        yield ": keep-alive\n\n"
        finally:
            if not done.done():
                done.cancel()

    async def _tokens(self, futures: list, pieces: asyncio.Queue):
        everything = asyncio.ensure_future(asyncio.gather(*(asyncio.wrap_future(f) for f in futures),
                                                          return_exceptions=True))
        try:
            while True:
                getter = asyncio.ensure_future(pieces.get())
                finished, _ = await asyncio.wait({everything, getter}, timeout=self.keepalive_s,
                                                 return_when=asyncio.FIRST_COMPLETED)
                if getter in finished:
                    index, piece = getter.result()
                    yield self.chunk(index, {"content": piece})
                    continue
                getter.cancel()
                if everything in finished:
                    while not pieces.empty():  # pieces handed over just before the batch ended
                        index, piece = pieces.get_nowait()
                        yield self.chunk(index, {"content": piece})
                    for result in everything.result():
                        if isinstance(result, BaseException):
                            raise result
                    return
                yield ": keep-alive\n\n"
        finally:
            if not everything.done():
                for future in futures:
                    future.cancel()
                everything.cancel()
