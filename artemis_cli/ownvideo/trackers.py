"""Propagate one box through a video: OpenCV CSRT / KCF (CPU, no weights) or SAM 2 (transformers).

`track_boxes` tracks forward and backward from the key frame and returns one box per frame, or
`None` where the target is lost: the tracker reports failure, the box collapses (under
`MIN_SIDE` px), less than half of it lies inside the frame, or (OpenCV trackers) its colours no
longer look like the key frame's box. The last check is what marks an object that has left the frame:
CSRT keeps reporting a box on the background it slid onto, and the published track lists have `[]`
there.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from artemis_cli.errors import InputError, UsageError

TRACKERS = ("csrt", "kcf", "sam2")
MIN_SIDE = 2.0  # px: a thinner box has collapsed
MIN_INSIDE = 0.7  # fraction of a tracked box that must lie inside the frame: an exiting target's box lags
# behind it and shrinks against the edge, so 70% of the box inside is about half of the target
MIN_SIMILARITY = 0.35  # histogram correlation with the key frame's box below which the target is lost
Box = list[float]
Progress = Optional[Callable[[float], None]]


def clip_box(box: Sequence[float], width: int, height: int) -> Optional[Box]:
    """`box` clipped to the frame, or None when it collapsed or mostly left the frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 - x1 < MIN_SIDE or y2 - y1 < MIN_SIDE:
        return None
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if cx2 - cx1 < MIN_SIDE or cy2 - cy1 < MIN_SIDE:
        return None
    if (cx2 - cx1) * (cy2 - cy1) < MIN_INSIDE * (x2 - x1) * (y2 - y1):
        return None
    return [round(cx1, 2), round(cy1, 2), round(cx2, 2), round(cy2, 2)]


def _histogram(frame_bgr: np.ndarray, box: Box) -> np.ndarray:
    import cv2

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    patch = frame_bgr[max(y1, 0):max(y2, y1 + 1), max(x1, 0):max(x2, x1 + 1)]
    hsv = cv2.cvtColor(patch, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [18, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    import cv2

    return float(cv2.compareHist(a, b, cv2.HISTCMP_CORREL))


def make_opencv_tracker(name: str):
    """A fresh OpenCV tracker (contrib build); a missing build is a `UsageError` naming the extra."""
    try:
        import cv2
    except ImportError:
        raise UsageError(f"--tracker {name} needs OpenCV's contrib build",
                         hint="pip install 'artemis[track]' (opencv-contrib-python-headless)") from None
    factory = {"csrt": "TrackerCSRT", "kcf": "TrackerKCF"}[name]
    cls = getattr(cv2, factory, None) or getattr(getattr(cv2, "legacy", None), factory, None)
    if cls is None:
        raise UsageError(f"--tracker {name}: this OpenCV build has no {factory}",
                         hint="pip install 'artemis[track]' (opencv-contrib-python-headless, not opencv-python)")
    return cls.create()


def _opencv_direction(frames_bgr: list[np.ndarray], order: Sequence[int], key: int, box: Box, name: str,
                      template: np.ndarray, out: list[Optional[Box]], advance: Callable[[], None]) -> None:
    height, width = frames_bgr[key].shape[:2]
    tracker = make_opencv_tracker(name)
    x1, y1, x2, y2 = box
    tracker.init(frames_bgr[key], (int(round(x1)), int(round(y1)), max(1, int(round(x2 - x1))),
                                   max(1, int(round(y2 - y1)))))
    for index in order:
        ok, (x, y, w, h) = tracker.update(frames_bgr[index])
        found = clip_box((x, y, x + w, y + h), width, height) if ok else None
        if found is not None and _similarity(template, _histogram(frames_bgr[index], found)) < MIN_SIMILARITY:
            found = None
        out[index] = found
        advance()


def track_opencv(frames: Sequence[np.ndarray], key: int, box: Box, name: str = "csrt",
                 progress: Progress = None) -> list[Optional[Box]]:
    """CSRT or KCF from `frames[key]` (RGB [H, W, 3] uint8) forward to the end and backward to the start."""
    import cv2

    frames_bgr = [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in frames]
    out: list[Optional[Box]] = [None] * len(frames)
    height, width = frames_bgr[key].shape[:2]
    out[key] = clip_box(box, width, height)
    template = _histogram(frames_bgr[key], out[key] or list(box))
    done = [1]

    def advance() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0] / len(frames))

    _opencv_direction(frames_bgr, range(key + 1, len(frames)), key, box, name, template, out, advance)
    _opencv_direction(frames_bgr, range(key - 1, -1, -1), key, box, name, template, out, advance)
    return out


def load_sam2(tracker_model: Optional[str], device: str, dtype):
    """(model, processor) of a SAM 2 video model from a local folder or hub id."""
    if not tracker_model:
        raise UsageError("--tracker sam2 needs --tracker-model (a local folder or hub id, e.g. "
                         "facebook/sam2.1-hiera-tiny)")
    try:
        from transformers import Sam2VideoModel, Sam2VideoProcessor
    except ImportError:
        raise UsageError("--tracker sam2 needs transformers with SAM 2 (>= 4.56)",
                         hint="pip install -U 'transformers>=4.56'") from None
    from pathlib import Path

    if not Path(tracker_model).expanduser().is_dir() and "/" not in tracker_model:
        raise UsageError(f"--tracker-model {tracker_model}: no such folder (and not a hub id)")
    try:
        model = Sam2VideoModel.from_pretrained(tracker_model, dtype=dtype).to(device).eval()
        processor = Sam2VideoProcessor.from_pretrained(tracker_model)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--tracker-model {tracker_model}: cannot load a SAM 2 video model "
                         f"({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})",
                         hint="pass a local folder holding a Sam2VideoModel checkpoint and its processor") from None
    return model, processor


def mask_box(mask: np.ndarray) -> Optional[Box]:
    """The bounding box [x1, y1, x2, y2] (x2/y2 exclusive) of a boolean [H, W] mask, None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def track_sam2(frames: Sequence[np.ndarray], key: int, box: Box, model, processor,
               progress: Progress = None) -> list[Optional[Box]]:
    """SAM 2: a box prompt on the key frame, masks propagated forward and backward, each mask's box."""
    import torch

    height, width = frames[key].shape[:2]
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    out: list[Optional[Box]] = [None] * len(frames)
    out[key] = clip_box(box, width, height)
    done = [0]
    for reverse in (False, True):
        session = processor.init_video_session(video=list(frames), inference_device=device, dtype=dtype)
        processor.add_inputs_to_inference_session(inference_session=session, frame_idx=key, obj_ids=1,
                                                  input_boxes=[[[float(v) for v in box]]])
        with torch.inference_mode():
            for output in model.propagate_in_video_iterator(session, start_frame_idx=key, reverse=reverse):
                masks = processor.post_process_masks([output.pred_masks], original_sizes=[[height, width]],
                                                     binarize=True)[0]  # [objects, 1, H, W]
                found = mask_box(masks[0].reshape(height, width).cpu().numpy())
                if output.frame_idx != key:  # the key frame keeps the user's box, as with CSRT / KCF
                    out[output.frame_idx] = clip_box(found, width, height) if found is not None else None
                done[0] += 1
                if progress is not None:
                    progress(min(1.0, done[0] / (len(frames) + 1)))
    return out


def track_boxes(frames: Sequence[np.ndarray], key: int, box: Box, *, tracker: str = "csrt",
                sam2=None, progress: Progress = None) -> list[Optional[Box]]:
    """One box (or None = lost) per frame of `frames` (RGB uint8), the key frame's being `box`.

    `sam2` is the `(model, processor)` pair from `load_sam2` when `tracker` is ``sam2``."""
    if tracker not in TRACKERS:
        raise UsageError(f"--tracker {tracker!r}: expected one of {', '.join(TRACKERS)}")
    if not frames:
        raise InputError("no frames to track")
    if tracker == "sam2":
        if sam2 is None:
            raise UsageError("--tracker sam2 needs its model (load_sam2)")
        return track_sam2(frames, key, box, *sam2, progress=progress)
    return track_opencv(frames, key, box, tracker, progress=progress)
