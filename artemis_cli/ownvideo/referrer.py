"""`Referrer`: one loaded model, a tracker and the caches, answering questions about boxed targets.

The own-video path is the benchmark path on a record made on the fly: `prepare` tracks the user's
box through the video and extracts the clip feature (both cached, see `cache`; the work is
`prepare.prepare_target`'s), giving the same VideoRef record `artemis track` writes; `ask` turns it into model inputs with
`model.inputs.referring_inputs` (``train=False``: the published VideoRefBench prompt and frame choice)
and answers with `model.generation.generate_tokens`, seeded as `infer videorefbench` seeds a record
of the same `video_name`. So under the default question `ask` gives exactly the answer `infer
videorefbench` gives on the record. `history` continues the conversation in the model's template
(the first user turn carries the video and the boxes, later turns are plain text).

This module is the contract the web page and the server build on: they never track, extract,
prompt or generate themselves.

Threads: `prepare` (tracking, and clip features through the feature cache's own CLIP backend) runs
without the model's lock, so preparing a new video never holds up answers; `ask_many` holds it while
it generates. Streaming: a `Query` with `on_text` gets each new piece of its answer as it is
generated, also when it is answered in a batch with others::

    pieces = []
    answer = referrer.ask(prepared, "What is the <bbox> doing?", on_text=pieces.append)
    assert "".join(pieces) == answer.answer

    referrer.ask_many([Query(prepared, question, on_text=lambda piece: send(client_a, piece)),
                       Query(other, question, stop=["."], on_text=lambda piece: send(client_b, piece))])

`on_text(piece)` runs on the generating thread (hand the piece to your own loop or queue; keep it
short); returning True stops that answer there (its client went away). The pieces join to exactly
`Answer.answer`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import random
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from artemis_cli.errors import ArtemisError, InputError, UsageError
from artemis_cli.model.conversation import BBOX_TOKEN, BENCH_QUESTION
from artemis_cli.model.generation import DecodingSettings
from artemis_cli.ownvideo.prepare import NUM_TRACKED, PreparedTarget, Target, as_target, prepare_target
from artemis_cli.ownvideo.tracking import ExtraKey  # noqa: F401 (the request form of a key box, read from here too)

DEFAULT_QUESTION = BENCH_QUESTION  # "What is the <bbox> doing in this video?" (+ the tracking sentence and boxes)
QUANTIZE = ("none", "int8", "int4", "nf4")
TEMPLATE = "llava_v1"  # the published inference template
ProgressFn = Optional[Callable[[str, float], None]]
INPUT_CACHE_SIZE = 16  # recent targets whose model inputs (9 processed frames + clip feature) and RoI tokens are kept


class _LRU:
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass
class Answer:
    answer: str
    question: str  # as asked, with its <bbox>
    frames_used: list[int]  # the frames fed to the RoI module (key frame first), in video frame numbers
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float]  # seconds: inputs, generate
    finish_reason: str = "stop"  # "stop": </s> or a stop string; "length": max_new_tokens reached
    logprobs: Optional[list[dict]] = None  # with Query.top_logprobs: OpenAI's logprobs.content entries

    def to_json(self) -> dict:
        return {"answer": self.answer, "question": self.question, "frames_used": self.frames_used,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


TextCallback = Callable[[str], Optional[bool]]


@dataclass
class Query:
    """One question for `Referrer.ask_many` (a plain ``(prepared, question, history)`` tuple is the same
    as a `Query` with the defaults).

    `system` replaces the template's system prompt (None: the published one). `stop`: the answer ends
    before the first of these strings (not included; up to 4). `sample`: which sample of the same
    question this is (n > 1: its own sampling seed, the same RoI frames). `top_logprobs` (0-20): give
    each answer token's log-probability and that many alternatives (`Answer.logprobs`). `on_text(piece)`:
    called with each new piece of the answer as it is generated (see the module doc)."""

    prepared: PreparedTarget
    question: str = DEFAULT_QUESTION
    history: Sequence[tuple[str, str]] = ()
    system: Optional[str] = None
    stop: Sequence[str] = ()
    sample: int = 0
    top_logprobs: Optional[int] = None
    on_text: Optional[TextCallback] = None

    @classmethod
    def of(cls, item) -> "Query":
        if isinstance(item, Query):
            return item
        prepared, question, history = item
        return cls(prepared, question, tuple(history or ()))


class ContextLengthError(UsageError):
    """The prompt and the answer asked for do not fit in the model's positions."""

    def __init__(self, prompt_tokens: int, max_new_tokens: int, limit: int, prompt_limit: int):
        self.prompt_tokens, self.max_new_tokens, self.limit = prompt_tokens, max_new_tokens, limit
        if prompt_tokens + max_new_tokens > limit:  # OpenAI's wording (clients look for it)
            message = (f"This model's maximum context length is {limit} tokens. However, you requested "
                       f"{prompt_tokens + max_new_tokens} tokens ({prompt_tokens} in the messages, {max_new_tokens} "
                       "in the completion). Please reduce the length of the messages or completion.")
        else:
            message = (f"This model's maximum prompt length is {prompt_limit} tokens. However, your messages "
                       f"resulted in {prompt_tokens} tokens (including the video's and the boxes' tokens). "
                       "Please reduce the length of the messages.")
        super().__init__(message)


FOLLOW_UP_TARGET = "the target"  # what a <bbox> in a follow-up question is sent to the model as


def follow_up_question(question: str) -> str:
    """A follow-up as the model gets it: the first question carries the target's boxes (one ``<bbox>``), so a
    later ``<bbox>`` cannot bring new ones; people still write "What colour is the <bbox>?", meaning the same
    target, so each ``<bbox>`` is sent as the words "the target" ("the <bbox>" too)."""
    text = re.sub(r"\b(?:the|this|that)\s+" + re.escape(BBOX_TOKEN), FOLLOW_UP_TARGET, question, flags=re.IGNORECASE)
    return " ".join(text.replace(BBOX_TOKEN, FOLLOW_UP_TARGET).split(" "))


def check_question(question: str, history: Sequence[tuple[str, str]] = ()) -> None:
    """The question that opens a conversation has exactly one ``<bbox>``; later ones have none."""
    if not history:
        if question.count(BBOX_TOKEN) != 1:
            raise UsageError(f"the question must contain exactly one {BBOX_TOKEN} (where the target is meant), "
                             f"found {question.count(BBOX_TOKEN)}: {question!r}",
                             hint=f"for example {DEFAULT_QUESTION!r}")
        return
    check_question(history[0][0])
    if BBOX_TOKEN in question:
        raise UsageError(f"a follow-up question must not contain {BBOX_TOKEN} (the first turn already carries the "
                         f"target's boxes): {question!r}", hint="refer to the target in words ('it', 'the person')")


@dataclass
class _Built:
    request: object  # GenerationRequest
    question: str
    query: "Query"
    frames_used: list[int]
    prompt_tokens: int
    seconds: float


def _streamed(query: "Query") -> bool:
    """Whether a query's answer is followed token by token (else it is decoded once at the end)."""
    return query.on_text is not None or bool(query.stop) or query.top_logprobs is not None


class _AnswerStream:
    """One answer followed as its tokens arrive: the text decoded incrementally (a token's text can
    depend on the next: SentencePiece spaces, bytes of one character), handed to `on_text` in pieces
    that never need taking back (trailing spaces and what could begin a stop string or ``</s>`` are
    held until more text shows what they are), cut at the first stop string."""

    END = "</s>"  # `decode_answer` drops a trailing literal "</s>"

    def __init__(self, tokenizer, query: "Query"):
        self.tokenizer = tokenizer
        self.stop = [s for s in query.stop if s]
        self.on_text = query.on_text
        self.top_logprobs = query.top_logprobs
        self.tokens: list[int] = []
        self.logprobs: list[dict] = []
        self.raw = ""  # the text of tokens[:_done] (final: later tokens do not change it)
        self.sent = ""  # what on_text has been given (a prefix of the final answer)
        self.cut: Optional[int] = None  # where the first stop string starts in the visible text
        self.gone = False  # on_text asked to stop
        self._done = 0

    CONTEXT = 4  # tokens decoded again before the new ones (a piece's leading space depends on them)
    MAX_PENDING = 32  # tokens held for a character that never completes before they are decoded as they are

    def add(self, token: int, logprob=None) -> bool:
        """Take the next token; True = stop generating this answer."""
        self.tokens.append(token)
        if logprob is not None and self.top_logprobs is not None:
            self.logprobs.append(self._logprob_entry(token, logprob))
        if _is_byte_token(self.tokenizer, token) or not self._decode_new():
            # a run of byte tokens decodes as a whole (invalid UTF-8 becomes one replacement per byte): wait
            # for the token that ends it
            return False
        visible = self.raw.lstrip()
        if self.stop:
            found = [i for i in (visible.find(s) for s in self.stop) if i >= 0]
            if found:
                self.cut = min(found)
                self._send(visible[:self.cut].rstrip())
                return True
        self._send(self._settled(visible))
        return self.gone

    def _settled(self, visible: str) -> str:
        """The part of `visible` no later token can change in the final answer: without trailing spaces (the
        answer is stripped), a half character, or an end that may begin a stop string or ``</s>``."""
        safe, previous = visible, None
        while safe != previous:
            previous = safe
            safe = safe.rstrip().rstrip("\ufffd")
            held = max([k for x in [self.END, *self.stop] for k in range(1, len(x) + 1) if safe.endswith(x[:k])],
                       default=0)
            safe = safe[:len(safe) - held]
        return safe

    def _decode_new(self) -> bool:
        """Add the new tokens' text to `raw` once it is whole (no half character); True if it grew. Only the
        last few tokens are decoded again, so a long answer costs no more per token than a short one."""
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        start = max(0, self._done - self.CONTEXT)
        context, tail = decode(self.tokens[start:self._done]), decode(self.tokens[start:])
        fresh = tail[len(context):] if tail.startswith(context) else None
        if fresh is not None and not fresh.endswith("\ufffd"):
            self.raw += fresh
        elif len(self.tokens) - self._done >= self.MAX_PENDING:  # bytes that form no character: as they are
            fresh, self.raw = "?", decode(self.tokens)
        else:
            return False
        self._done = len(self.tokens)
        return bool(fresh)

    def finish(self, tokens: list[int], max_new_tokens: int) -> tuple[str, str, Optional[list[dict]]]:
        """(the answer's text, its finish reason, its logprobs entries) once generation ended; the rest of
        the text goes to `on_text`."""
        from artemis_cli.model.generation import decode_answer

        if self.cut is not None:
            text, finish = self.raw.lstrip()[:self.cut].strip(), "stop"
        else:
            text = decode_answer(self.tokenizer, tokens)
            finish = "length" if len(tokens) >= max_new_tokens and not self.gone else "stop"
        self._send(text)
        logprobs = self.logprobs if self.top_logprobs is not None else None
        return text, finish, logprobs

    def _send(self, text: str) -> None:
        if self.on_text is None or self.gone or len(text) <= len(self.sent) or not text.startswith(self.sent):
            return
        piece, self.sent = text[len(self.sent):], text
        if self.on_text(piece):
            self.gone = True

    def _logprob_entry(self, token: int, logprob) -> dict:
        def described(token_id: int, value: float) -> dict:
            text, raw = _token_text(self.tokenizer, token_id)
            return {"token": text, "logprob": value, "bytes": list(raw)}

        entry = described(token, logprob.logprob)
        entry["top_logprobs"] = [described(t, v) for t, v in logprob.top[:self.top_logprobs or 0]]
        return entry


def _is_byte_token(tokenizer, token_id: int) -> bool:
    """A SentencePiece byte-fallback token (``<0xAB>``)."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    return isinstance(piece, str) and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")


def _token_text(tokenizer, token_id: int) -> tuple[str, bytes]:
    """A token as text and UTF-8 bytes (SentencePiece's ``▁`` as a space; a byte token as its byte)."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if _is_byte_token(tokenizer, token_id):
        try:
            raw = bytes([int(piece[3:5], 16)])
            return raw.decode("utf-8", errors="replace"), raw
        except ValueError:
            pass
    text = str(piece).replace("\u2581", " ")
    return text, text.encode("utf-8")


class Referrer:
    """One loaded model, a tracker and the feature/track caches: answers questions about targets."""

    def __init__(self, model: str | None = None, model_base: str | None = None, *, image_tower: str | None = None,
                 device: str = "auto", dtype: str = "auto", tracker: str = "csrt",
                 tracker_model: str | None = None, stride: Optional[int] = None, cache_dir: Path | None = None,
                 quantize: str = "none", loaded=None, show_progress: bool = False):
        from artemis_cli.model.loading import resolve_tower
        from artemis_cli.ownvideo.cache import FeatureCache, TrackCache
        from artemis_cli.ownvideo.trackers import TRACKERS
        from artemis_cli.ownvideo.video import default_cache_dir

        start = time.perf_counter()
        if tracker not in TRACKERS:
            raise UsageError(f"--tracker {tracker!r}: expected one of {', '.join(TRACKERS)}")
        if quantize not in QUANTIZE:
            raise UsageError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZE)}")
        if stride is not None and stride < 1:
            raise UsageError(f"--stride {stride}: must be >= 1")
        if loaded is None:
            if model is None:
                raise UsageError("a model is needed: pass --model (a stage-3 Artemis checkpoint)")
            loaded = _load(model, model_base, image_tower=image_tower, device=device, dtype=dtype, quantize=quantize)
        if loaded.model.get_roi_module() is None or loaded.image_processor is None:
            raise UsageError(f"{model or loaded.source}: the model has no RoI module / image tower (mm_spi_model is "
                             "false), so it cannot answer about a boxed target", hint="use a stage-3 Artemis checkpoint")
        self.loaded = loaded
        self.model_name = Path(str(model)).name if model else Path(str(loaded.source)).name
        self.tracker = tracker
        self.tracker_model = tracker_model
        self.stride = stride
        self.quantize = quantize
        self.show_progress = show_progress
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        mm = loaded.model.mm
        self.clip_model = resolve_tower(mm.mm_image_tower, Path(loaded.source), image_tower)
        device_name = str(loaded.model.device)
        self.features = FeatureCache(self.cache_dir, self.clip_model, device=device_name, option="--image-tower")
        self.tracks = TrackCache(self.cache_dir)
        self._sam2 = None
        if tracker == "sam2":
            from artemis_cli.ownvideo.trackers import load_sam2

            self._sam2 = load_sam2(tracker_model, device_name, loaded.model.dtype)
        self._lock = threading.RLock()  # the model: generation and RoI encoding (never tracking or features)
        self._sam2_lock = threading.Lock()
        # Questions about a target seen before reuse its model inputs and its RoI tokens (the tower and the
        # RoI module over 9 frames, most of one answer's work on a small model): the same tensors that
        # encoding them again would give, so answers do not change.
        self._inputs = _LRU(INPUT_CACHE_SIZE)
        self._rois = _LRU(INPUT_CACHE_SIZE)
        self.startup_seconds = time.perf_counter() - start

    # ---- targets ------------------------------------------------------------------------------------
    def prepare(self, target: Target, *, progress: ProgressFn = None, limits=None,
                check: Optional[Callable[[int], None]] = None) -> PreparedTarget:
        """Track the box through the video and extract its clip features (both cached by the video's
        content hash + settings). Raises UsageError (bad box/frame) / InputError (undecodable video,
        lost everywhere). `progress(stage, fraction)` is called while working.

        It does not take the model's lock (answers go on meanwhile) and may run in several threads at
        once. `limits` (a `video.VideoLimits`) bound the work; `check(frame)` is called as it goes and
        may raise to stop it (a deadline, a shutdown). A preparation that fails leaves nothing in the
        caches."""
        lock = self._sam2_lock if self._sam2 is not None else contextlib.nullcontext()
        with lock:  # the SAM 2 tracker is one model with state per video: one track at a time
            return prepare_target(target, tracks=self.tracks, features=self.features, tracker=self.tracker,
                                  tracker_model=self.tracker_model, sam2=self._sam2, stride=self.stride,
                                  progress=progress, limits=limits, check=check)

    def check_target(self, target: Target, *, limits=None) -> None:
        """Refuse, without decoding a frame, a video over `limits` (its header's size and frame count) and key
        boxes outside its frames: what `prepare` would refuse only after work."""
        from artemis_cli.ownvideo.tracking import check_keys
        from artemis_cli.ownvideo.video import DEFAULT_LIMITS, probe

        info = probe(Path(target.video), limits or DEFAULT_LIMITS)
        keys = as_target(target).key_boxes()
        for key in keys:
            if info.header_frames and key.frame >= info.header_frames:
                raise UsageError(f"--frame {key.frame}: the video has {info.header_frames} frame(s) "
                                 f"(0-{info.header_frames - 1})")
        check_keys(keys, info.frame_size)

    def cached(self, target: Target, *, limits=None) -> Optional[PreparedTarget]:
        """`prepare(target)` when its track and clip feature are both in the caches (reading the video's bytes
        once to hash them, nothing more), else None: a server answers such a target without waiting for
        a free preparation thread."""
        return prepare_target(target, tracks=self.tracks, features=self.features, tracker=self.tracker,
                              tracker_model=self.tracker_model, sam2=self._sam2, stride=self.stride, limits=limits,
                              cached_only=True)

    # ---- prompt length ------------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        """The model's positions (prompt + answer)."""
        return int(getattr(self.loaded.model.config, "max_position_embeddings", None) or 4096)

    @property
    def max_prompt_tokens(self) -> int:
        """The longest prompt: the positions, or the checkpoint's `tokenizer_model_max_length` (longer
        prompts would be cut there after splicing) when smaller."""
        cut = getattr(self.loaded.model.mm, "tokenizer_model_max_length", None)
        return min(self.context_length, int(cut)) if cut else self.context_length

    def video_tokens(self) -> int:
        """LLM tokens one clip feature takes (temporal rows + spatial rows)."""
        from artemis_cli.ownvideo.cache import FEATURE_RECIPE

        tower = self.loaded.model.get_image_tower()
        config = tower.config
        return FEATURE_RECIPE["num_frames"] + (int(config.image_size) // int(config.patch_size)) ** 2

    def count_prompt_tokens(self, question: str, history: Sequence[tuple[str, str]] = (),
                            system: Optional[str] = None) -> int:
        """The prompt's length in LLM tokens (text, the video's tokens and one per box), as `ask` builds
        it, without a prepared target: to refuse a request that cannot fit before any work."""
        from artemis_cli.model.conversation import tokenize_prompt
        from artemis_cli.model.splice import IMAGE_TOKEN_INDEX

        ids = tokenize_prompt(self._prompt_text(question, list(history or ()), system), self.loaded.tokenizer)
        images = sum(1 for t in ids if t == IMAGE_TOKEN_INDEX)
        return len(ids) - images + images * self.video_tokens()

    def check_context(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """A `ContextLengthError` when the prompt plus `max_new_tokens` do not fit."""
        if prompt_tokens > self.max_prompt_tokens or prompt_tokens + max_new_tokens > self.context_length:
            raise ContextLengthError(prompt_tokens, max_new_tokens, self.context_length, self.max_prompt_tokens)

    def _prompt_text(self, question: str, history: list, system: Optional[str]) -> str:
        """The rendered prompt (``<image>`` and ``<bbox>`` placeholders in place), as `referring_inputs`
        renders the opening turn and `_build` the later ones."""
        from artemis_cli.model.conversation import get_template, referring_question

        template = get_template(TEMPLATE)
        if system is not None:
            template = dataclasses.replace(template, system=system)
        user, assistant = template.roles
        num_boxes = self.loaded.model.mm.tracked_roi_tokens(NUM_TRACKED)
        opening = history[0][0] if history else question
        messages = [(user, referring_question(num_boxes, question=opening, train=False))]
        if history:
            messages.append((assistant, history[0][1]))
            for earlier_question, earlier_answer in history[1:]:
                messages += [(user, earlier_question), (assistant, earlier_answer)]
            messages.append((user, question))
        messages.append((assistant, None))
        return template.render(messages)

    # ---- questions ----------------------------------------------------------------------------------
    def ask(self, prepared: PreparedTarget, question: str = DEFAULT_QUESTION, *,
            history: Sequence[tuple[str, str]] = (), decoding: DecodingSettings | None = None,
            on_text: Optional[TextCallback] = None, stop: Sequence[str] = (), system: Optional[str] = None) -> Answer:
        """One answer (a batch of one); `on_text(piece)` streams it as it is generated (see `Query`)."""
        query = Query(prepared, question, tuple(history or ()), system=system, stop=tuple(stop), on_text=on_text)
        result = self.ask_many([query], decoding)[0]
        if isinstance(result, ArtemisError):
            raise result
        return result

    def ask_many(self, items: Sequence["Query | tuple[PreparedTarget, str, Sequence[tuple[str, str]]]"],
                 decoding: DecodingSettings | None = None) -> list[Answer | ArtemisError]:
        """Answer many in one batched `generate_tokens` call; a request whose inputs fail (or whose prompt
        and answer do not fit the model: `ContextLengthError`) gets its `ArtemisError` in its slot. Under
        greedy decoding each answer equals `ask` alone, streamed (`Query.on_text`) or not."""
        from artemis_cli.model.generation import RowStreamer, decode_answer, generate_tokens

        decoding = (decoding or DecodingSettings()).resolved(self.loaded.model.generation_config)
        queries = [Query.of(item) for item in items]
        built: list[_Built | ArtemisError] = []
        for query in queries:
            try:
                item = self._build(query.prepared, query.question, list(query.history or ()), decoding, query)
                self.check_context(item.prompt_tokens, decoding.max_new_tokens)
                built.append(item)
            except ArtemisError as exc:
                built.append(exc)
            except OSError as exc:  # an unreadable cached frame or feature
                built.append(InputError(f"{type(exc).__name__}: {exc}"))
        ready = [b for b in built if isinstance(b, _Built)]
        streams = [_AnswerStream(self.loaded.tokenizer, b.query) if _streamed(b.query) else None for b in ready]
        rows: list[list[int]] = []
        seconds = 0.0
        if ready:
            streamer = None
            if any(streams):
                wanted = [b.query.top_logprobs for b in ready if b.query.top_logprobs is not None]
                streamer = RowStreamer(lambda row, token, logprob: streams[row].add(token, logprob)
                                       if streams[row] is not None else None,
                                       top_logprobs=max(wanted) if wanted else None)
            with self._lock:
                start = time.perf_counter()
                rows = generate_tokens(self.loaded.model, self.loaded.tokenizer, [b.request for b in ready], decoding,
                                       streamer=streamer)
                seconds = time.perf_counter() - start
        answers = iter(zip(rows, streams))
        out: list[Answer | ArtemisError] = []
        for item in built:
            if isinstance(item, ArtemisError):
                out.append(item)
                continue
            tokens, stream = next(answers)
            if stream is not None:
                text, finish, logprobs = stream.finish(tokens, decoding.max_new_tokens)
            else:
                text, logprobs = decode_answer(self.loaded.tokenizer, tokens), None
                finish = "length" if len(tokens) >= decoding.max_new_tokens else "stop"
            out.append(Answer(answer=text, question=item.question, frames_used=item.frames_used,
                              prompt_tokens=item.prompt_tokens, completion_tokens=len(tokens),
                              timings={"inputs": item.seconds, "generate": seconds}, finish_reason=finish,
                              logprobs=logprobs))
        return out

    def _build(self, prepared: PreparedTarget, question: str, history: list, decoding: DecodingSettings,
               query: Optional[Query] = None) -> _Built:
        from artemis_cli.data.records import ReferringRecord
        from artemis_cli.model.conversation import tokenize_prompt
        from artemis_cli.model.generation import GenerationRequest, request_seed
        from artemis_cli.model.inputs import referring_inputs
        from artemis_cli.model.sampling import sample_roi_frames

        start = time.perf_counter()
        query = query or Query(prepared, question, tuple(history))
        if not isinstance(question, str) or not question.strip():
            raise UsageError("the question is empty")
        check_question(question, history)
        loaded, mm = self.loaded, self.loaded.model.mm
        num_boxes = mm.tracked_roi_tokens(NUM_TRACKED)
        opening = history[0][0] if history else question
        record = ReferringRecord.model_validate({**prepared.record, "question": opening})
        name = str(record.video_name)
        seed = request_seed(decoding.seed, name)
        root = Path(prepared.root)
        target_key = (json.dumps(prepared.record, sort_keys=True, default=str), str(root))
        inputs = self._inputs.get((target_key, opening, seed))
        if inputs is None:
            inputs = referring_inputs(record, clip=root / record.clip_path, frame_dir=root / record.frame_path,
                                      tokenizer=loaded.tokenizer, image_processor=loaded.image_processor,
                                      rng=random.Random(seed), train=False, num_boxes=num_boxes,
                                      num_tracked=NUM_TRACKED, template=TEMPLATE, feature_width=mm.mm_hidden_size,
                                      ref=name)
            self._inputs.put((target_key, opening, seed), inputs)
        inputs = dataclasses.replace(inputs)  # the history below replaces input_ids on this copy, not the cached one
        if history or query.system is not None:
            inputs.input_ids = tokenize_prompt(self._prompt_text(question, history, query.system), loaded.tokenizer)
        selection = sample_roi_frames(record.track_list, record.frame_id, key_frame_id=record.key_frame_id,
                                      key_frame_box=record.key_frame_box, num_tracked=NUM_TRACKED)
        # sample k of n: its own sampling seed, the RoI picks of the question's first sample
        sample_seed = request_seed(decoding.seed, name, query.sample) if query.sample else seed
        request = GenerationRequest(input_ids=inputs.input_ids, media=inputs.media, seed=sample_seed,
                                    roi_seed=inputs.roi_seed if inputs.roi_seed is not None else seed,
                                    roi_frames=inputs.roi_frames, roi_boxes=inputs.roi_boxes)
        request.roi_tokens = self._roi_tokens(target_key, request)
        return _Built(request=request, question=question, query=query,
                      frames_used=[prepared.frame_number(f) for f in selection.frame_ids],
                      prompt_tokens=inputs.num_tokens(0), seconds=time.perf_counter() - start)

    def _roi_tokens(self, target_key, request):
        """The request's RoI tokens [1 + K, H], encoded once per target and RoI seed."""
        import torch

        key = (target_key, request.rois_seed)
        tokens = self._rois.get(key)
        if tokens is None:
            with self._lock, torch.inference_mode():
                tokens = self.loaded.model.encode_rois([request.roi_frames], [request.roi_boxes], 1,
                                                       [request.rois_seed])[0]
            self._rois.put(key, tokens)
        return tokens

    def settings(self) -> dict:
        """What decides the answers besides the question and decoding (for --json and manifests)."""
        return {"model": self.model_name, "tracker": self.tracker, "tracker_model": self.tracker_model,
                "stride": self.stride or "auto", "clip_model": self.clip_model, "quantize": self.quantize,
                "device": str(self.loaded.model.device),
                "dtype": str(self.loaded.model.dtype).replace("torch.", ""), "template": TEMPLATE,
                "num_tracked": NUM_TRACKED}


def _load(model: str, model_base: Optional[str], *, image_tower, device, dtype, quantize: str):
    """`load_model`, passing `quantize` when this version's loader takes it."""
    from artemis_cli.model.loading import load_model

    kwargs = {}
    if "quantize" in inspect.signature(load_model).parameters:
        kwargs["quantize"] = quantize
    elif quantize != "none":
        raise UsageError(f"--quantize {quantize}: this version's model loader cannot quantise",
                         hint="use --quantize none")
    return load_model(model, model_base, device=device, dtype=dtype, image_tower=image_tower, **kwargs)
