"""Finding videos and reading the sampled frames: decord first, PyAV as the fallback, frame folders.

Every reader returns ``[T, H, W, 3]`` uint8 RGB for the frames `sample_frame_indices` picks, or
raises `DecodeError` with a reason fit for `failures.jsonl`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from typing import Callable, Optional

import numpy as np

from artemis_cli.errors import InputError
from artemis_cli.features.recipe import sample_frame_indices

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_DIGITS = re.compile(r"(\d+)")


class DecodeError(Exception):
    """A video or frame folder could not be read; the message is the reason recorded."""


@dataclass(frozen=True)
class VideoSource:
    """One video to extract: a file, or a folder of frame images."""

    name: str  # output file stem: the file name without its last extension, or the folder name
    path: Path
    frame_folder: bool = False


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``2.jpg`` before ``10.jpg``."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part.lower())
                 for part in _DIGITS.split(name) if part)


def list_sources(folder: Path, frames: bool = False) -> list[VideoSource]:
    """The videos in `folder` (top level, any-case suffixes) or, with `frames`, its frame folders.

    Sorted by name; hidden entries are ignored. Two videos that map to the same output name
    (``a.mp4`` and ``a.mkv``) raise `InputError`, since one would overwrite the other.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: input folder not found" if not folder.exists() else f"{folder}: not a folder")
    sources = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if frames and entry.is_dir():
            sources.append(VideoSource(entry.name, entry, frame_folder=True))
        elif not frames and entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(VideoSource(entry.stem, entry))
    seen: dict[str, Path] = {}
    clashes = []
    for source in sources:
        if source.name in seen:
            clashes.append(f"{seen[source.name].name} and {source.path.name} -> {source.name}")
        seen[source.name] = source.path
    if clashes:
        raise InputError(f"{folder}: {len(clashes)} output name clash(es): " + "; ".join(clashes[:5]),
                         hint="rename one of each pair, or extract them into separate OUTPUT folders")
    return sources


Shrink = Optional[Callable[[np.ndarray], np.ndarray]]
CHUNK = 8  # frames decoded at a time when each chunk is shrunk right away


def read_sampled_frames(source: VideoSource, num_frames: int, shrink: Shrink = None) -> tuple[np.ndarray, str]:
    """``([T, H, W, 3] uint8, reader name)`` for the frames the recipe samples from `source`. `shrink`
    ([t, H, W, 3] -> [t, h, w, 3], per frame: the nearest-neighbour squash) is applied to a few frames at a
    time as they are decoded, so the full-size frames of the whole sample never sit in memory at once (100
    frames of 720p are 280 MB); the result is the same as shrinking them all at the end."""
    if source.frame_folder:
        return read_frame_folder(source.path, num_frames, shrink), "frames"
    return decode_video(source.path, num_frames, shrink)


def decode_video(path: Path, num_frames: int, shrink: Shrink = None) -> tuple[np.ndarray, str]:
    """Decode with decord; when decord is missing or fails on this file, with PyAV."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return _decode_pyav(path, num_frames, shrink), "pyav"
    try:
        return _decode_decord(path, num_frames, shrink), "decord"
    except DecodeError as decord_error:
        try:
            return _decode_pyav(path, num_frames, shrink), "pyav"
        except DecodeError as pyav_error:
            raise DecodeError(f"decord: {decord_error}; pyav: {pyav_error}") from None


def _shrunk(frames: np.ndarray, shrink: Shrink) -> np.ndarray:
    return frames if shrink is None else shrink(frames)


def _decode_decord(path: Path, num_frames: int, shrink: Shrink = None) -> np.ndarray:
    import decord

    from artemis_cli.common.quiet import c_stderr_quiet

    try:
        with c_stderr_quiet():  # FFmpeg's own messages about a broken file; the error is raised below
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        total = len(reader)
        if total == 0:
            raise DecodeError("no video frames")
        indices = sample_frame_indices(total, num_frames)
        if shrink is None:
            return reader.get_batch(indices).asnumpy()  # [T, H, W, 3]
        chunks = [_shrunk(reader.get_batch(indices[start:start + CHUNK]).asnumpy(), shrink)
                  for start in range(0, len(indices), CHUNK)]
        return np.concatenate(chunks)  # [T, h, w, 3]
    except (RuntimeError, decord.DECORDError, IndexError, ValueError) as exc:
        raise DecodeError(_one_line(exc)) from None


def _decode_pyav(path: Path, num_frames: int, shrink: Shrink = None) -> np.ndarray:
    try:
        import av
    except ImportError:
        raise DecodeError("neither decord nor PyAV can be imported (pip install 'artemis[video]')") from None
    try:
        # Counting packets needs no decoding; it is the frame count decord reports.
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError("no video stream")
            total = sum(1 for packet in container.demux(video=0) if packet.size > 0)
        frames = _pyav_pick(path, sample_frame_indices(total, num_frames), shrink)
        if len(frames) < min(total, num_frames):
            # Fewer decodable frames than packets: sample over what actually decodes.
            with av.open(str(path)) as container:
                decoded = sum(1 for _ in container.decode(video=0))
            frames = _pyav_pick(path, sample_frame_indices(decoded, num_frames), shrink)
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise DecodeError(_one_line(exc)) from None
    if not frames:
        raise DecodeError("no decodable video frames")
    return np.stack(frames)  # [T, H, W, 3]


def _pyav_pick(path: Path, wanted: list[int], shrink: Shrink = None) -> list[np.ndarray]:
    """Decode in order, keeping the frames at `wanted` (sorted, may repeat) as RGB arrays (each shrunk)."""
    import av

    picked: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            repeats = wanted.count(index)
            if repeats:
                picked.extend([_shrunk(frame.to_ndarray(format="rgb24")[None], shrink)[0]] * repeats)
            if len(picked) == len(wanted):
                break
    return picked


def read_frame_folder(folder: Path, num_frames: int, shrink: Shrink = None) -> np.ndarray:
    """The sampled frames of a folder of images, sorted numerically by file name."""
    from PIL import Image, UnidentifiedImageError

    try:
        names = sorted((p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                        and not p.name.startswith(".")), key=natural_key)
    except OSError as exc:
        raise DecodeError(_one_line(exc)) from None
    if not names:
        raise DecodeError(f"no image files ({', '.join(IMAGE_SUFFIXES)})")
    frames = []
    for index in sample_frame_indices(len(names), num_frames):
        try:
            with Image.open(folder / names[index]) as image:
                frames.append(_shrunk(np.asarray(image.convert("RGB"))[None], shrink)[0])
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DecodeError(f"{names[index]}: {_one_line(exc)}") from None
    if len({frame.shape for frame in frames}) > 1:
        raise DecodeError("frames have different sizes")
    return np.stack(frames)  # [T, H, W, 3]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
