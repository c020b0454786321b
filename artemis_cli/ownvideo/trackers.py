"""The trackers that propose a box per frame: OpenCV CSRT / KCF (CPU, no weights) and SAM 2 (transformers).

They only propose: `integrity.Guard` decides what is reported (see `tracking`, which drives them frame by
frame). What each is good for, measured on generated and real footage (benchmarks/RESULTS.md):

- ``csrt`` (default): the most accurate on CPU; holds scale and partial occlusion.
- ``kcf``: faster per frame but loses walking people within a few frames on real footage; with the guard
  it re-acquires them (and drops what it cannot), so it is kept for long, easy videos where speed counts.
- ``sam2``: a segmentation model propagating a mask (GPU); needs ``--tracker-model``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from artemis_cli.errors import UsageError

TRACKERS = ("csrt", "kcf", "sam2")
TRACKER_HELP = ("csrt (default; CPU, no weights, the most accurate), kcf (faster, weaker on people; the "
                "guard re-acquires what it loses) or sam2 (SAM 2 via transformers, for GPUs; needs "
                "--tracker-model)")
CSRT_SEGMENTATION = False  # see make_opencv_tracker
MIN_SIDE = 2.0  # px: a thinner box has collapsed
MIN_INSIDE = 0.7  # fraction of a tracked box that must lie inside the frame: an exiting target's box lags
# behind it and shrinks against the edge, so 70% of the box inside is about half of the target
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
    params = getattr(cv2, f"{factory}_Params", None) if name == "csrt" else None
    if params is None:
        return cls.create()
    settings = params()
    # CSRT's foreground/background segmentation of its search window: without it the hand-labelled footage
    # gives the same boxes on target (benchmarks/RESULTS.md) at 1.1-2.4x the speed (the guard vets every box)
    settings.use_segmentation = CSRT_SEGMENTATION
    return cls.create(settings)


class OpenCVTracker:
    """CSRT or KCF as a step tracker: `start(frame, box)`, then `propose(frame)` per frame (BGR)."""

    def __init__(self, name: str):
        self.name = name
        self._tracker = None

    def start(self, frame_bgr: np.ndarray, box: Sequence[float]) -> None:
        x1, y1, x2, y2 = box
        self._tracker = make_opencv_tracker(self.name)
        self._tracker.init(frame_bgr, (int(round(x1)), int(round(y1)), max(1, int(round(x2 - x1))),
                                       max(1, int(round(y2 - y1)))))

    def propose(self, frame_bgr: np.ndarray) -> Optional[Box]:
        ok, (x, y, w, h) = self._tracker.update(frame_bgr)
        if not ok:
            return None
        height, width = frame_bgr.shape[:2]
        return clip_box((x, y, x + w, y + h), width, height)


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
    from artemis_cli.common.hub import resolve_model_folder

    folder = str(resolve_model_folder(tracker_model, option="--tracker-model"))
    try:
        model = Sam2VideoModel.from_pretrained(folder, dtype=dtype).to(device).eval()
        processor = Sam2VideoProcessor.from_pretrained(folder)
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


def sam2_proposals(frames: Sequence[np.ndarray], key: int, box: Box, model, processor,
                   progress: Progress = None) -> list[Optional[Box]]:
    """SAM 2's box per frame (RGB `frames`): a box prompt on `frames[key]`, masks propagated forward and
    backward, each mask's bounding box (None: no mask). The key frame keeps `box`."""
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
                if output.frame_idx != key:
                    out[output.frame_idx] = clip_box(found, width, height) if found is not None else None
                done[0] += 1
                if progress is not None:
                    progress(min(1.0, done[0] / (len(frames) + 1)))
    return out
