"""Tracking a target through a video frame by frame, from one or several key boxes, under the guard.

`track_video_keys` decodes the video once, in order, keeping nothing but the frame at hand (memory does
not grow with the video's length). Each key box is tracked forward from its frame as the frames are
decoded, up to the next key box, and backward down to the previous one over frames the pass spools to disk
(small JPEGs at tracking size, read back in reverse); a shot cut stops either direction. Between two key
boxes a frame takes the believed verdict, the nearer key's when both are (`_merge`). Tracking runs on a
copy scaled to at most `TRACK_SIDE` px (boxes are mapped back to the video's pixels), on every
`resolve_stride`-th frame (about `TRACK_FPS` a second by default). Every decoded frame also feeds the
shot-cut detector. `integrity.Guard` judges each proposal, so every tracked frame gets a box or `None`,
a confidence and a state:

    key          the user's box
    tracked      the tracker's box, believed
    reacquired   the target found again (near where it should be) after it was lost or the tracker strayed
    lost         no box believed (the target is hidden, left, or the tracker is elsewhere)
    ambiguous    two places look like the target: none is reported until one clearly is
    cut          a shot cut: the track ends here in this direction
    after-cut    beyond a cut, until another key box governs

`track_frames` does the same over frames already in memory.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from artemis_cli.errors import InputError, UsageError
from artemis_cli.ownvideo.integrity import WARN, CutDetector, Guard
from artemis_cli.ownvideo.video import (DEFAULT_LIMITS, DecodeReport, Frame, VideoLimits, VideoProbe, iter_frames,
                                        read_ahead)

TRACK_SIDE = 640  # px: the longer side of the copy trackers run on
TRACK_FPS = 6.0  # tracked frames per second of video when no stride is given (a 30 fps video: every 5th)
Box = list[float]
Progress = Optional[Callable[[float], None]]


@dataclass(frozen=True)
class KeyBox:
    """A box the user drew: (x1, y1, x2, y2) in pixels of video frame `frame`."""

    frame: int
    box: tuple[float, float, float, float]


class ExtraKey(BaseModel):
    """A further key box in a request (`ask --batch`, `data build-referring`, the server): a correction;
    the request form of a `KeyBox`."""

    model_config = ConfigDict(extra="forbid")
    frame: StrictInt = Field(ge=0)
    box: list[Union[StrictInt, StrictFloat]] = Field(min_length=4, max_length=4)

    def pair(self) -> tuple[int, tuple[float, float, float, float]]:
        return self.frame, tuple(float(v) for v in self.box)  # type: ignore[return-value]


@dataclass
class TrackResult:
    """The track over the tracked frames (`indices`, video frame numbers): a box or None per frame, its
    confidence and state (see the module doc), the shot cuts, and what decoding met."""

    indices: list[int]
    boxes: list[Optional[Box]]
    confidence: list[float]
    states: list[str]
    cuts: list[int]  # frame numbers that start a new shot
    keys: list[KeyBox]
    num_frames: int
    frame_size: tuple[int, int]
    fps: Optional[float] = None
    decode: DecodeReport = field(default_factory=DecodeReport)
    seconds: dict[str, float] = field(default_factory=dict)
    governed_by: list[int] = field(default_factory=list)  # per tracked frame: the key frame its verdict comes from

    def quality(self) -> dict:
        """Counts for the one-line summary and the manifest."""
        states = Counter(self.states)
        on_target = sum(box is not None for box in self.boxes)
        low = sum(1 for box, conf, state in zip(self.boxes, self.confidence, self.states)
                  if box is not None and state != "key" and conf < WARN)
        return {"frames": len(self.indices), "on_target": on_target, "dropped": len(self.indices) - on_target,
                "lost": states["lost"], "ambiguous": states["ambiguous"],
                "after_cut": states["cut"] + states["after-cut"], "reacquired": states["reacquired"],
                "low_confidence": low, "cuts": len(self.cuts), "key_boxes": len(self.keys),
                "decode_warnings": len(self.decode.warnings)}

    def summary_line(self) -> str:
        """``track quality: on target 245/795 frames (31%), dropped 550 (...), ...``."""
        return quality_line(self.to_json())

    def key_spans(self) -> dict[int, tuple[int, int]]:
        """key frame -> (first, last) tracked frame whose verdict that key box gave (`governed_by`)."""
        return key_spans(self.indices, self.governed_by)

    def at(self, frame: int) -> tuple[Optional[Box], float, str]:
        position = self.indices.index(frame)
        return self.boxes[position], self.confidence[position], self.states[position]

    def to_json(self) -> dict:
        """What the manifest keeps beside the record: per tracked frame its confidence and state, the cuts,
        the key boxes, the decoding warnings and the quality counts."""
        return {"frames": self.indices, "confidence": self.confidence, "states": self.states, "cuts": self.cuts,
                "governed_by": self.governed_by,
                "key_boxes": [{"frame": k.frame, "box": list(k.box)} for k in self.keys],
                "num_frames": self.num_frames, "decoded_frames": self.decode.decoded,
                "decode_warnings": self.decode.warnings, "quality": self.quality()}


def key_spans(frames: Sequence[int], governed_by: Sequence[int]) -> dict[int, tuple[int, int]]:
    """key frame -> (first, last) of the tracked `frames` whose verdict came from that key box."""
    spans: dict[int, tuple[int, int]] = {}
    for frame, key in zip(frames, governed_by):
        first, last = spans.get(key, (frame, frame))
        spans[key] = (min(first, frame), max(last, frame))
    return dict(sorted(spans.items()))


def quality_line(track: dict) -> str:
    """``track quality: on target 245/795 frames (31%), dropped 550 (...), ...`` from `TrackResult.to_json()`."""
    q = track.get("quality")
    if not q:
        return "track quality: not recorded (a track made by an earlier version)"
    share = 100 * q["on_target"] / max(q["frames"], 1)
    why = [f"{q[k]} {name}" for k, name in (("lost", "lost"), ("ambiguous", "ambiguous"),
                                             ("after_cut", "after a cut")) if q[k]]
    parts = [f"on target {q['on_target']}/{q['frames']} frames ({share:.0f}%)",
             f"dropped {q['dropped']}" + (f" ({', '.join(why)})" if why else "")]
    parts.append(f"{q['cuts']} shot cut(s)")
    if q["reacquired"]:
        parts.append(f"re-acquired on {q['reacquired']} frame(s)")
    if q["low_confidence"]:
        parts.append(f"{q['low_confidence']} low-confidence")
    parts.append(f"{q['key_boxes']} key box(es)")
    return "track quality: " + ", ".join(parts)


def resolve_stride(stride: Optional[int], fps: Optional[float]) -> int:
    """`stride`, or (None) the one that tracks about `TRACK_FPS` frames a second of video: the RoI path reads
    nine frames, and on the hand-labelled footage the guarded trackers hold their targets as well at that rate
    as at 10 a second (benchmarks/RESULTS.md), at a fifth of the work of 30 fps. Fast motion may want more."""
    if stride is not None:
        if stride < 1:
            raise UsageError(f"--stride {stride}: must be >= 1")
        return int(stride)
    return max(1, int(round(fps / TRACK_FPS))) if fps else 1


def check_keys(keys: Sequence[KeyBox], frame_size: tuple[int, int]) -> list[KeyBox]:
    """The key boxes, checked (inside the frame, big enough, one per frame) and sorted by frame."""
    from artemis_cli.ownvideo.video import check_box

    if not keys:
        raise UsageError("--box: at least one key box is needed")
    seen: set[int] = set()
    checked = []
    for key in keys:
        if key.frame < 0:
            raise UsageError(f"--frame {key.frame}: frame indices start at 0")
        if key.frame in seen:
            raise UsageError(f"--frame {key.frame}: two key boxes on one frame", hint="give one box per --frame")
        seen.add(key.frame)
        checked.append(KeyBox(key.frame, check_box(key.box, frame_size, key.frame)))
    return sorted(checked, key=lambda k: k.frame)


class _Spool:
    """Frames kept for the backward passes: small JPEGs in a temp folder, read back in reverse."""

    def __init__(self):
        self._folder: Optional[tempfile.TemporaryDirectory] = None

    def put(self, index: int, frame_bgr: np.ndarray) -> None:
        import cv2

        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="artemis-track-")
        ok, data = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        Path(self._folder.name, f"{index}.jpg").write_bytes(data.tobytes())

    def get(self, index: int) -> np.ndarray:
        import cv2

        data = np.frombuffer(Path(self._folder.name, f"{index}.jpg").read_bytes(), dtype=np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_COLOR)

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


class _Direction:
    """One key box tracked in one direction: a tracker proposing, the guard judging."""

    def __init__(self, tracker_name: str, frame: np.ndarray, box: Box, index: int, step: int):
        from artemis_cli.ownvideo.trackers import OpenCVTracker

        self.tracker = OpenCVTracker(tracker_name) if tracker_name != "sam2" else None
        if self.tracker is not None:
            self.tracker.start(frame, box)
        self.guard = Guard(frame, list(box), index, stride=step)
        self.ended = False

    def step(self, frame: np.ndarray, index: int, cut: bool, proposed: Optional[Box] = None):
        """(box or None, confidence, state, earlier frames to take back) on `frame`; `cut`: a shot cut since
        the previous tracked frame."""
        if self.ended:
            return None, 0.0, "after-cut", []
        if cut:
            self.ended = True
            return None, 0.0, "cut", []
        if self.tracker is not None:
            proposed = self.tracker.propose(frame)
        verdict = self.guard.judge(frame, index, proposed)
        if verdict.restart and self.tracker is not None:
            self.tracker.start(frame, verdict.box)
        return verdict.box, verdict.confidence, verdict.state, verdict.retract


def _record(results: dict, index: int, step, factor: float, size: tuple[int, int]) -> None:
    """Store one step's verdict (mapped to video pixels), and take back the frames it retracts."""
    from artemis_cli.ownvideo.trackers import clip_box

    box, confidence, state, retract = step
    results[index] = (clip_box(_scaled(box, 1 / factor), *size) if box else None, confidence, state)
    for earlier in retract:
        results[earlier] = (None, results[earlier][1], "lost")


def _scaled(box: Sequence[float], factor: float) -> Box:
    return [float(v) * factor for v in box]


def _track(frames: Iterable[Frame], info_size: tuple[int, int], keys: Sequence[KeyBox], *, tracker: str,
           stride: int, sam2, progress: Progress, total_hint: Optional[int],
           on_frame: Optional[Callable[[Frame], None]] = None) -> tuple[dict, list[int], int, dict]:
    """The shared core: {frame: (box, confidence, state)} over the tracked frames, the cuts, the frame
    count and the seconds spent decoding / tracking.

    Each key box is tracked forward up to the next key frame and backward down to the previous one (or to a
    cut, whichever comes first), so between two key boxes each frame has up to two verdicts; it takes the
    believed one, and when both are, the nearer key's (`_merge`). A cut thus never costs the frames between
    it and the key of the same shot."""
    width, height = info_size
    factor = min(1.0, TRACK_SIDE / max(width, height))
    size = (max(8, int(round(width * factor))), max(8, int(round(height * factor))))
    keys = sorted(keys, key=lambda k: k.frame)
    key_frames = {k.frame: k for k in keys}
    detector = CutDetector()
    cut_flags = bytearray()
    spool = _Spool()
    forward: dict[int, tuple] = {}
    backward: dict[int, tuple] = {}
    small_keys: dict[int, np.ndarray] = {}
    sam2_frames: dict[int, list] = {k.frame: [] for k in keys}  # sam2: each segment's frames, in memory
    active: Optional[_Direction] = None
    last_tracked = -1
    decode_seconds, started = 0.0, time.perf_counter()
    count = 0

    def read(frame: Frame) -> tuple:  # on the read-ahead thread: what the loop below needs of each frame
        tracked = frame.index % stride == 0 or frame.index in key_frames
        return frame, frame.thumbnail(CutDetector.THUMB), frame.bgr(size) if tracked else None

    try:
        with contextlib.closing(read_ahead(frames, read)) as iterator:  # its thread stops if this loop does
            while True:
                tick = time.perf_counter()
                item = next(iterator, None)
                decode_seconds += time.perf_counter() - tick  # waiting for decoded frames
                if item is None:
                    break
                frame, thumbnail, small = item
                index = frame.index
                count = index + 1
                if on_frame is not None:
                    on_frame(frame)
                tracked = small is not None
                cut_flags.append(detector.step(thumbnail))
                if progress is not None and total_hint and index % 16 == 0:
                    progress(min(0.99, index / total_hint))
                if not tracked:
                    continue
                if tracker == "sam2":
                    owner = min(keys, key=lambda k: (abs(k.frame - index), k.frame))
                    sam2_frames[owner.frame].append((index, small))
                    continue
                if index in key_frames:
                    key = key_frames[index]
                    small_keys[index] = small
                    active = _Direction(tracker, small, _scaled(key.box, factor), index, stride)
                    forward[index] = (list(key.box), 1.0, "key")
                else:
                    if active is not None:
                        cut = any(cut_flags[last_tracked + 1:index + 1])
                        _record(forward, index, active.step(small, index, cut), factor, (width, height))
                    if index < keys[-1].frame:
                        spool.put(index, small)  # for the backward pass of the next key
                last_tracked = index
        for key in keys:
            if key.frame >= count:
                raise UsageError(f"--frame {key.frame}: the video has {count} frame(s) (0..{count - 1})")
        if tracker == "sam2":
            results: dict = {}
            _track_sam2(sam2_frames, keys, factor, stride, cut_flags, results, sam2, (width, height))
        else:
            for position, key in enumerate(keys):  # backward from each key down to the previous one
                floor = keys[position - 1].frame if position else -1
                frames_before = [i for i in range(key.frame - 1, floor, -1) if i % stride == 0]
                if not frames_before:
                    continue
                direction = _Direction(tracker, small_keys[key.frame], _scaled(key.box, factor), key.frame, stride)
                previous = key.frame
                for index in frames_before:
                    cut = any(cut_flags[index + 1:previous + 1])
                    _record(backward, index, direction.step(spool.get(index), index, cut), factor, (width, height))
                    previous = index
                    if direction.ended:
                        break
            results = _merge(forward, backward, keys)
    finally:
        spool.close()
    cuts = [index for index, flag in enumerate(cut_flags) if flag]
    seconds = {"decode": decode_seconds, "track": time.perf_counter() - started - decode_seconds}
    if progress is not None:
        progress(1.0)
    return results, cuts, count, seconds


def _merge(forward: dict, backward: dict, keys: Sequence[KeyBox]) -> dict:
    """One verdict per tracked frame from the forward and backward passes: the one with a box; when both have
    one, the nearer key's; when neither, the nearer key's state (a frame a backward pass never reached, past
    a cut, is after a cut)."""
    frames = [k.frame for k in keys]
    merged = {}
    for index in sorted(set(forward) | set(backward)):
        earlier = max((f for f in frames if f <= index), default=None)
        later = min((f for f in frames if f >= index), default=None)
        ahead = forward.get(index) if earlier is not None else None  # from the key before
        behind = backward.get(index) if later is not None else None  # from the key after
        if later is not None and behind is None and index not in frames:
            behind = (None, 0.0, "after-cut")  # the backward pass stopped at a cut before reaching it
        options = [(*v[:3], key) for v, key in ((ahead, earlier), (behind, later)) if v is not None]
        with_box = [v for v in options if v[0] is not None]
        if len(with_box) == 1:
            merged[index] = with_box[0]
        elif ahead is not None and behind is not None:
            nearer_ahead = earlier is not None and (later is None or index - earlier <= later - index)
            merged[index] = options[0] if nearer_ahead else options[1]
        else:
            merged[index] = options[0]
    return merged  # frame -> (box, confidence, state, the key frame whose verdict it is)


def _track_sam2(frames_by_key: dict, keys: Sequence[KeyBox], factor: float, stride: int, cut_flags: bytearray,
                results: dict, sam2, full_size: tuple[int, int]) -> None:
    """SAM 2 proposes over each segment's frames (held in memory); the guard judges, without restarts."""
    import cv2

    from artemis_cli.ownvideo.trackers import clip_box, sam2_proposals

    if sam2 is None:
        raise UsageError("--tracker sam2 needs its model (load_sam2)")
    width, height = full_size
    for key in keys:
        items = frames_by_key[key.frame]
        indices = [index for index, _ in items]
        key_position = indices.index(key.frame)
        rgb = [cv2.cvtColor(small, cv2.COLOR_BGR2RGB) for _, small in items]
        proposals = sam2_proposals(rgb, key_position, _scaled(key.box, factor), *sam2)
        results[key.frame] = (list(key.box), 1.0, "key")
        for order in (range(key_position + 1, len(items)), range(key_position - 1, -1, -1)):
            direction = _Direction("sam2", items[key_position][1], _scaled(key.box, factor), key.frame, stride)
            previous = key.frame
            for position in order:
                index = indices[position]
                low, high = sorted((previous, index))
                cut = any(cut_flags[low + 1:high + 1])
                _record(results, index, direction.step(items[position][1], index, cut, proposals[position]), factor,
                        (width, height))
                previous = index
        items.clear()


def _result(results: dict, cuts: list[int], count: int, keys: Sequence[KeyBox], frame_size, fps, report,
            seconds) -> TrackResult:
    indices = sorted(results)
    frames = [k.frame for k in keys]

    def nearest(index: int) -> int:
        return min(frames, key=lambda f: (abs(f - index), f))

    return TrackResult(indices=indices, boxes=[results[i][0] for i in indices],
                       confidence=[round(float(results[i][1]), 3) for i in indices],
                       states=[results[i][2] for i in indices], cuts=cuts, keys=list(keys), num_frames=count,
                       frame_size=frame_size, fps=fps, decode=report, seconds=seconds,
                       governed_by=[results[i][3] if len(results[i]) > 3 else nearest(i) for i in indices])


def track_video_keys(info: VideoProbe, keys: Sequence[KeyBox], *, tracker: str = "csrt", stride: Optional[int] = None,
                     sam2=None, limits: VideoLimits = DEFAULT_LIMITS, progress: Progress = None,
                     check: Optional[Callable[[int], None]] = None,
                     on_frame: Optional[Callable[[Frame], None]] = None) -> TrackResult:
    """Track the key boxes through the video `info` (see the module doc), decoding it once; `on_frame` sees
    every decoded frame as it passes (to keep one without decoding the video again)."""
    from artemis_cli.ownvideo.trackers import TRACKERS

    if tracker not in TRACKERS:
        raise UsageError(f"--tracker {tracker!r}: expected one of {', '.join(TRACKERS)}")
    stride = resolve_stride(stride, info.fps)
    keys = check_keys(keys, info.frame_size)
    report = DecodeReport()
    frames = iter_frames(info, report, limits=limits, check=check)
    results, cuts, count, seconds = _track(frames, info.frame_size, keys, tracker=tracker, stride=stride, sam2=sam2,
                                           progress=progress, total_hint=info.header_frames, on_frame=on_frame)
    if sum(verdict[0] is not None for verdict in results.values()) == len(keys) and len(results) > len(keys):
        raise InputError(f"{info.path}: the {tracker} tracker lost the target on every frame but the key frame(s)",
                         hint="draw the box tighter around the target, or try another --tracker / --frame")
    return _result(results, cuts, count, keys, info.frame_size, info.fps, report, seconds)


def track_frames(frames: Sequence[np.ndarray], keys: Sequence[KeyBox], *, tracker: str = "csrt", stride: int = 1,
                 sam2=None, progress: Progress = None) -> TrackResult:
    """`track_video_keys` over frames already in memory (RGB [H, W, 3] uint8, all one size)."""
    if not len(frames):
        raise InputError("no frames to track")
    height, width = frames[0].shape[:2]
    keys = check_keys(keys, (width, height))

    def source() -> Iterator[Frame]:
        for index, array in enumerate(frames):
            yield Frame(index, array)

    results, cuts, count, seconds = _track(source(), (width, height), keys, tracker=tracker, stride=stride,
                                           sam2=sam2, progress=progress, total_hint=len(frames))
    return _result(results, cuts, count, keys, (width, height), None, DecodeReport(decoded=count), seconds)


def track_boxes(frames: Sequence[np.ndarray], key: int, box: Box, *, tracker: str = "csrt",
                sam2=None, progress: Progress = None) -> list[Optional[Box]]:
    """One box (None: dropped) per frame of in-memory `frames` (RGB uint8), the key frame's being `box`:
    `track_frames` with one key box, boxes only."""
    return track_frames(frames, [KeyBox(key, tuple(box))], tracker=tracker, sam2=sam2, progress=progress).boxes
