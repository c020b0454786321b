"""Targets and their preparation: what the user points at (`Target`), and the track and clip feature that
make it a VideoRef record the model can be asked about (`prepare_target` -> `PreparedTarget`).

`prepare_target` tracks the key boxes through the video (`tracking.track_video_keys`, one decode, the RoI
frames kept as they pass) and gets the clip feature (`cache.FeatureCache`, extracted on another thread while
tracking), both cached by the video's content hash and the settings. It needs no model (and imports no torch):
`referrer.Referrer.prepare` calls it with the model's feature cache, `ask.prepare_while_loading` while the model
loads, `track` and `build-referring` without one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from artemis_cli.errors import UsageError

NUM_TRACKED = 8  # tracked RoI frames, as the published inference
ProgressFn = Optional[Callable[[str, float], None]]


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


def as_target(target) -> Target:
    """`target` itself when it is a `Target` (what a caller of the library may pass wrongly is refused by name)."""
    if isinstance(target, Target):
        return target
    raise UsageError(f"expected a Target, got {type(target).__name__}")


def prepare_target(target: Target, *, tracks, features, tracker: str = "csrt", tracker_model: Optional[str] = None,
                   sam2=None, stride: Optional[int] = None, progress: ProgressFn = None, video_name: Optional[str] = None,
                   limits=None, check: Optional[Callable[[int], None]] = None,
                   cached_only: bool = False) -> Optional[PreparedTarget]:
    """Track `target` (cached in `tracks`, a `TrackCache`) and get its clip feature (`features`, a
    `FeatureCache`, or None to leave ``clip_path`` naming where it would be). See `Referrer.prepare`.
    `cached_only`: None unless both are already cached (no tracking, no extraction).

    The video is decoded frame by frame (`tracking.track_video_keys`), then once more up to the last RoI
    frame to keep those frames (only them) in the cache. `limits` bound the work (`video.VideoLimits`);
    `check(frame)` may raise to stop it (a deadline, a shutdown; also called with -1 while waiting and
    between feature batches). A preparation that fails leaves nothing new in the caches; two threads
    preparing the same target compute it once."""
    from artemis_cli.ownvideo.tracking import resolve_stride
    from artemis_cli.ownvideo.video import DEFAULT_LIMITS, content_hash, probe

    target = as_target(target)
    video = Path(target.video)
    limits = limits or DEFAULT_LIMITS
    info = probe(video, limits)
    video_hash = content_hash(video)
    stride = resolve_stride(stride, info.fps)
    key = tracks.key(video_hash, target.key_boxes(), tracker, tracker_model, stride)
    if cached_only:
        if tracks.load(key) is None or (features is not None and not features.path(video_hash).is_file()):
            return None
        return _prepare_claimed(target, info, video_hash, key, [], tracks=tracks, features=features, tracker=tracker,
                                tracker_model=tracker_model, sam2=sam2, stride=stride,
                                report=lambda stage, fraction: None, video_name=video_name, limits=limits, check=check)
    created: list[Path] = []  # cache entries this call wrote: removed again if it fails
    try:
        with tracks.claim(key, check):
            return _prepare_claimed(target, info, video_hash, key, created, tracks=tracks, features=features,
                                    tracker=tracker, tracker_model=tracker_model, sam2=sam2, stride=stride,
                                    report=progress or (lambda stage, fraction: None), video_name=video_name,
                                    limits=limits, check=check)
    except BaseException:
        _remove(created)
        raise


def _prepare_claimed(target: Target, info, video_hash: str, key: str, created: list, *, tracks, features, tracker,
                     tracker_model, sam2, stride: int, report, video_name, limits, check) -> PreparedTarget:
    from artemis_cli.ownvideo.record import build_record
    from artemis_cli.ownvideo.tracking import track_video_keys

    video = Path(target.video)
    keys = target.key_boxes()
    timings = {"decode": 0.0, "track": 0.0, "frames": 0.0, "features": 0.0}
    entry = tracks.load(key)
    hit = entry is not None
    extraction = None
    if entry is None and features is not None and not features.path(video_hash).is_file():
        from artemis_cli.ownvideo.tracking import check_keys

        check_keys(keys, info.frame_size)  # a bad box fails before any work starts
        # the clip feature does not depend on the track: extracted meanwhile, on the other core
        extraction = FeatureExtraction(features, video, video_hash, check)
    try:
        if entry is None:
            # the frames the RoI path will likely read (if every tracked frame keeps its box) are kept as the
            # tracking pass decodes them; only the ones that then differ are decoded again
            likely = likely_roi_frames(info.header_frames, stride, keys, target.frame)
            kept: dict[int, object] = {}

            def keep(frame) -> None:
                if frame.index in likely:
                    kept[frame.index] = frame.rgb()

            result = track_video_keys(info, keys, tracker=tracker, stride=stride, sam2=sam2, limits=limits,
                                      progress=lambda f: report("track", f), check=check, on_frame=keep)
            timings.update(result.seconds)
            primary = result.keys[[k.frame for k in result.keys].index(target.frame)]
            record = build_record(video_name=video_name or video.stem, frame_path=f"tracks/{key}/frames",
                                  clip_path="", indices=result.indices, boxes=result.boxes,
                                  num_frames=result.num_frames, key_frame=primary.frame, key_box=primary.box,
                                  confidence=result.confidence, cuts=result.cuts)
            entry = {"record": record, "frame_indices": result.indices, "frame_size": list(result.frame_size),
                     "num_frames": result.num_frames, "video": str(video), "video_hash": video_hash,
                     "track": result.to_json(), "settings": {"tracker": tracker, "tracker_model": tracker_model,
                                                             "stride": stride}}
            start = time.perf_counter()
            needed = roi_frame_numbers(record, result.indices)
            created.append(tracks.folder(key))
            tracks.store(key, _roi_frames(info, needed, kept, limits=limits, check=check), result.num_frames, entry)
            kept.clear()
            timings["frames"] = time.perf_counter() - start
        record = dict(entry["record"], frame_path=f"tracks/{key}/frames")
        if video_name is not None:
            record["video_name"] = video_name
        report("track", 1.0)
        if features is not None:
            if extraction is not None:
                clip, seconds = extraction.result(check)
                created.extend(extraction.created)
            else:
                clip, seconds = features.get(video, video_hash, check=check, created=created)
            timings["features"] = seconds
            record["clip_path"] = f"features/{clip.name}"
        else:
            record["clip_path"] = f"features/{video_hash[:32]}.pkl"
    except BaseException:
        if extraction is not None:
            extraction.abandon()
        raise
    report("features", 1.0)
    return PreparedTarget(target=target, record=record, root=tracks.root.parent,
                          frame_size=tuple(entry["frame_size"]), num_frames=int(entry["num_frames"]),
                          timings=timings, frame_indices=list(entry["frame_indices"]), video_hash=video_hash,
                          cache_hit=hit and timings["features"] == 0.0, track=entry.get("track", {}), info=info)


def _remove(paths: Sequence[Path]) -> None:
    import shutil

    for path in paths:
        if Path(path).is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)


class FeatureExtraction:
    """The clip feature extracted in a background thread while the track is computed. `abandon()` (the
    preparation failed) stops it at its next batch and removes the feature file it wrote, if any."""

    def __init__(self, features, video: Path, video_hash: str, check: Optional[Callable[[int], None]]):
        self.created: list[Path] = []
        self._abandoned = threading.Event()
        self._lock = threading.Lock()

        def checked(frame: int) -> None:
            if self._abandoned.is_set():
                raise _Abandoned()
            if check is not None:
                check(frame)

        def work():
            try:
                return features.get(video, video_hash, check=checked, created=self.created)
            finally:
                if self._abandoned.is_set():
                    self._discard()

        self._work = Background(work)

    def result(self, check: Optional[Callable[[int], None]] = None):
        return self._work.result(check)

    def abandon(self) -> None:
        self._abandoned.set()
        self._discard()

    def _discard(self) -> None:
        with self._lock:
            _remove(self.created)
            self.created.clear()


class _Abandoned(Exception):
    """Stops a background feature extraction whose preparation failed."""


class Background:
    """`work()` in a thread; `result()` waits for it and returns its value or raises its exception."""

    def __init__(self, work: Callable[[], object], name: str = "clip-features"):
        self._value: object = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def error(self) -> Optional[BaseException]:
        """The exception `work()` ended with, once it has ended (None while it runs or when it succeeded)."""
        return None if self._thread.is_alive() else self._error

    def _run(self, work) -> None:
        try:
            self._value = work()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self, check: Optional[Callable[[int], None]] = None):
        """Wait for the value (calling `check(-1)` every 0.2 s: it may raise to stop waiting)."""
        while self._thread.is_alive():
            self._thread.join(0.2)
            if check is not None and self._thread.is_alive():
                check(-1)
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


def likely_roi_frames(header_frames: Optional[int], stride: int, keys, key_frame: int) -> set[int]:
    """The frame numbers `roi_frame_numbers` gives when the video has `header_frames` frames and every tracked
    frame keeps its box (the common case); empty when the header gives no count."""
    from artemis_cli.ownvideo.record import build_record

    if not header_frames:
        return set()
    indices = sorted(set(range(0, header_frames, stride)) | {k.frame for k in keys if k.frame < header_frames})
    if key_frame not in indices:
        return set()
    key_box = next(k.box for k in keys if k.frame == key_frame)
    record = build_record(video_name="", frame_path="", clip_path="", indices=indices, boxes=[key_box] * len(indices),
                          num_frames=header_frames, key_frame=key_frame, key_box=key_box)
    return set(roi_frame_numbers(record, indices))


def _roi_frames(info, needed: Sequence[int], kept: dict, *, limits, check):
    """(number, RGB) of the `needed` frames in order: from `kept`, the others decoded again (`iter_selected`)."""
    from artemis_cli.ownvideo.video import iter_selected

    decoded = iter_selected(info, [n for n in needed if n not in kept], limits=limits, check=check)
    for number in sorted(set(needed)):
        yield (number, kept[number]) if number in kept else next(decoded)
