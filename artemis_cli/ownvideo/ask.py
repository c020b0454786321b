"""`ask_video` (one question about one target) and `ask_batch` (a JSONL of requests, batched and resumable).

`ask_batch` works like `infer`: requests are validated up front (a bad line is an `InputError` naming
the file, line and field), answers are appended one flushed line per request (`ResumableJsonl`), a
manifest beside the output records the settings and refuses a resume under other ones, and requests
that fail (undecodable video, target lost) go to ``<output>.errors.jsonl`` and are retried by a rerun.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from artemis_cli.common.devices import DeviceName
from artemis_cli.errors import ArtemisError, InputError, UsageError
from artemis_cli.model.generation import DecodingSettings
from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION
from artemis_cli.ownvideo.tracking import ExtraKey

_STRICT = ConfigDict(extra="forbid")


class ModelOptions(BaseModel):
    """The model and tracker a `Referrer` is built from (shared by ask, ask --batch and chat)."""

    model_config = _STRICT
    model: str
    model_base: Optional[str] = None
    image_tower: Optional[str] = None
    device: DeviceName = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    tracker: str = "csrt"
    tracker_model: Optional[str] = None
    stride: Optional[int] = Field(None, ge=1)  # None: about 6 tracked frames a second
    cache_dir: Optional[Path] = None

    def referrer(self, loaded=None):
        from artemis_cli.ownvideo.referrer import Referrer

        return Referrer(self.model, self.model_base, image_tower=self.image_tower, device=self.device, dtype=self.dtype,
                        tracker=self.tracker, tracker_model=self.tracker_model, stride=self.stride,
                        cache_dir=self.cache_dir, quantize=self.quantize, loaded=loaded)


class AskConfig(BaseModel):
    model_config = _STRICT
    video: Path
    box: tuple[float, float, float, float]
    frame: int = Field(0, ge=0)
    more_keys: list[tuple[int, tuple[float, float, float, float]]] = Field(default_factory=list)  # (frame, box)
    question: str = DEFAULT_QUESTION
    options: ModelOptions
    decoding: DecodingSettings = DecodingSettings()
    preview: Optional[Path] = None


def ask_video(config: AskConfig, *, loaded=None, progress=None, started: Optional[float] = None) -> dict[str, Any]:
    """Load the model, prepare the target, answer; returns the `--json` document
    ``{answer, question, model, track, frames_used, settings, timings}``. `started` (a `perf_counter`
    time, e.g. `artemis_cli.STARTED`) is when the command began: ``timings.startup`` counts from it
    (imports and model load), ``timings.imports`` up to this call, ``timings.total`` up to the answer.
    Without `loaded` the model loads while the target is tracked (`prepare_while_loading`)."""
    from artemis_cli.ownvideo.preview import check_preview_path, render_preview
    from artemis_cli.ownvideo.prepare import Target
    from artemis_cli.ownvideo.referrer import check_question
    from artemis_cli.ownvideo.video import check_video_path

    check_video_path(config.video)
    check_question(config.question)
    check_preview_path(config.preview)
    start = time.perf_counter()
    started = start if started is None else started
    target = Target(config.video, config.box, config.frame, tuple(config.more_keys))
    if loaded is None:
        referrer, prepared, ready = prepare_while_loading(config.options, target, progress=progress)
    else:
        referrer = config.options.referrer(loaded)
        ready = time.perf_counter()
        prepared = referrer.prepare(target, progress=progress)
    answer = referrer.ask(prepared, config.question, decoding=config.decoding)
    done = time.perf_counter()
    if config.preview is not None:
        render_preview(config.preview, prepared)
    return {"answer": answer.answer, "question": answer.question, "model": referrer.model_name,
            "track": prepared.track_json(), "quality": prepared.quality_line(),
            "warnings": prepared.warnings(answer.frames_used), "frames_used": answer.frames_used,
            "settings": {**referrer.settings(), "decoding": config.decoding.resolved(
                referrer.loaded.model.generation_config).record()},
            "timings": {"startup": round(ready - started, 4), "imports": round(start - started, 4),
                        "question": round(done - start, 4), "total": round(done - started, 4),
                        **{k: round(v, 4) for k, v in prepared.timings.items()},
                        **{k: round(v, 4) for k, v in answer.timings.items()}},
            "tokens": {"prompt": answer.prompt_tokens, "completion": answer.completion_tokens},
            "preview": str(config.preview) if config.preview else None, "cache_hit": prepared.cache_hit}


def prepare_while_loading(options: ModelOptions, target, *, progress=None):
    """(referrer, prepared target, when the model was ready): `options.referrer().prepare(target)`, with the
    model loading on a thread of its own (torch, transformers, the weights, then the clip feature of the
    target's video) while this thread tracks the target (OpenCV and PyAV only). A first answer thus waits
    for the longer of the two, not for their sum. The record, the caches and the answer are those of the
    plain order; a loader that fails stops the tracking at its next frame with the loader's error.
    (SAM 2 tracks with a model, so ``--tracker sam2`` loads first.)"""
    import dataclasses
    import threading

    from artemis_cli.common.hub import check_model_name
    from artemis_cli.ownvideo.cache import TrackCache
    from artemis_cli.ownvideo.prepare import Background, FeatureExtraction, prepare_target
    from artemis_cli.ownvideo.tracking import check_keys
    from artemis_cli.ownvideo.video import content_hash, default_cache_dir, probe

    if options.tracker == "sam2":
        referrer = options.referrer()
        ready = time.perf_counter()
        return referrer, referrer.prepare(target, progress=progress), ready
    for name, option in ((options.model, "--model"), (options.model_base, "--model-base"),
                         (options.image_tower, "--image-tower")):
        if name is not None:  # a missing folder fails at once, not once the imports are done
            check_model_name(name, option=option)
    video = Path(target.video)
    check_keys(target.key_boxes(), probe(video).frame_size)  # a bad video or box fails before the model loads
    video_hash = content_hash(video)
    lock = threading.Lock()
    state: dict[str, Any] = {"stop": False, "extraction": None}

    def load():
        referrer = options.referrer()
        ready = time.perf_counter()
        with lock:
            if not state["stop"]:  # the clip feature does not depend on the track: extracted meanwhile
                state["extraction"] = FeatureExtraction(referrer.features, video, video_hash, None)
        return referrer, ready

    loading = Background(load, name="model-load")

    def check(frame: int) -> None:
        error = loading.error()
        if error is not None:
            raise error

    try:
        tracked = prepare_target(target, tracks=TrackCache(options.cache_dir or default_cache_dir()), features=None,
                                 tracker=options.tracker, tracker_model=options.tracker_model, stride=options.stride,
                                 progress=progress, check=check)
        referrer, ready = loading.result()
        extraction = state["extraction"]
        seconds = extraction.result()[1] if extraction is not None else 0.0
    except BaseException:
        with lock:
            state["stop"] = True
            if state["extraction"] is not None:
                state["extraction"].abandon()
        raise
    prepared = referrer.prepare(target, progress=progress)  # both cached now: the record as the plain order writes it
    timings = {**prepared.timings, **{k: tracked.timings[k] for k in ("decode", "track", "frames")},
               "features": seconds}
    return referrer, dataclasses.replace(prepared, timings=timings, cache_hit=tracked.cache_hit and seconds == 0.0), ready


# ---- batch ----------------------------------------------------------------------------------------------

Number = Union[StrictInt, StrictFloat]


class AskRequest(BaseModel):
    """One line of an `ask --batch` file; a relative `video` is relative to the requests file."""

    model_config = _STRICT
    id: Union[StrictStr, StrictInt]
    video: StrictStr
    frame: StrictInt = Field(0, ge=0)
    box: list[Number] = Field(min_length=4, max_length=4)
    keys: list[ExtraKey] = Field(default_factory=list)  # further key boxes (corrections)
    question: StrictStr = DEFAULT_QUESTION


class AskBatchConfig(BaseModel):
    model_config = _STRICT
    requests: Path
    output: Path
    options: ModelOptions
    decoding: DecodingSettings = DecodingSettings()
    batch_size: Optional[int] = Field(None, ge=1)
    overwrite: bool = False
    show_progress: bool = True


@dataclass
class BatchSummary:
    output: Path
    errors: Path
    manifest: Path
    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "errors": str(self.errors), "manifest": str(self.manifest),
                "total": self.total, "skipped": self.skipped, "done": self.done, "failed": self.failed,
                "seconds": round(self.seconds, 3), "startup_seconds": round(self.startup_seconds, 3),
                "failures": self.failures[:20]}


def read_requests(path: Path) -> list[AskRequest]:
    """Every line validated; the first bad one is an `InputError` naming ``file:line`` and the field."""
    import json

    from artemis_cli.ownvideo.referrer import check_question

    if not path.is_file():
        raise UsageError(f"{path}: no such requests file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    requests, seen = [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        try:
            request = AskRequest.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(line)"
            raise InputError(f"{path}:{number}: {where}: {err['msg']}",
                             hint='each line is {"id": ..., "video": ..., "frame": 0, "box": [x1, y1, x2, y2], '
                                  '"question": "... <bbox> ..."}') from None
        try:
            check_question(request.question)
        except UsageError as exc:
            raise InputError(f"{path}:{number}: question: {exc.message}", hint=exc.hint) from None
        key = str(request.id)
        if key in seen:
            raise InputError(f"{path}:{number}: id: {key!r} repeats line {seen[key]}",
                             hint="ids must be unique: answers are resumed by id")
        seen[key] = number
        requests.append(request)
    if not requests:
        raise InputError(f"{path}: no requests")
    return requests


def _paths(output: Path) -> tuple[Path, Path]:
    stem = output.name[:-len(output.suffix)] if output.suffix else output.name
    return output.with_name(f"{stem}.errors.jsonl"), output.with_name(f"{stem}.manifest.json")


def ask_batch(config: AskBatchConfig, *, loaded=None, started: Optional[float] = None) -> BatchSummary:
    """Answer every request of `config.requests` into `config.output` (see the module docstring)."""
    import json

    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.common.jsonl_writer import ResumableJsonl
    from artemis_cli.common.manifest import build_manifest
    from artemis_cli.ownvideo.prepare import Target

    if config.output.suffix.lower() != ".jsonl":
        raise UsageError(f"-o {config.output}: expected a .jsonl file")
    if config.output.resolve() == config.requests.resolve():
        raise UsageError(f"-o {config.output}: is the requests file", hint="write the answers to another file")
    requests = read_requests(config.requests)
    errors_path, manifest_path = _paths(config.output)
    if config.overwrite:
        for path in (config.output, errors_path, manifest_path):
            path.unlink(missing_ok=True)
    start = time.perf_counter() if started is None else started  # the command's start: imports count too
    referrer = config.options.referrer(loaded)
    summary = BatchSummary(output=config.output, errors=errors_path, manifest=manifest_path, total=len(requests),
                           startup_seconds=time.perf_counter() - start)
    decoding = config.decoding.resolved(referrer.loaded.model.generation_config)
    settings = {**referrer.settings(), "decoding": decoding.record()}
    settings.pop("device")
    settings.pop("dtype")
    ids = [str(r.id) for r in requests]
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        differing = sorted(k for k in set(manifest.get("settings", {})) | set(settings)
                           if manifest.get("settings", {}).get(k) != settings.get(k))
        if manifest.get("input_ids") != ids:
            differing.append("request ids")
        if differing:
            raise UsageError(f"{config.output}: was written with other settings ({', '.join(differing)}); "
                             "refusing to mix them in one file",
                             hint="pass --overwrite to start again, or choose another -o")
    elif config.output.is_file() and config.output.stat().st_size > 0:
        raise UsageError(f"{config.output} exists without its manifest ({manifest_path.name})",
                         hint="pass --overwrite to replace it, or choose another -o")
    else:
        manifest = build_manifest("ask --batch", seed=decoding.seed, settings=settings,
                                  sources={"requests": str(config.requests.resolve())}, input_ids=ids, runs=[])
        atomic_write_json(manifest_path, manifest)
    device = str(referrer.loaded.model.device)
    batch_size = config.batch_size or (16 if device.startswith("cuda") else 4)
    base = config.requests.parent
    errors_path.unlink(missing_ok=True)  # earlier failures are retried
    run_start = time.perf_counter()
    with ResumableJsonl(config.output) as out:
        todo = out.pending(requests, key=lambda r: r.id)
        summary.skipped = len(requests) - len(todo)
        progress = _progress(config.show_progress, len(todo))
        try:
            for offset in range(0, len(todo), batch_size):
                chunk = todo[offset:offset + batch_size]
                prepared: list[Any] = []
                for request in chunk:
                    video = Path(request.video)
                    video = video if video.is_absolute() else base / video
                    try:
                        prepared.append(referrer.prepare(Target(video, tuple(float(v) for v in request.box),
                                                                request.frame, tuple(k.pair() for k in request.keys))))
                    except ArtemisError as exc:
                        prepared.append(exc)
                    except OSError as exc:  # an unreadable file the checks could not foresee
                        prepared.append(InputError(f"{video}: {type(exc).__name__}: {exc}"))
                ready = [(p, r.question, ()) for p, r in zip(prepared, chunk) if not isinstance(p, ArtemisError)]
                answers = iter(referrer.ask_many(ready, decoding) if ready else [])
                for request, item in zip(chunk, prepared):
                    result = item if isinstance(item, ArtemisError) else next(answers)
                    if isinstance(result, ArtemisError):
                        failure = {"id": request.id, "video": request.video, "error": result.message}
                        summary.failures.append(failure)
                        summary.failed += 1
                        _append_error(errors_path, failure)
                    else:
                        line = {"id": request.id, "video": request.video, "frame": request.frame, "box": request.box,
                                "question": result.question, "answer": result.answer,
                                "frames_used": result.frames_used, "prompt_tokens": result.prompt_tokens,
                                "completion_tokens": result.completion_tokens,
                                "track_quality": item.track.get("quality"),
                                "warnings": item.warnings(result.frames_used)}
                        if request.keys:
                            line["keys"] = [k.model_dump() for k in request.keys]
                        out.write(line)
                        summary.done += 1
                    if progress is not None:
                        progress[0].advance(progress[1])
        finally:
            if progress is not None:
                progress[0].stop()
    summary.seconds = time.perf_counter() - run_start
    manifest.setdefault("runs", []).append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device,
                                            "batch_size": batch_size, "done": summary.done, "failed": summary.failed,
                                            "skipped": summary.skipped, "seconds": round(summary.seconds, 3)})
    atomic_write_json(manifest_path, manifest)
    return summary


def _append_error(path: Path, record: dict) -> None:
    import json

    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _progress(enabled: bool, total: int):
    if not enabled or not total:
        return None
    from artemis_cli.common.console import make_progress

    progress = make_progress()
    progress.start()
    return progress, progress.add_task("ask", total=total)
