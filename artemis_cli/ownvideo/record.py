"""The VideoRef-format record of a tracked target, and writing it with its frames (REFERENCE §2).

A record names its frames (`frame_path` + `frame_id`, JPEG files) and clip feature (`clip_path`), all
relative to one root folder; `track_list[i]` is the box on `frame_id[i]` or `[]` where the target
was lost. `write_track` lays a record out so that `data verify-layout ROOT --stage none
--annotations ROOT/track.json`, `infer videorefbench --data-root ROOT` and `train stage3` read it
unchanged: ``ROOT/track.json`` and ``ROOT/Artemis_data/<stem>/{frames,clip_feature}``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

JPEG_QUALITY = 95


def frame_name(index: int, num_frames: int) -> str:
    """``00042.jpg``: zero-padded to 5 digits (more for longer videos), so names sort by frame."""
    return f"{index:0{max(5, len(str(max(num_frames - 1, 0))))}d}.jpg"


def build_record(*, video_name: str, frame_path: str, clip_path: str, indices: Sequence[int],
                 boxes: Sequence[Optional[Sequence[float]]], num_frames: int, key_frame: int,
                 key_box: Sequence[float], caption: str = "", question: Optional[str] = None) -> dict:
    """A referring record; `boxes[i]` (None = lost) is the box on video frame `indices[i]`."""
    record = {
        "video_name": video_name,
        "clip_path": clip_path,
        "frame_path": frame_path,
        "frame_id": [frame_name(i, num_frames) for i in indices],
        "track_list": [[round(float(v), 2) for v in box] if box is not None else [] for box in boxes],
        "key_frame_id": frame_name(key_frame, num_frames),
        "key_frame_box": [round(float(v), 2) for v in key_box],
        "caption": caption,
    }
    if question is not None:
        record["question"] = question
    return record


def write_frames(folder: Path, frames: Sequence[np.ndarray], indices: Sequence[int], num_frames: int) -> None:
    """The frames as JPEG files named by `frame_name`, written into a temp folder renamed over `folder`."""
    from PIL import Image

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for frame, index in zip(frames, indices):
        Image.fromarray(frame).save(tmp / frame_name(index, num_frames), format="JPEG", quality=JPEG_QUALITY)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def track_json(record: dict, indices: Sequence[int], key_frame: int, frame_size: tuple[int, int],
               num_frames: int) -> dict:
    """The track as `PreparedTarget.track_json` gives it: frame numbers, boxes (`[]` = lost), key frame."""
    return {"frames": list(indices), "boxes": record["track_list"], "key_frame": key_frame,
            "key_frame_box": record["key_frame_box"], "frame_size": list(frame_size), "num_frames": num_frames,
            "tracked": sum(1 for box in record["track_list"] if box)}


def write_track(output: Path, record: dict, frames_dir: Path, clip: Optional[Path], *, overwrite: bool = False) -> dict:
    """Write ``output`` (a JSON list of the one record) and copy its frames (and clip feature) beside it.

    Frames go to ``Artemis_data/<stem>/frames`` and the feature to ``Artemis_data/<stem>/clip_feature``
    next to `output`; the record's paths are rewritten relative to that ``Artemis_data``. Returns the
    written record. An existing output is refused unless `overwrite`."""
    from artemis_cli.common.atomic import atomic_write_text
    from artemis_cli.errors import UsageError

    output = Path(output)
    if output.exists() and not overwrite:
        raise UsageError(f"{output} already exists", hint="pass --overwrite to replace it, or choose another -o")
    stem = output.stem
    data = output.parent / "Artemis_data" / stem
    record = dict(record, frame_path=f"{stem}/frames")
    target_frames = data / "frames"
    tmp = data / f".frames.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in record["frame_id"]:
        shutil.copyfile(frames_dir / name, tmp / name)
    if target_frames.exists():
        shutil.rmtree(target_frames)
    os.replace(tmp, target_frames)
    clip_name = f"{record['video_name']}.pkl"
    record["clip_path"] = f"{stem}/clip_feature/{clip_name}"
    if clip is not None:
        from artemis_cli.common.atomic import atomic_write_bytes

        atomic_write_bytes(data / "clip_feature" / clip_name, Path(clip).read_bytes())
    atomic_write_text(output, json.dumps([record], indent=2, ensure_ascii=False) + "\n")
    return record
