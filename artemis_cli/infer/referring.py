"""One referring record -> the model inputs: the clip feature, the 9 RoI frames and their boxes.

This is the only glue between a stage-3 / VideoRefBench record (REFERENCE §2) and the model, kept
in one function so training can call it too (`jitter=True` there). Frame choice and box
normalisation are `artemis_cli.model.sampling`'s; features load through the safe `load_feature`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artemis_cli.data.layout import ARTEMIS_DATA
from artemis_cli.errors import InputError


@dataclass
class ReferringInputs:
    """`video` [T, C] (e.g. [356, 1024]), `frames` [F, 3, S, S] key frame first, `boxes` [F, 4] in [0, 1]."""

    video: Any
    frames: Any
    boxes: Any
    frame_ids: list


def referring_root(data_root: str | Path) -> Path:
    """Where `clip_path`/`frame_path` are relative to: `DATA_ROOT/Artemis_data` when it exists, else
    `data_root` itself (the published scripts' `--video_dir` pointed at Artemis_data directly)."""
    data_root = Path(data_root)
    nested = data_root / ARTEMIS_DATA
    return nested if nested.is_dir() else data_root


def load_video_feature(path: str | Path, width: int):
    """A clip feature file -> tensor [T, `width`] (its stored dtype, fp16 for published features); a wrong
    shape is an `InputError` naming the file."""
    import torch

    from artemis_cli.data.feature_files import load_feature

    array = load_feature(path)
    if array.ndim != 2 or array.shape[1] != width:
        raise InputError(f"{path}: feature shape {tuple(array.shape)}, expected [T, {width}] (T tokens of the "
                         f"model's mm_hidden_size)")
    return torch.tensor(array)  # a copy: unpickled arrays may be read-only


def referring_inputs(record: Any, root: str | Path, image_processor, *, width: int, rng: random.Random,
                     num_tracked: int = 8, jitter: bool = False, crop_correct: bool = False) -> ReferringInputs:
    """Load what the model needs for one referring record (a `ReferringRecord` or a dict of its fields).

    `root` is `referring_root(DATA_ROOT)`; `rng` draws the key frame when the record has none (and the
    training jitter), so a per-sample seeded `rng` makes the result reproducible.
    """
    from artemis_cli.model.sampling import load_roi_inputs, sample_roi_frames

    get = record.get if isinstance(record, dict) else lambda name: getattr(record, name)
    root = Path(root)
    video = load_video_feature(root / get("clip_path"), width)
    selection = sample_roi_frames(get("track_list"), get("frame_id"), key_frame_id=get("key_frame_id"),
                                  key_frame_box=get("key_frame_box"), num_tracked=num_tracked, jitter=jitter, rng=rng)
    frames, boxes = load_roi_inputs(root / get("frame_path"), selection, image_processor, crop_correct=crop_correct)
    return ReferringInputs(video=video, frames=frames, boxes=boxes, frame_ids=selection.frame_ids)
