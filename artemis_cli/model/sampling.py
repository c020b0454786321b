"""Which 9 frames and boxes feed the RoI module (key frame + 8 tracked), shared by training and inference.

`sample_roi_frames` is a pure function of the record and a `random.Random`, as the published stage-3 code chose frames:
frames whose `track_list` entry is non-empty are candidates; more than 8 -> 8 spread evenly
(training: random start and jitter of up to a quarter interval; inference: every n//8-th from the
start) or 8 at random; fewer -> the last repeated; sorted by frame index. The key frame is the
record's `key_frame_id`/`key_frame_box`, or a random tracked frame when those are empty.

`normalise_boxes` turns pixel boxes into the [0, 1] boxes the model takes. *Quirk* (default): like
the released weights were trained, boxes are divided by the key frame's width/height although the
CLIP processor resizes the shorter side to 224 and centre-crops, so on non-square frames the box
is not where the target is in the crop. ``crop_correct=True`` maps boxes into the crop instead.
*Quirk* (default): the published code divides ``torch.tensor(box)`` by an fp16 ``[w, h, w, h]``, so
integer pixel boxes are divided in fp16 (the result rounded to fp16, up to 2.4e-4 off the exact
quotient) and float boxes in fp32; ``exact=True`` divides exactly instead. Boxes keep their JSON number
type through the frame sampler for this reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from artemis_cli.errors import InputError

FrameId = Union[str, int]
Box = Sequence[float]


@dataclass(frozen=True)
class RoiFrames:
    """The chosen frames (`frame_id` entries, key frame first) and their pixel boxes."""

    frame_ids: list[FrameId]
    boxes: list[list[float]]  # as the record gives them: ints stay ints (the published division depends on it)
    tracked_indices: list[int]  # positions in `track_list` of the tracked frames, sorted
    key_index: Optional[int]  # position of the key frame in `track_list`, None when it came from the record


def spread_indices(candidates: Sequence[int], count: int, *, jitter: bool, rng: random.Random) -> list[int]:
    """`count` of `candidates` spread evenly; with `jitter`, a random start and +-interval/4 noise."""
    interval = len(candidates) // count
    if not jitter:
        return [candidates[i * interval] for i in range(count)]
    start = rng.choice(range(interval))
    noise = interval / 4
    point = start
    chosen = [candidates[point]]
    for _ in range(count - 1):
        point += interval
        offset = int(noise * ((rng.random() - 0.5) * 2))
        chosen.append(candidates[min(max(point + offset, 0), len(candidates) - 1)])
    return chosen


def sample_roi_frames(track_list: Sequence[Sequence[float]], frame_ids: Sequence[FrameId], *,
                      key_frame_id: Optional[FrameId] = None, key_frame_box: Optional[Box] = None,
                      num_tracked: int = 8, jitter: bool = False, mode: str = "average",
                      rng: Optional[random.Random] = None) -> RoiFrames:
    """Pick the key frame and `num_tracked` tracked frames of one referring record.

    `jitter=True` is the training sampler, `False` the inference one; `mode` is ``average`` (spread
    evenly) or ``random``. `rng` defaults to a fresh ``random.Random(0)`` so results are reproducible.
    """
    rng = rng or random.Random(0)
    if len(track_list) != len(frame_ids):
        raise InputError(f"track_list has {len(track_list)} entries but frame_id has {len(frame_ids)}")
    tracked = [index for index, box in enumerate(track_list) if len(box) > 0]
    if not tracked:
        raise InputError("no tracked frame: every track_list entry is empty")
    if mode not in ("average", "random"):
        raise ValueError(f"mode must be 'average' or 'random', got {mode!r}")
    if len(tracked) > num_tracked:
        picked = (spread_indices(tracked, num_tracked, jitter=jitter, rng=rng) if mode == "average"
                  else rng.sample(tracked, num_tracked))
        key_pool = tracked
    else:
        picked = tracked + [tracked[-1]] * (num_tracked - len(tracked))
        # The reference pads the candidate list in place, so a random key frame is then drawn from
        # the padded list (the last tracked frame weighs more); kept for identical draws.
        key_pool = picked
    picked = sorted(picked)
    if key_frame_box and key_frame_id:  # truthiness as the reference (a frame id 0 counts as absent)
        key_ids, key_boxes, key_index = [key_frame_id], [list(key_frame_box)], None
    else:
        key_index = rng.choice(key_pool)
        key_ids, key_boxes = [frame_ids[key_index]], [list(track_list[key_index])]
    return RoiFrames(
        frame_ids=key_ids + [frame_ids[i] for i in picked],
        boxes=key_boxes + [list(track_list[i]) for i in picked],
        tracked_indices=picked,
        key_index=key_index,
    )


def crop_geometry(width: int, height: int, image_size: int = 224) -> tuple[float, float, float, float]:
    """(scale_x, scale_y, left, top) of CLIP's resize-shorter-side-then-centre-crop, as transformers does it."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(image_size * long / short)
    new_w, new_h = (image_size, new_long) if width <= height else (new_long, image_size)
    return new_w / width, new_h / height, (new_w - image_size) // 2, (new_h - image_size) // 2


def published_division(box: Box, w: int, h: int) -> list[float]:
    """``torch.tensor(box) / torch.tensor([w, h, w, h], dtype=torch.half)`` as the published code computes
    it: torch's type promotion makes that an fp16 division for an all-integer box (int64 / half -> half)
    and an fp32 one when any coordinate is a float."""
    import torch

    quotient = torch.tensor(list(box)) / torch.tensor([w, h, w, h], dtype=torch.half)
    return [float(v) for v in quotient.float().tolist()]


def normalise_boxes(boxes: Sequence[Box], frame_sizes: Sequence[tuple[int, int]], *, crop_correct: bool = False,
                    image_size: int = 224, exact: bool = False) -> list[list[float]]:
    """Pixel boxes -> [0, 1] boxes. Default (*quirks*): every box divided by the key frame's (w, h), i.e.
    ``frame_sizes[0]``, with the published rounding (`published_division`); ``exact=True`` divides in
    float64. ``crop_correct``: each box mapped through its own frame's resize + centre crop and clipped
    to the crop (exact arithmetic)."""
    if len(boxes) != len(frame_sizes):
        raise ValueError(f"{len(boxes)} boxes but {len(frame_sizes)} frame sizes")
    if not crop_correct:
        w, h = frame_sizes[0]
        if not exact:
            return [published_division(box, w, h) for box in boxes]
        return [[box[0] / w, box[1] / h, box[2] / w, box[3] / h] for box in boxes]
    out = []
    for box, (w, h) in zip(boxes, frame_sizes):
        sx, sy, left, top = crop_geometry(w, h, image_size)
        mapped = [(box[0] * sx - left) / image_size, (box[1] * sy - top) / image_size,
                  (box[2] * sx - left) / image_size, (box[3] * sy - top) / image_size]
        out.append([min(max(v, 0.0), 1.0) for v in mapped])
    return out


def load_roi_inputs(frame_dir: "str | Path | Callable[[list[FrameId]], list]", selection: RoiFrames, image_processor,
                    *, crop_correct: bool = False, exact_boxes: bool = False):
    """Open the selected frames and build the model inputs: (pixels [F, 3, S, S], boxes [F, 4] float32).

    `frame_dir` is a folder of frame files named by frame id, or a function returning the PIL images of
    the given frame ids (frames decoded from a video: `data.frames.VideoFrameReader`). `exact_boxes` turns
    off the published fp16 rounding of the box division (`normalise_boxes`)."""
    import torch
    from PIL import Image

    if callable(frame_dir):
        images = [image.convert("RGB") for image in frame_dir(list(selection.frame_ids))]
    else:
        images = []
        for frame in selection.frame_ids:
            path = Path(frame_dir) / str(frame)
            if not path.is_file():
                raise InputError(f"{path}: frame not found", hint="check frame_path / frame_id against the DATA_ROOT")
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
    image_size = int(image_processor.crop_size["height"])
    boxes = normalise_boxes(selection.boxes, [image.size for image in images], crop_correct=crop_correct,
                            image_size=image_size, exact=exact_boxes)
    pixels = image_processor(images, return_tensors="pt")["pixel_values"]  # [F, 3, S, S]
    return pixels, torch.tensor(boxes, dtype=torch.float32)
