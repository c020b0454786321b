"""`Referrer`: one loaded model, a tracker and the caches, answering questions about boxed targets.

The own-video path is the benchmark path on a record made on the fly: `prepare` tracks the user's
box through the video and extracts the clip feature (both cached, see `cache`), giving the same
VideoRef record `artemis track` writes; `ask` turns it into model inputs with
`model.inputs.referring_inputs` (``train=False``: the published VideoRefBench prompt and frame choice)
and answers with `model.generation.generate_tokens`, seeded as `infer videorefbench` seeds a record
of the same `video_name`. So under the default question `ask` gives exactly the answer `infer
videorefbench` gives on the record. `history` continues the conversation in the model's template
(the first user turn carries the video and the boxes, later turns are plain text).

This module is the contract the web page and the server build on: they never track, extract,
prompt or generate themselves.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from artemis_cli.errors import ArtemisError, InputError, UsageError
from artemis_cli.model.conversation import BBOX_TOKEN, BENCH_QUESTION
from artemis_cli.model.generation import DecodingSettings
from artemis_cli.ownvideo.tracking import ExtraKey  # noqa: F401 (the request form of a key box, read from here too)

DEFAULT_QUESTION = BENCH_QUESTION  # "What is the <bbox> doing in this video?" (+ the tracking sentence and boxes)
QUANTIZE = ("none", "int8", "int4", "nf4")
NUM_TRACKED = 8  # tracked RoI frames, as the published inference
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


@dataclass(frozen=True)
class Target:
    """What the user points at: a box (x1, y1, x2, y2 in pixels) on frame `frame` (0-based) of `video`, and
    optionally more key boxes on other frames (`more`: (frame, box) pairs, corrections where the track
    went wrong). Each key box governs the frames nearest to it; the first is the record's key frame."""

    video: Path
    box: tuple[float, float, float, float]
    frame: int = 0
    more: tuple[tuple[int, tuple[float, float, float, float]], ...] = ()

    def key_boxes(self):
        from artemis_cli.ownvideo.tracking import KeyBox

        return [KeyBox(int(self.frame), tuple(float(v) for v in self.box))] + [
            KeyBox(int(frame), tuple(float(v) for v in box)) for frame, box in self.more]


def make_target(video: Path, boxes: Sequence, frames: Sequence[int]) -> Target:
    """A `Target` from repeated ``--box`` / ``--frame`` options: paired in order; one box without a frame is
    on frame 0. Anything else that does not pair up is a `UsageError`."""
    boxes, frames = list(boxes), list(frames)
    if not boxes:
        raise UsageError("--box X1,Y1,X2,Y2 is required", hint="the target's box in pixels of the --frame")
    if not frames:
        frames = [0]
    if len(boxes) != len(frames):
        raise UsageError(f"{len(boxes)} --box but {len(frames)} --frame: give one --frame per --box",
                         hint="e.g. --box 10,20,80,120 --frame 0 --box 300,40,380,150 --frame 250")
    pairs = [(int(f), tuple(float(v) for v in b)) for b, f in zip(boxes, frames)]
    return Target(Path(video), pairs[0][1], pairs[0][0], tuple(pairs[1:]))


@dataclass
class PreparedTarget:
    """A target after tracking and feature extraction: its VideoRef record (paths relative to `root`)."""

    target: Target
    record: dict
    root: Path
    frame_size: tuple[int, int]  # (width, height)
    num_frames: int
    timings: dict[str, float]  # seconds: decode, track, features (0 on a cache hit)
    frame_indices: list[int] = field(default_factory=list)  # video frame number of each record frame_id
    video_hash: str = ""
    cache_hit: bool = False
    track: dict = field(default_factory=dict)  # `TrackResult.to_json()`: confidences, states, cuts, warnings
    info: object = None  # the `video.VideoProbe` (to decode more of its frames: outputs, previews)

    def quality_line(self) -> str:
        """``track quality: on target ...`` (see `tracking.TrackResult.summary_line`)."""
        from artemis_cli.ownvideo.tracking import quality_line

        return quality_line(self.track)

    def warnings(self, frames_used: Sequence[int] = ()) -> list[str]:
        """Decoding warnings, and a line for each RoI frame in `frames_used` the tracker was unsure of."""
        from artemis_cli.ownvideo.integrity import WARN

        lines = list(self.track.get("decode_warnings", []))
        confidence = dict(zip(self.track.get("frames", []), self.track.get("confidence", [])))
        states = dict(zip(self.track.get("frames", []), self.track.get("states", [])))
        low = [f for f in frames_used if states.get(f) != "key" and confidence.get(f, 1.0) < WARN]
        if low:
            lines.append(f"{len(low)} RoI frame(s) fed to the model have a low track confidence: "
                         + ", ".join(f"frame {f} ({confidence[f]:.2f})" for f in low))
        return lines

    def track_json(self) -> dict:
        """``{"frames": [...], "boxes": [[] | [x1, y1, x2, y2], ...], "key_frame": N, ...}``."""
        from artemis_cli.ownvideo.record import track_json

        out = track_json(self.record, self.frame_indices, self.target.frame, self.frame_size, self.num_frames)
        for name in ("confidence", "states", "cuts", "key_boxes", "quality", "decode_warnings"):
            if name in self.track:
                out[name] = self.track[name]
        return out

    def frame_number(self, frame_id) -> int:
        return self.frame_indices[self.record["frame_id"].index(frame_id)]


@dataclass
class Answer:
    answer: str
    question: str  # as asked, with its <bbox>
    frames_used: list[int]  # the frames fed to the RoI module (key frame first), in video frame numbers
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float]  # seconds: inputs, generate

    def to_json(self) -> dict:
        return {"answer": self.answer, "question": self.question, "frames_used": self.frames_used,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


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


def _as_target(target) -> Target:
    if isinstance(target, Target):
        return target
    raise UsageError(f"expected a Target, got {type(target).__name__}")


def prepare_target(target: Target, *, tracks, features, tracker: str = "csrt", tracker_model: Optional[str] = None,
                   sam2=None, stride: Optional[int] = None, progress: ProgressFn = None, video_name: Optional[str] = None,
                   limits=None, check: Optional[Callable[[int], None]] = None) -> PreparedTarget:
    """Track `target` (cached in `tracks`, a `TrackCache`) and get its clip feature (`features`, a
    `FeatureCache`, or None to leave ``clip_path`` naming where it would be). See `Referrer.prepare`.

    The video is decoded frame by frame (`tracking.track_video_keys`), then once more up to the last RoI
    frame to keep those frames (only them) in the cache. `limits` bound the work (`video.VideoLimits`);
    `check(frame)` may raise to stop it (a deadline, a shutdown)."""
    from artemis_cli.ownvideo.record import build_record
    from artemis_cli.ownvideo.tracking import resolve_stride, track_video_keys
    from artemis_cli.ownvideo.video import DEFAULT_LIMITS, content_hash, iter_selected, probe

    target = _as_target(target)
    video = Path(target.video)
    limits = limits or DEFAULT_LIMITS
    info = probe(video, limits)
    report = progress or (lambda stage, fraction: None)
    video_hash = content_hash(video)
    keys = target.key_boxes()
    stride = resolve_stride(stride, info.fps)
    key = tracks.key(video_hash, keys, tracker, tracker_model, stride)
    timings = {"decode": 0.0, "track": 0.0, "frames": 0.0, "features": 0.0}
    entry = tracks.load(key)
    hit = entry is not None
    extraction = None
    if entry is None and features is not None and not features.path(video_hash).is_file():
        from artemis_cli.ownvideo.tracking import check_keys

        check_keys(keys, info.frame_size)  # a bad box fails before any work starts
        # the clip feature does not depend on the track: extracted meanwhile, on the other core
        extraction = _Background(lambda: features.get(video, video_hash))
    if entry is None:
        result = track_video_keys(info, keys, tracker=tracker, stride=stride, sam2=sam2, limits=limits,
                                  progress=lambda f: report("track", f), check=check)
        timings.update(result.seconds)
        primary = result.keys[[k.frame for k in result.keys].index(target.frame)]
        record = build_record(video_name=video_name or video.stem, frame_path=f"tracks/{key}/frames", clip_path="",
                              indices=result.indices, boxes=result.boxes, num_frames=result.num_frames,
                              key_frame=primary.frame, key_box=primary.box, confidence=result.confidence,
                              cuts=result.cuts)
        entry = {"record": record, "frame_indices": result.indices, "frame_size": list(result.frame_size),
                 "num_frames": result.num_frames, "video": str(video), "video_hash": video_hash,
                 "track": result.to_json(), "settings": {"tracker": tracker, "tracker_model": tracker_model,
                                                         "stride": stride}}
        start = time.perf_counter()
        needed = roi_frame_numbers(record, result.indices)
        tracks.store(key, iter_selected(info, needed, limits=limits, check=check), result.num_frames, entry)
        timings["frames"] = time.perf_counter() - start
    record = dict(entry["record"], frame_path=f"tracks/{key}/frames")
    if video_name is not None:
        record["video_name"] = video_name
    report("track", 1.0)
    if features is not None:
        clip, seconds = extraction.result() if extraction is not None else features.get(video, video_hash)
        timings["features"] = seconds
        record["clip_path"] = f"features/{clip.name}"
    else:
        record["clip_path"] = f"features/{video_hash[:32]}.pkl"
    report("features", 1.0)
    return PreparedTarget(target=target, record=record, root=tracks.root.parent,
                          frame_size=tuple(entry["frame_size"]), num_frames=int(entry["num_frames"]),
                          timings=timings, frame_indices=list(entry["frame_indices"]), video_hash=video_hash,
                          cache_hit=hit and timings["features"] == 0.0, track=entry.get("track", {}), info=info)


class _Background:
    """`work()` in a thread; `result()` waits for it and returns its value or raises its exception."""

    def __init__(self, work: Callable[[], object]):
        self._value: object = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(work,), name="clip-features", daemon=True)
        self._thread.start()

    def _run(self, work) -> None:
        try:
            self._value = work()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def roi_frame_numbers(record: dict, indices: Sequence[int]) -> list[int]:
    """The video frame numbers the RoI path reads for `record` (the key frame and the tracked frames the
    inference sampler picks), so a cache keeps those frames only."""
    from artemis_cli.model.sampling import sample_roi_frames

    selection = sample_roi_frames(record["track_list"], record["frame_id"], key_frame_id=record["key_frame_id"],
                                  key_frame_box=record["key_frame_box"], num_tracked=NUM_TRACKED)
    by_name = dict(zip(record["frame_id"], indices))
    return sorted({by_name[name] for name in selection.frame_ids})


@dataclass
class _Built:
    request: object  # GenerationRequest
    question: str
    frames_used: list[int]
    prompt_tokens: int
    seconds: float


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
        self._lock = threading.RLock()
        # Questions about a target seen before reuse its model inputs and its RoI tokens (the tower and the
        # RoI module over 9 frames, most of one answer's work on a small model): the same tensors that
        # encoding them again would give, so answers do not change.
        self._inputs = _LRU(INPUT_CACHE_SIZE)
        self._rois = _LRU(INPUT_CACHE_SIZE)
        self.startup_seconds = time.perf_counter() - start

    # ---- targets ------------------------------------------------------------------------------------
    def prepare(self, target: Target, *, progress: ProgressFn = None) -> PreparedTarget:
        """Track the box through the video and extract its clip features (both cached by the video's
        content hash + settings). Raises UsageError (bad box/frame) / InputError (undecodable video,
        lost everywhere). `progress(stage, fraction)` is called while working."""
        with self._lock:
            return prepare_target(target, tracks=self.tracks, features=self.features, tracker=self.tracker,
                                  tracker_model=self.tracker_model, sam2=self._sam2, stride=self.stride,
                                  progress=progress)

    # ---- questions ----------------------------------------------------------------------------------
    def ask(self, prepared: PreparedTarget, question: str = DEFAULT_QUESTION, *,
            history: Sequence[tuple[str, str]] = (), decoding: DecodingSettings | None = None) -> Answer:
        """One answer (a batch of one)."""
        result = self.ask_many([(prepared, question, history)], decoding)[0]
        if isinstance(result, ArtemisError):
            raise result
        return result

    def ask_many(self, items: Sequence[tuple[PreparedTarget, str, Sequence[tuple[str, str]]]],
                 decoding: DecodingSettings | None = None) -> list[Answer | ArtemisError]:
        """Answer many in one batched `generate_tokens` call; a request whose inputs fail gets its
        `ArtemisError` in its slot. Under greedy decoding each answer equals `ask` alone."""
        from artemis_cli.model.generation import decode_answer, generate_tokens

        decoding = (decoding or DecodingSettings()).resolved(self.loaded.model.generation_config)
        built: list[_Built | ArtemisError] = []
        for prepared, question, history in items:
            try:
                built.append(self._build(prepared, question, list(history or ()), decoding))
            except ArtemisError as exc:
                built.append(exc)
            except OSError as exc:  # an unreadable cached frame or feature
                built.append(InputError(f"{type(exc).__name__}: {exc}"))
        ready = [b for b in built if isinstance(b, _Built)]
        rows: list[list[int]] = []
        seconds = 0.0
        if ready:
            with self._lock:
                start = time.perf_counter()
                rows = generate_tokens(self.loaded.model, self.loaded.tokenizer, [b.request for b in ready], decoding)
                seconds = time.perf_counter() - start
        answers = iter(rows)
        out: list[Answer | ArtemisError] = []
        for item in built:
            if isinstance(item, ArtemisError):
                out.append(item)
                continue
            tokens = next(answers)
            out.append(Answer(answer=decode_answer(self.loaded.tokenizer, tokens), question=item.question,
                              frames_used=item.frames_used, prompt_tokens=item.prompt_tokens,
                              completion_tokens=len(tokens), timings={"inputs": item.seconds, "generate": seconds}))
        return out

    def _build(self, prepared: PreparedTarget, question: str, history: list, decoding: DecodingSettings) -> _Built:
        from artemis_cli.data.records import ReferringRecord
        from artemis_cli.model.conversation import get_template, referring_question, tokenize_prompt
        from artemis_cli.model.generation import GenerationRequest, request_seed
        from artemis_cli.model.inputs import referring_inputs
        from artemis_cli.model.sampling import sample_roi_frames

        start = time.perf_counter()
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
        if history:
            template = get_template(TEMPLATE)
            user, assistant = template.roles
            messages = [(user, referring_question(num_boxes, question=opening, train=False)), (assistant, history[0][1])]
            for earlier_question, earlier_answer in history[1:]:
                messages += [(user, earlier_question), (assistant, earlier_answer)]
            messages += [(user, question), (assistant, None)]
            inputs.input_ids = tokenize_prompt(template.render(messages), loaded.tokenizer)
        selection = sample_roi_frames(record.track_list, record.frame_id, key_frame_id=record.key_frame_id,
                                      key_frame_box=record.key_frame_box, num_tracked=NUM_TRACKED)
        request = GenerationRequest(input_ids=inputs.input_ids, media=inputs.media, seed=seed, roi_seed=inputs.roi_seed,
                                    roi_frames=inputs.roi_frames, roi_boxes=inputs.roi_boxes)
        request.roi_tokens = self._roi_tokens(target_key, request)
        return _Built(request=request, question=question,
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
