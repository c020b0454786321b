"""`build_referring`: one's own videos + boxes + captions -> a stage-3 dataset (`artemis data build-referring`).

Input: JSONL lines ``{video, frame, box, caption, question?}`` (a relative `video` is relative to the
requests file). Output folder, a DATA_ROOT that `data verify-layout OUT --stage none --annotations
OUT/annotations` checks and `train stage3` (``data.root: OUT``) trains on::

    OUT/Artemis_data/own/frames/<video>/NNNNN.jpg    the tracked frames of each video
    OUT/Artemis_data/own/clip_feature/<video>.pkl    the clip feature (the `features extract` recipe)
    OUT/annotations/own_referring.json               the stage-3 records (VideoRef format)
    OUT/manifest.json                                settings, counts, versions
    OUT/failures.jsonl                               videos / lines that failed, with the reason

Work is resumable per video: a finished video's records are kept in ``OUT/.progress/<video>.json``
(written atomically), a rerun skips those and retries the failures; the annotation file is rebuilt
from them at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from artemis_cli.common.devices import DeviceName
from artemis_cli.errors import ArtemisError, InputError, UsageError
from artemis_cli.ownvideo.tracking import ExtraKey

SOURCE = "own"
ANNOTATION_FILE = "own_referring.json"
Number = Union[StrictInt, StrictFloat]


class ReferringRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    video: StrictStr = Field(min_length=1)
    frame: StrictInt = Field(0, ge=0)
    box: list[Number] = Field(min_length=4, max_length=4)
    keys: list[ExtraKey] = Field(default_factory=list)  # further key boxes (corrections)
    caption: StrictStr = Field(min_length=1)
    question: Optional[StrictStr] = None


class BuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: Path
    output: Path
    clip_model: str = "openai/clip-vit-large-patch14"
    tracker: str = "csrt"
    tracker_model: Optional[str] = None
    stride: Optional[int] = Field(None, ge=1)  # None: about 6 tracked frames a second
    cache_dir: Optional[Path] = None
    device: DeviceName = "auto"
    overwrite: bool = False
    show_progress: bool = True


@dataclass
class BuildSummary:
    output: Path
    annotations: Path
    videos: int = 0
    skipped: int = 0
    built: int = 0
    failed: int = 0
    records: int = 0
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)  # damaged videos, unsure RoI frames (built anyway)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.failures

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "annotations": str(self.annotations), "videos": self.videos,
                "skipped": self.skipped, "built": self.built, "failed": self.failed, "records": self.records,
                "seconds": round(self.seconds, 3), "failures": self.failures[:20], "warnings": self.warnings[:20],
                "next": [f"artemis data verify-layout {self.output} --stage none --annotations "
                         f"{self.output / 'annotations'} --check-features",
                         f"artemis train stage3 -c CONFIG --set data.root={self.output} "
                         f"--set data.annotations=[{self.annotations}]"]}


def read_build_requests(path: Path) -> list[tuple[int, ReferringRequest]]:
    """(line number, request) for every line; a bad line is an `InputError` naming file:line and field."""
    from artemis_cli.ownvideo.referrer import check_question

    if not path.is_file():
        raise UsageError(f"{path}: no such requests file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            request = ReferringRequest.model_validate(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(line)"
            raise InputError(f"{path}:{number}: {where}: {err['msg']}",
                             hint='each line is {"video": ..., "frame": 0, "box": [x1, y1, x2, y2], "caption": ...}') from None
        if request.question is not None:
            try:
                check_question(request.question)
            except UsageError as exc:
                raise InputError(f"{path}:{number}: question: {exc.message}", hint=exc.hint) from None
        out.append((number, request))
    if not out:
        raise InputError(f"{path}: no requests")
    return out


def _video_ids(paths: list[Path]) -> dict[Path, str]:
    """A folder-safe id per video: its stem, with a short path hash where two stems clash."""
    stems: dict[str, list[Path]] = {}
    for path in paths:
        stems.setdefault(path.stem, []).append(path)
    ids = {}
    for stem, group in stems.items():
        for path in group:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "video"
            ids[path] = safe if len(group) == 1 else f"{safe}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    return ids


def build_referring(config: BuildConfig) -> BuildSummary:
    """Track every request's box, extract each video's clip feature and write the dataset (module doc)."""
    from artemis_cli.common.atomic import atomic_write_json, atomic_write_text
    from artemis_cli.common.manifest import build_manifest
    from artemis_cli.ownvideo.cache import FeatureCache, TrackCache
    from artemis_cli.ownvideo.prepare import Target, prepare_target
    from artemis_cli.ownvideo.record import add_frames
    from artemis_cli.ownvideo.track import sam2_for
    from artemis_cli.ownvideo.video import iter_selected
    from artemis_cli.ownvideo.trackers import TRACKERS
    from artemis_cli.ownvideo.video import default_cache_dir

    if config.tracker not in TRACKERS:
        raise UsageError(f"--tracker {config.tracker!r}: expected one of {', '.join(TRACKERS)}")
    requests = read_build_requests(config.requests)
    base = config.requests.parent
    out = config.output
    by_video: dict[Path, list[tuple[int, ReferringRequest]]] = {}
    for number, request in requests:
        video = Path(request.video)
        by_video.setdefault(video if video.is_absolute() else base / video, []).append((number, request))
    out_resolved = out.resolve()
    for video in [config.requests, *by_video]:
        if video.exists() and (video.resolve() == out_resolved or out_resolved in video.resolve().parents):
            raise UsageError(f"{out}: holds the input {video}", hint="choose an OUT folder outside the inputs")
    settings = {"clip_model": config.clip_model, "tracker": config.tracker, "tracker_model": config.tracker_model,
                "stride": config.stride, "requests": str(config.requests.resolve())}
    # the models first: one that is missing fails before OUT is touched
    cache = config.cache_dir or default_cache_dir()
    tracks, features = TrackCache(cache), FeatureCache(cache, config.clip_model, device=config.device)
    sam2 = sam2_for(config.tracker, config.tracker_model, config.device)
    manifest_path, progress_dir = out / "manifest.json", out / ".progress"
    data = out / "Artemis_data" / SOURCE
    annotations = out / "annotations" / ANNOTATION_FILE
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if config.overwrite:
        for path in (data, progress_dir):
            shutil.rmtree(path, ignore_errors=True)
        for path in (annotations, manifest_path, out / "failures.jsonl"):
            path.unlink(missing_ok=True)
    elif manifest_path.is_file():
        old = json.loads(manifest_path.read_text(encoding="utf-8")).get("settings", {})
        differing = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if differing:
            raise UsageError(f"{out}: was built with other settings ({', '.join(differing)})",
                             hint="pass --overwrite to rebuild it, or choose another OUT")
    elif out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out}: not empty and holds no earlier build-referring output",
                         hint="choose an empty or new OUT folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(manifest_path, build_manifest("data build-referring", settings=settings, status="running"))
    ids = _video_ids(list(by_video))
    summary = BuildSummary(output=out, annotations=annotations, videos=len(by_video))
    start = time.perf_counter()
    progress = _progress(config.show_progress, len(by_video))
    try:
        for video, items in by_video.items():
            video_id = ids[video]
            done = progress_dir / f"{video_id}.json"
            if done.is_file():
                summary.skipped += 1
                _advance(progress)
                continue
            records, problems, warnings = [], [], []
            feature = None
            for number, request in items:
                try:
                    prepared = prepare_target(Target(video, tuple(float(v) for v in request.box), request.frame,
                                                     tuple(k.pair() for k in request.keys)),
                                              tracks=tracks, features=features if feature is None else None,
                                              tracker=config.tracker, tracker_model=config.tracker_model, sam2=sam2,
                                              stride=config.stride, video_name=video_id)
                    if feature is None:
                        feature = prepared.root / prepared.record["clip_path"]
                    # this record's frames the video's folder lacks, decoded straight into it (one pass)
                    frames_dir = data / "frames" / video_id
                    have = set(os.listdir(frames_dir)) if frames_dir.is_dir() else set()
                    missing = [n for n, name in zip(prepared.frame_indices, prepared.record["frame_id"])
                               if name not in have]
                    add_frames(frames_dir, iter_selected(prepared.info, missing), prepared.num_frames)
                except (ArtemisError, OSError) as exc:
                    message = exc.message if isinstance(exc, ArtemisError) else f"{type(exc).__name__}: {exc}"
                    problems.append({"video": request.video, "line": number, "error": message})
                    continue
                warnings.extend({"video": request.video, "line": number, "warning": w} for w in prepared.warnings())
                record = dict(prepared.record, frame_path=f"{SOURCE}/frames/{video_id}",
                              clip_path=f"{SOURCE}/clip_feature/{video_id}.pkl", caption=request.caption)
                if request.question is not None:
                    record["question"] = request.question
                records.append(record)
            if not records:
                summary.failures.extend(problems)
                summary.failed += 1
                _advance(progress)
                continue
            from artemis_cli.common.atomic import atomic_write_bytes

            atomic_write_bytes(data / "clip_feature" / f"{video_id}.pkl", Path(feature).read_bytes())
            atomic_write_json(done, {"video": str(video), "records": records, "problems": problems,
                                     "warnings": warnings})
            summary.built += 1
            _advance(progress)
    finally:
        if progress is not None:
            progress[0].stop()
    all_records, failures = [], list(summary.failures)
    for video in by_video:
        done = progress_dir / f"{ids[video]}.json"
        if done.is_file():
            entry = json.loads(done.read_text(encoding="utf-8"))
            all_records.extend(entry["records"])
            failures.extend(entry.get("problems", []))  # lines that failed in a video that did not
            summary.warnings.extend(entry.get("warnings", []))
    summary.failures = failures
    summary.records = len(all_records)
    annotations.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(annotations, all_records)
    atomic_write_text(out / "failures.jsonl", "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures))
    summary.seconds = time.perf_counter() - start
    atomic_write_json(manifest_path, build_manifest(
        "data build-referring", settings=settings, status="complete",
        counts={"videos": summary.videos, "built": summary.built, "skipped": summary.skipped,
                "failed": summary.failed, "records": summary.records, "failed_lines": len(failures)},
        seconds=round(summary.seconds, 3)))
    return summary


def _progress(enabled: bool, total: int):
    if not enabled or not total:
        return None
    from artemis_cli.common.console import make_progress

    progress = make_progress()
    progress.start()
    return progress, progress.add_task("build-referring", total=total)


def _advance(progress) -> None:
    if progress is not None:
        progress[0].advance(progress[1])
