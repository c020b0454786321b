"""The frames of a video at given indices: the RoI frames of the peers' benchmarks, read from their videos.

The peers ship videos, not Artemis' frame folders: VideoRefer-Bench-D and PLM-VideoBench RCap as `.mp4`
files, VideoRefer-Bench-Q as folders of frame images (DAVIS / MeViS ``JPEGImages``). Their annotations
name frames by index: the n-th decoded frame of a file, the n-th image of a folder in natural name
order (``2.jpg`` before ``10.jpg``). `VideoFrameReader` reads only the frames asked for, once each,
and is what `model.sampling.load_roi_inputs` accepts in place of a frame folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence, Union

from artemis_cli.errors import InputError, UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_DIGITS = re.compile(r"(\d+)")
FrameId = Union[int, str]


def _natural(name: str) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in _DIGITS.split(name) if part)


class VideoFrameReader:
    """Frames of one video file or frame folder by index; decoded frames are kept for the next call.

    Calling it with frame ids returns RGB PIL images in that order (what `load_roi_inputs` takes);
    `arrays` returns ``[H, W, 3]`` uint8 arrays (what the trackers take)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._frames: dict[int, object] = {}  # index -> [H, W, 3] uint8
        self._files: list[Path] | None = None

    def __call__(self, frame_ids: Sequence[FrameId]) -> list:
        from PIL import Image

        return [Image.fromarray(array) for array in self.arrays(frame_ids)]

    def arrays(self, frame_ids: Sequence[FrameId]) -> list:
        indices = [self._index(frame) for frame in frame_ids]
        missing = sorted({i for i in indices if i not in self._frames})
        if missing:
            if self.path.is_dir():
                self._read_folder(missing)
            elif self.path.is_file():
                self._decode(missing)
            else:
                raise InputError(f"{self.path}: video not found", hint="check --videos against the records' 'video'")
        return [self._frames[i] for i in indices]

    def _index(self, frame: FrameId) -> int:
        if isinstance(frame, int) or (isinstance(frame, str) and frame.isdigit()):
            return int(frame)
        raise InputError(f"{self.path}: frame id {frame!r} is not a frame index")

    def _read_folder(self, wanted: list[int]) -> None:
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        if self._files is None:
            self._files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                                  and not p.name.startswith(".")), key=lambda p: _natural(p.name))
        for index in wanted:
            if index >= len(self._files):
                raise InputError(f"{self.path}: frame {index} asked for, the folder has {len(self._files)} frame(s)")
            try:
                with Image.open(self._files[index]) as image:
                    self._frames[index] = np.asarray(image.convert("RGB"))
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise InputError(f"{self._files[index]}: cannot read the frame ({type(exc).__name__})") from None

    def _decode(self, wanted: list[int]) -> None:
        try:
            import av
        except ImportError:
            raise UsageError("reading video files needs PyAV", hint="pip install 'artemis[video]'") from None
        last, total = wanted[-1], 0
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InputError(f"{self.path}: no video stream")
                for index, frame in enumerate(container.decode(video=0)):
                    total = index + 1
                    if index in wanted:
                        self._frames[index] = frame.to_ndarray(format="rgb24")
                    if index >= last:
                        break
        except (av.FFmpegError, OSError, ValueError) as exc:
            message = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise InputError(f"{self.path}: cannot decode the video ({message})") from None
        if last >= total:
            raise InputError(f"{self.path}: frame {last} asked for, the video has {total} decodable frame(s)",
                             hint="the annotations index the video's own frames (for PLM-VideoBench: the 6 fps videos)")
