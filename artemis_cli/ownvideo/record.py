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
from typing import Iterable, Optional, Sequence

import numpy as np

JPEG_QUALITY = 95


def frame_name(index: int, num_frames: int) -> str:
    """``00042.jpg``: zero-padded to 5 digits (more for longer videos), so names sort by frame."""
    return f"{index:0{max(5, len(str(max(num_frames - 1, 0))))}d}.jpg"


def build_record(*, video_name: str, frame_path: str, clip_path: str, indices: Sequence[int],
                 boxes: Sequence[Optional[Sequence[float]]], num_frames: int, key_frame: int,
                 key_box: Sequence[float], caption: str = "", question: Optional[str] = None,
                 confidence: Optional[Sequence[float]] = None, cuts: Optional[Sequence[int]] = None) -> dict:
    """A referring record; `boxes[i]` (None = lost) is the box on video frame `indices[i]`. `confidence`
    (per frame) and `cuts` (frame numbers that start a new shot) go beside the track as ``track_confidence``
    and ``shot_cuts``: the readers ignore keys they do not know, so the record stays a VideoRef record."""
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
    if confidence is not None:
        record["track_confidence"] = [round(float(c), 3) for c in confidence]
    if cuts is not None:
        record["shot_cuts"] = list(cuts)
    return record


def write_frames(folder: Path, frames: Iterable[tuple[int, np.ndarray]], num_frames: int) -> int:
    """`frames` ((frame number, RGB array) pairs, e.g. `video.iter_selected`) as JPEG files named by
    `frame_name`, written one at a time into a temp folder renamed over `folder`; returns how many."""
    from PIL import Image

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    count = 0
    try:
        for index, frame in frames:
            Image.fromarray(frame).save(tmp / frame_name(index, num_frames), format="JPEG", quality=JPEG_QUALITY)
            count += 1
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return count


def add_frames(folder: Path, frames: Iterable[tuple[int, np.ndarray]], num_frames: int) -> int:
    """`frames` added to an existing frame folder (a video's folder shared by several records), each JPEG
    written to a temp name and renamed, so a killed run leaves no half file; returns how many."""
    import tempfile

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, frame in frames:
        handle, tmp = tempfile.mkstemp(dir=folder, prefix=".frame-", suffix=".tmp")
        os.close(handle)
        try:
            Image.fromarray(frame).save(tmp, format="JPEG", quality=JPEG_QUALITY)
            os.replace(tmp, folder / frame_name(index, num_frames))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        count += 1
    return count


def track_json(record: dict, indices: Sequence[int], key_frame: int, frame_size: tuple[int, int],
               num_frames: int) -> dict:
    """The track as `PreparedTarget.track_json` gives it: frame numbers, boxes (`[]` = lost), key frame."""
    return {"frames": list(indices), "boxes": record["track_list"], "key_frame": key_frame,
            "key_frame_box": record["key_frame_box"], "frame_size": list(frame_size), "num_frames": num_frames,
            "tracked": sum(1 for box in record["track_list"] if box)}


def write_track(output: Path, record: dict, frames: Iterable[tuple[int, np.ndarray]], num_frames: int,
                clip: Optional[Path], *, manifest: Optional[dict] = None, overwrite: bool = False) -> dict:
    """Write ``output`` (a JSON list of the one record), its frames (decoded once, straight into place) and
    clip feature beside it, and ``<output stem>.manifest.json`` (the track's confidences, cuts, warnings
    and settings) when `manifest` is given.

    Frames go to ``Artemis_data/<stem>/frames`` and the feature to ``Artemis_data/<stem>/clip_feature``
    next to `output`; the record's paths are rewritten relative to that ``Artemis_data``. Returns the
    written record. An existing output is refused unless `overwrite`."""
    from artemis_cli.common.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
    from artemis_cli.errors import UsageError

    output = Path(output)
    if output.exists() and not overwrite:
        raise UsageError(f"{output} already exists", hint="pass --overwrite to replace it, or choose another -o")
    stem = output.stem
    data = output.parent / "Artemis_data" / stem
    record = dict(record, frame_path=f"{stem}/frames")
    write_frames(data / "frames", frames, num_frames)
    clip_name = f"{record['video_name']}.pkl"
    record["clip_path"] = f"{stem}/clip_feature/{clip_name}"
    if clip is not None:
        atomic_write_bytes(data / "clip_feature" / clip_name, Path(clip).read_bytes())
    if manifest is not None:
        atomic_write_json(manifest_path(output), manifest)
    atomic_write_text(output, json.dumps([record], indent=2, ensure_ascii=False) + "\n")
    return record


def manifest_path(output: Path) -> Path:
    """``track.json`` -> ``track.manifest.json``: what the track's record does not say (confidences per
    state, cuts, decoding warnings, settings)."""
    return Path(output).with_name(f"{Path(output).stem}.manifest.json")
