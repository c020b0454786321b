"""What the page shows of a video: its frame count and size, one frame for the box editor, the frames
of the track preview with their boxes drawn, and the box read back from the editor in video pixels.

Frames are read with PyAV in decode order, the order the own-video library indexes them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from artemis_cli.errors import InputError, UsageError

BOX_COLOUR = (255, 40, 40)
EDITOR_MIN_WIDTH = 640  # px: smaller frames are enlarged for drawing


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    width: int
    height: int
    fps: Optional[float] = None


def _named(path: Path, exc: InputError) -> InputError:
    """The error with the file named by its name only (the page never shows server paths)."""
    return InputError(exc.message.replace(str(path), path.name), hint=exc.hint)


def probe_video(path: Path) -> VideoInfo:
    """Count the frames (by decoding: container headers are often wrong) and read their size, frame by frame
    (`ownvideo.video`, the reader the tracker uses). Raises `InputError` for a file that is not a decodable
    video or has no frames."""
    from artemis_cli.ownvideo.video import DecodeReport, iter_frames, probe

    path = Path(path)
    try:
        info = probe(path)
        report = DecodeReport()
        for _ in iter_frames(info, report):
            pass
    except InputError as exc:
        raise _named(path, exc) from None
    except UsageError:  # not a file of a video kind
        raise InputError(f"{path.name} is not a video that can be decoded",
                         hint="upload an .mp4, .avi, .mov, .mkv or .webm video") from None
    return VideoInfo(report.decoded, *info.frame_size)


BROWSER_CODECS = {".mp4": ("h264", "av1"), ".m4v": ("h264",), ".webm": ("vp8", "vp9", "av1")}
PLAYER_WIDTH = 640  # px: the player's copy of a video the browser cannot play is scaled to this
FOLDER_FPS = 10.0  # frames a second the player shows a folder of frames at (images carry no rate)


def ingest(path: Path, folder: Path) -> tuple[VideoInfo, Path]:
    """(its frame count and size, a file the page's player can play) for an uploaded video or frame folder, in
    one pass: the upload itself when the browser plays it (H.264 / VP9 / AV1 in mp4 or webm), else an H.264
    copy (at most `PLAYER_WIDTH` px wide; a frame folder at `FOLDER_FPS`) written into `folder` while the
    frames are counted."""
    import av

    from artemis_cli.ownvideo.video import DecodeReport, iter_frames, probe

    path = Path(path)
    try:
        info = probe(path)
        codec = None
        if not info.folder:
            with av.open(str(path)) as container:
                codec = container.streams.video[0].codec_context.name
    except UsageError:  # not a file of a video kind
        raise InputError(f"{path.name} is not a video that can be decoded",
                         hint="upload an .mp4, .avi, .mov, .mkv or .webm video, or a folder of frame images") from None
    except InputError as exc:
        raise _named(path, exc) from None
    playable = codec is not None and codec in BROWSER_CODECS.get(path.suffix.lower(), ())
    copy = None
    if not playable:
        from artemis_cli.ownvideo.preview import Mp4Writer

        width, height = info.frame_size
        scale = min(1.0, PLAYER_WIDTH / width)
        size = (max(2, int(width * scale)) // 2 * 2, max(2, int(height * scale)) // 2 * 2)
        copy = Mp4Writer(folder / f"{path.stem}.player.mp4", size, info.fps or (FOLDER_FPS if info.folder else 25.0))
    report = DecodeReport()
    try:
        for frame in iter_frames(info, report):
            if copy is not None:
                copy.write(frame.bgr(copy.size)[:, :, ::-1])  # RGB
    except InputError as exc:
        if copy is not None:
            copy.abort()
        raise _named(path, exc) from None
    player = path if copy is None else copy.close()
    return VideoInfo(report.decoded, *info.frame_size, info.fps), player


def sort_frame_images(files: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """(the image files of an uploaded folder of frames, in frame order; the names of the other files, left
    out). No image, or two images of one name (from sub-folders), is an `InputError`."""
    from artemis_cli.ownvideo.video import IMAGE_SUFFIXES, frame_order

    images: list[Path] = []
    others: list[str] = []
    for file in map(Path, files):  # one pass: a folder may hold tens of thousands of frames
        if file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith("."):
            images.append(file)
        else:
            others.append(file.name)
    others.sort()
    if not images:
        raise InputError("the uploaded folder has no frame images", hint=f"a folder of frames holds images "
                         f"({', '.join(IMAGE_SUFFIXES)}), one per frame, named in frame order")
    seen: set[str] = set()
    for image in images:
        if image.name in seen:
            raise InputError(f"two images named {image.name} in the uploaded folder (from sub-folders?)",
                             hint="upload one folder holding the frames themselves")
        seen.add(image.name)
    return sorted(images, key=lambda f: frame_order(f.name)), others


def read_frames(path: Path, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """Frames `indices` (0-based, decode order) as [H, W, 3] uint8 RGB arrays, in one pass."""
    from artemis_cli.ownvideo.video import iter_selected, probe

    path = Path(path)
    try:
        return dict(iter_selected(probe(path), indices))
    except InputError as exc:
        raise _named(path, exc) from None


def editor_scale(info: VideoInfo, min_width: int = EDITOR_MIN_WIDTH) -> int:
    """How many times the box editor's image is the video frame: the editor shows an image at its own size
    or smaller, never larger, so a small video (the sample's 96x64) is enlarged here, by a whole factor."""
    return max(1, min_width // max(info.width, 1))


def editor_image(frame: np.ndarray, scale: int) -> np.ndarray:
    """`frame` [H, W, 3] enlarged `scale` times by repeating pixels (sharp edges to draw on)."""
    if scale == 1:
        return frame
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)  # [H*s, W*s, 3]


def editor_box(value: Optional[dict], info: VideoInfo, scale: int = 1) -> tuple[float, float, float, float]:
    """The one box of the box editor's value, in video pixels, clipped to the frame.

    The editor scales boxes back from the size it shows its image at to the image's pixels; the image is
    the frame enlarged `scale` times, so dividing by `scale` gives video pixels (to 0.01 px). No box is a
    `UsageError` for the page."""
    boxes = (value or {}).get("boxes") or []
    if not boxes:
        raise UsageError("no box drawn: drag a box around the target on the frame first")
    box = boxes[-1]  # single_box: a new box replaces the old one; keep the newest if several arrive
    x1, x2 = sorted((round(float(box["xmin"]) / scale, 2), round(float(box["xmax"]) / scale, 2)))
    y1, y2 = sorted((round(float(box["ymin"]) / scale, 2), round(float(box["ymax"]) / scale, 2)))
    x1, x2 = max(0.0, x1), min(float(info.width), x2)
    y1, y2 = max(0.0, y1), min(float(info.height), y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise UsageError(f"the box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is empty inside the {info.width}x{info.height} frame",
                         hint="draw a larger box")
    return (x1, y1, x2, y2)


def draw_box(image: np.ndarray, box: Sequence[float], label: str = "", colour=BOX_COLOUR) -> np.ndarray:
    """A copy of `image` with `box` (x1, y1, x2, y2) outlined and an optional label above it."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    width = max(2, round(min(picture.size) / 45))  # still visible on a gallery thumbnail
    if box:
        draw.rectangle([float(v) for v in box], outline=colour, width=width)
    if label:
        x, y = (box[0], max(0.0, box[1] - 12)) if box else (2, 2)
        draw.text((x, y), label, fill=colour)
    return np.asarray(picture)
