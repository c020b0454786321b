"""Reading one video (a file or a folder of frames) for tracking, and its content hash for the caches.

`read_frames` decodes every `stride`-th frame (and always the key frame) as RGB uint8 arrays with
their indices in the video's own frame numbering. Files go through PyAV (what `features extract`
falls back to; it decodes every frame in order, which tracking needs anyway); a folder's images are
sorted numerically by file name, as `features extract --frames` reads them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from artemis_cli.errors import InputError, UsageError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".gif")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_HASHES: dict[tuple, str] = {}


@dataclass
class VideoFrames:
    """The frames kept for tracking (`indices[i]` is the video frame number of `frames[i]`)."""

    path: Path
    frames: list[np.ndarray]  # each [H, W, 3] uint8 RGB
    indices: list[int]
    num_frames: int  # frames in the whole video
    frame_size: tuple[int, int]  # (width, height)
    fps: Optional[float] = None

    def position(self, frame: int) -> int:
        return self.indices.index(frame)


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder, in numeric order; none is an `InputError`."""
    from artemis_cli.features.decoding import natural_key

    try:
        names = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    except OSError as exc:
        raise InputError(f"{folder}: cannot list the frame folder ({exc.strerror or exc})") from None
    if not names:
        raise InputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the frame folder",
                         hint="VIDEO is a video file or a folder of frame images")
    return [folder / name for name in sorted(names, key=natural_key)]


def check_video_path(video: Path) -> None:
    """A missing path or a file of an unknown kind is a `UsageError` (exit 2)."""
    if not video.exists():
        raise UsageError(f"{video}: no such video file or frame folder")
    if video.is_file() and video.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"{video}: not a video file ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")


def content_hash(video: Path) -> str:
    """sha256 of a video file's bytes, or of a frame folder's (name, bytes) pairs; memoised by mtime."""
    video = Path(video)
    stat = video.stat()
    key = (str(video.resolve()), stat.st_mtime_ns, stat.st_size)
    if video.is_dir():
        files = frame_files(video)
        key += tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    if key in _HASHES:
        return _HASHES[key]
    digest = hashlib.sha256()
    for path in (frame_files(video) if video.is_dir() else [video]):
        if video.is_dir():
            digest.update(path.name.encode("utf-8") + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def _keep(index: int, stride: int, key_frame: int) -> bool:
    return index % stride == 0 or index == key_frame


def read_frames(video: Path, *, stride: int = 1, key_frame: int = 0,
                progress: Optional[Callable[[float], None]] = None) -> VideoFrames:
    """Every `stride`-th frame plus the key frame of `video`; undecodable input is an `InputError`.

    A key frame past the end is a `UsageError` (checked once the frame count is known)."""
    video = Path(video)
    check_video_path(video)
    if stride < 1:
        raise UsageError(f"--stride {stride}: must be >= 1")
    frames, indices, fps = [], [], None
    if video.is_dir():
        from PIL import Image, UnidentifiedImageError

        files = frame_files(video)
        total = len(files)
        for index, path in enumerate(files):
            if not _keep(index, stride, key_frame):
                continue
            try:
                with Image.open(path) as image:
                    frames.append(np.asarray(image.convert("RGB")))
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise InputError(f"{path}: cannot read the frame ({type(exc).__name__})") from None
            indices.append(index)
            if progress is not None:
                progress(len(indices) / max(1, -(-total // stride)))
        if len({frame.shape for frame in frames}) > 1:
            raise InputError(f"{video}: the frames have different sizes")
    else:
        total, fps = _decode_file(video, stride, key_frame, frames, indices, progress)
    if key_frame < 0 or key_frame >= total:
        raise UsageError(f"--frame {key_frame}: {video} has {total} frame(s) (0..{total - 1})")
    height, width = frames[0].shape[:2]
    return VideoFrames(path=video, frames=frames, indices=indices, num_frames=total, frame_size=(width, height), fps=fps)


def _decode_file(video: Path, stride: int, key_frame: int, frames: list, indices: list, progress) -> tuple[int, Optional[float]]:
    try:
        import av
    except ImportError:
        raise UsageError("reading video files needs PyAV", hint="pip install 'artemis[video]'") from None
    total, fps = 0, None
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise InputError(f"{video}: no video stream")
            stream = container.streams.video[0]
            expected = stream.frames or 0
            fps = float(stream.average_rate) if stream.average_rate else None
            for index, frame in enumerate(container.decode(video=0)):
                total = index + 1
                if _keep(index, stride, key_frame):
                    frames.append(frame.to_ndarray(format="rgb24"))
                    indices.append(index)
                if progress is not None and expected:
                    progress(min(1.0, total / expected))
    except (av.FFmpegError, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(f"{video}: cannot decode the video ({message})",
                         hint="check the file plays; re-encode it (e.g. to H.264 .mp4) if it does not") from None
    if not frames:
        raise InputError(f"{video}: no decodable video frames")
    return total, fps


def check_box(box, frame_size: tuple[int, int], frame: int) -> tuple[float, float, float, float]:
    """The user's box as floats; outside the frame or not x1 < x2, y1 < y2 is a `UsageError`."""
    width, height = frame_size
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise UsageError(f"--box {box!r}: expected four numbers X1,Y1,X2,Y2") from None
    if not (x1 < x2 and y1 < y2):
        raise UsageError(f"--box {x1:g},{y1:g},{x2:g},{y2:g}: needs x1 < x2 and y1 < y2",
                         hint="the box is X1,Y1,X2,Y2 (top-left and bottom-right corners), not X,Y,W,H")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise UsageError(f"--box {x1:g},{y1:g},{x2:g},{y2:g}: outside frame {frame} ({width}x{height} px)",
                         hint="give the box in pixels of the key frame")
    return x1, y1, x2, y2


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"X1,Y1,X2,Y2"`` -> four floats (a `UsageError` otherwise)."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise UsageError(f"--box {text!r}: expected four numbers X1,Y1,X2,Y2")
    return values  # type: ignore[return-value]


def default_cache_dir() -> Path:
    """``$ARTEMIS_CACHE`` or ``~/.cache/artemis``."""
    return Path(os.environ.get("ARTEMIS_CACHE") or Path.home() / ".cache" / "artemis").expanduser()
