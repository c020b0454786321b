"""Previews of a track, to check it by eye: the box drawn on the video (.mp4 / .gif) or a contact sheet (.png).

Frames come in one at a time (`Preview.add`), so a preview of a long video is encoded as it is decoded:
an .mp4 streams into its encoder, a .gif keeps at most `GIF_FRAMES` small frames, a .png its thumbnails.
Every frame says what the track did there: the box in green (yellow on a key frame), and for a dropped
frame a red border and why (lost, ambiguous, after a cut), with the track's confidence.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from artemis_cli.errors import UsageError

PREVIEW_SUFFIXES = (".mp4", ".gif", ".png")
SHEET_FRAMES = 16  # frames on a contact sheet
SHEET_WIDTH = 240  # px per thumbnail
GIF_FRAMES = 240  # at most, evenly spread
GIF_WIDTH = 480  # px
MP4_WIDTH = 1280  # px: larger videos are scaled down for the preview
KEY_COLOUR = (255, 200, 0)
TRACK_COLOUR = (0, 230, 60)
LOW_COLOUR = (255, 140, 0)
LOST_COLOUR = (230, 40, 40)
USED_COLOUR = (40, 140, 255)  # a frame fed to the model
MP4_CODECS = ("libx264", "mpeg4")  # H.264 plays in every browser's <video>; MPEG-4 part 2 where x264 is missing


def check_preview_path(path: Optional[Path]) -> None:
    if path is not None and Path(path).suffix.lower() not in PREVIEW_SUFFIXES:
        raise UsageError(f"--preview {path}: expected a .mp4, .gif or .png file")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def draw_frame(image, box: Optional[Sequence[float]], label: str, *, key: bool, state: str = "tracked",
               confidence: float = 1.0, scale: float = 1.0, used: bool = False):
    """Draw `box` (pixels of the original frame, times `scale`) and a label on `image` (RGB, in place); a
    frame fed to the model (`used`) gets a blue frame and says so."""
    from PIL import ImageDraw

    from artemis_cli.ownvideo.integrity import WARN

    draw = ImageDraw.Draw(image)
    width = max(2, round(image.size[0] / 160))
    if used:
        draw.rectangle([width, width, image.size[0] - 1 - width, image.size[1] - 1 - width], outline=USED_COLOUR,
                       width=2 * width)
        label += " fed to the model"
    if box:
        colour = KEY_COLOUR if key else (TRACK_COLOUR if confidence >= WARN else LOW_COLOUR)
        draw.rectangle([float(v) * scale for v in box], outline=colour, width=width)
    else:
        draw.rectangle([0, 0, image.size[0] - 1, image.size[1] - 1], outline=LOST_COLOUR, width=width)
        label += f" {state.replace('-', ' ')}"
    if not key and box is not None:
        label += f" {confidence:.2f}"
    font = _font(max(10, image.size[0] // 24))
    left, top, right, bottom = draw.textbbox((4, 2), label, font=font)
    draw.rectangle([0, 0, right + 4, bottom + 2], fill=(0, 0, 0))
    draw.text((4, 2), label, fill=LOST_COLOUR if not box else (255, 255, 255), font=font)
    return image


class Mp4Writer:
    """Frames (RGB, all of `size`) encoded one at a time into an .mp4 that browsers play (H.264, the index
    first), written to a temp file beside `path` and renamed at `close`; `abort` leaves nothing."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float):
        import tempfile

        import av

        self.path, self.size = Path(path), (size[0] - size[0] % 2, size[1] - size[1] % 2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self._partial = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(handle)
        # "faststart" (the index first, so a browser plays while it loads) rewrites the file: not in memory
        self._container = av.open(self._partial, "w", format="mp4", options={"movflags": "faststart"})
        for codec in MP4_CODECS:
            try:
                self._stream = self._container.add_stream(codec, rate=max(1, int(round(fps))))
                break
            except (av.FFmpegError, ValueError):
                continue
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = "yuv420p"

    def write(self, pixels: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[:self.size[1], :self.size[0]]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> Path:
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            os.replace(self._partial, self.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        if os.path.exists(self._partial):
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - a half-written file is removed whatever state it is in
                pass
            os.unlink(self._partial)


class Preview:
    """One preview being written: `wanted` says which frame numbers it needs, `add` takes each (in order),
    `close` writes the file (atomically) and returns its path."""

    def __init__(self, path: Path, record: dict, frame_numbers: Sequence[int], key_frames: Sequence[int],
                 track: Optional[dict] = None, fps: float = 8.0, used: Sequence[int] = ()):
        check_preview_path(path)
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        self.fps = fps
        self.key_frames = set(key_frames)
        self.used = set(used)  # frames fed to the model
        states = dict(zip((track or {}).get("frames", []), (track or {}).get("states", [])))
        confidence = dict(zip((track or {}).get("frames", []), (track or {}).get("confidence", [])))
        self.items = {number: (box, states.get(number, "tracked" if box else "lost"), confidence.get(number, 1.0))
                      for number, box in zip(frame_numbers, record["track_list"])}
        numbers = list(frame_numbers)
        if self.suffix == ".png":
            tracked = [n for n in numbers if self.items[n][0]] or numbers
            chosen = tracked[::max(1, -(-len(tracked) // SHEET_FRAMES))][:SHEET_FRAMES]
            missing = [n for n in sorted(self.key_frames) if n in self.items and n not in chosen]
            chosen = sorted(set(chosen[:SHEET_FRAMES - len(missing)]) | set(missing))
            self.wanted = chosen
        elif self.suffix == ".gif":
            self.wanted = numbers[::max(1, -(-len(numbers) // GIF_FRAMES))]
        else:
            self.wanted = numbers
        self._want = set(self.wanted)
        self._images: list = []
        self._encoder = None

    def add(self, number: int, frame: np.ndarray) -> None:
        from PIL import Image

        if number not in self._want:
            return
        box, state, confidence = self.items[number]
        image = Image.fromarray(frame)
        target = {".png": SHEET_WIDTH, ".gif": GIF_WIDTH}.get(self.suffix, MP4_WIDTH)
        scale = min(1.0, target / image.size[0]) if self.suffix == ".mp4" else target / image.size[0]
        if scale != 1.0:
            image = image.resize((max(2, round(image.size[0] * scale)), max(2, round(image.size[1] * scale))))
        label = f"#{number}" + (" key" if number in self.key_frames else "")
        draw_frame(image, box, label, key=number in self.key_frames, state=state, confidence=confidence, scale=scale,
                   used=number in self.used)
        if self.suffix == ".mp4":
            if self._encoder is None:
                self._encoder = Mp4Writer(self.path, image.size, self.fps)
            self._encoder.write(np.asarray(image))
        else:
            self._images.append(image)

    def close(self) -> Path:
        from PIL import Image

        from artemis_cli.common.atomic import atomic_write_bytes

        if self.suffix == ".mp4":
            if self._encoder is None:
                raise UsageError(f"--preview {self.path}: no frame to draw")
            return self._encoder.close()
        if not self._images:
            raise UsageError(f"--preview {self.path}: no frame to draw")
        buffer = io.BytesIO()
        if self.suffix == ".gif":
            self._images[0].save(buffer, format="GIF", save_all=True, append_images=self._images[1:],
                                 duration=int(1000 / self.fps), loop=0)
        else:
            columns = min(4, len(self._images))
            rows = -(-len(self._images) // columns)
            cell_h = max(t.size[1] for t in self._images)
            sheet = Image.new("RGB", (columns * SHEET_WIDTH, rows * cell_h), (16, 16, 16))
            for index, thumb in enumerate(self._images):
                sheet.paste(thumb, ((index % columns) * SHEET_WIDTH, (index // columns) * cell_h))
            sheet.save(buffer, format="PNG")
        atomic_write_bytes(self.path, buffer.getvalue())
        return self.path


def render_preview(path: Path, prepared, key_frames: Optional[Sequence[int]] = None, used: Sequence[int] = (),
                   fps: Optional[float] = None) -> Path:
    """Draw `prepared`'s track (a `prepare.PreparedTarget`) and write `path`, decoding the frames it needs.
    `used`: the frames fed to the model (highlighted); `fps`: the preview's rate (default 8)."""
    from artemis_cli.ownvideo.video import iter_selected

    keys = key_frames if key_frames is not None else [k["frame"] for k in prepared.track.get("key_boxes", [])] or [
        prepared.target.frame]
    preview = Preview(path, prepared.record, prepared.frame_indices, keys, prepared.track, used=used,
                      **({"fps": fps} if fps else {}))
    for number, frame in iter_selected(prepared.info, preview.wanted):
        preview.add(number, frame)
    return preview.close()


def tee(frames: Iterable[tuple[int, np.ndarray]], preview: Optional[Preview]):
    """`frames` passed through, each also drawn into `preview` when it wants it (one decode for both)."""
    for number, frame in frames:
        if preview is not None:
            preview.add(number, frame)
        yield number, frame
