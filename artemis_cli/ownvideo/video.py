"""Reading one video (a file or a folder of frames) frame by frame, within limits, for tracking.

`probe` checks the input up front (a regular file or a folder; FIFOs and devices are refused, as they
would block or never end) and reads what the header says. `iter_frames` then decodes frame by frame:
nothing is kept but the frame being handed out, so memory does not grow with the video's length, and the
work is bounded (`VideoLimits`: frames, pixels per frame, frames x pixels), with a clear error past the
bound. Damage is reported, not hidden: decoder errors and a frame count short of the header become
warnings in `DecodeReport`, shown in the summaries and kept in the track's manifest.

Files go through PyAV (what `features extract` falls back to) in decode order; a folder's images are
sorted numerically by file name, as `features extract --frames` reads them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from artemis_cli.errors import InputError, UsageError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".gif")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
HEADER_SLACK = 2  # frames a decoder may legitimately drop against the header (a trailing B-frame)
_HASHES: dict[tuple, str] = {}


@dataclass(frozen=True)
class VideoLimits:
    """The most work one video may cause. The defaults admit an hour at 30 fps, 4K frames, and about
    20 minutes of 1080p (or 45 of 720p) in all; `serve` passes tighter ones per request."""

    max_frames: int = 108_000
    max_frame_pixels: int = 3840 * 2160
    max_pixel_frames: float = 4e10

    def check_size(self, video: Path, width: int, height: int) -> None:
        if width * height > self.max_frame_pixels:
            raise InputError(f"{video}: frames of {width}x{height} px are over the limit of "
                             f"{self.max_frame_pixels / 1e6:.1f} megapixels",
                             hint="downscale the video first (e.g. to 1920 px wide)")

    def check_count(self, video: Path, frames: int, width: int, height: int, *, header: bool = False) -> None:
        said = "its header says" if header else "it has"
        if frames > self.max_frames:
            raise InputError(f"{video}: {said} {frames} frames, over the limit of {self.max_frames}",
                             hint="cut the part of interest out of the video first")
        if frames * width * height > self.max_pixel_frames:
            raise InputError(f"{video}: {said} {frames} frames of {width}x{height} px, over the limit of "
                             f"{self.max_pixel_frames:.3g} frame-pixels",
                             hint="cut the part of interest out, or downscale the video first")


DEFAULT_LIMITS = VideoLimits()


@dataclass
class VideoProbe:
    """What is known before decoding: the kind of input, the frame size, what the header says."""

    path: Path
    folder: bool
    frame_size: tuple[int, int]  # (width, height)
    header_frames: Optional[int]  # the container's frame count (None: not said); a folder: its images
    fps: Optional[float] = None
    files: list[Path] = field(default_factory=list)  # a folder's images, in order


@dataclass
class DecodeReport:
    """What decoding met: frames decoded, decoder errors and other damage (as warning lines)."""

    decoded: int = 0
    decode_errors: int = 0
    warnings: list[str] = field(default_factory=list)


class Frame:
    """One decoded frame, converted only as asked (full RGB, a scaled BGR copy for OpenCV, a thumbnail)."""

    def __init__(self, index: int, source):
        self.index = index
        self._source = source  # an av.VideoFrame, or an RGB [H, W, 3] uint8 array (a folder's image)

    def thumbnail(self, size: tuple[int, int]) -> np.ndarray:
        """A small BGR copy for whole-picture comparisons (shot cuts), area-averaged straight from the decoder.
        Always made the same way: consecutive thumbnails made two ways differ on a finely textured picture by
        more than a cut's threshold (a tracked frame's scaled copy against the decoder's scaling did)."""
        import cv2

        if isinstance(self._source, np.ndarray):
            return cv2.resize(cv2.cvtColor(self._source, cv2.COLOR_RGB2BGR), tuple(size), interpolation=cv2.INTER_AREA)
        return self._source.reformat(width=size[0], height=size[1], format="bgr24", interpolation="AREA").to_ndarray()

    def rgb(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB at full size."""
        if isinstance(self._source, np.ndarray):
            return self._source
        return self._source.to_ndarray(format="rgb24")

    def bgr(self, size: Optional[tuple[int, int]] = None) -> np.ndarray:
        """[h, w, 3] uint8 BGR, scaled to `size` (w, h) with area averaging when given."""
        import cv2

        if isinstance(self._source, np.ndarray):
            image = cv2.cvtColor(self._source, cv2.COLOR_RGB2BGR)
        else:
            image = self._source.to_ndarray(format="bgr24")
        if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
            image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)
        return image


def frame_order(name: str) -> tuple:
    """The sort key of a frame folder's file names: digit runs by value (``2.jpg`` before ``10.jpg``)."""
    from artemis_cli.features.decoding import natural_key

    return natural_key(name)


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder, in numeric order; none is an `InputError`, and anything but a
    regular file among them (a FIFO named 00001.jpg would block) a `UsageError`."""
    try:
        entries = [entry for entry in os.scandir(folder)
                   if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".")]
    except OSError as exc:
        raise InputError(f"{folder}: cannot list the frame folder ({exc.strerror or exc})") from None
    if not entries:
        raise InputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the frame folder",
                         hint="VIDEO is a video file or a folder of frame images")
    for entry in entries:
        if not entry.is_file(follow_symlinks=True):
            raise UsageError(f"{folder / entry.name}: not a regular file (a FIFO, device or folder)")
    return [folder / name for name in sorted((entry.name for entry in entries), key=frame_order)]


def check_video_path(video: Path) -> None:
    """A missing path, a file of an unknown kind, or anything but a regular file or a folder (a FIFO,
    `/dev/zero`: reading those blocks or never ends) is a `UsageError` (exit 2)."""
    video = Path(video)
    try:
        mode = os.stat(video).st_mode
    except FileNotFoundError:
        raise UsageError(f"{video}: no such video file or frame folder") from None
    except OSError as exc:
        raise UsageError(f"{video}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        return
    if not stat.S_ISREG(mode):
        raise UsageError(f"{video}: not a regular file (a FIFO, socket or device): VIDEO must be a video file or "
                         "a folder of frames")
    if video.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"{video}: not a video file ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")


def content_hash(video: Path) -> str:
    """sha256 over a video file's bytes, or over each image of a frame folder as (name, size, bytes), so
    no two different folders hash alike; memoised by path, mtime and size."""
    video = Path(video)
    info = video.stat()
    key = (str(video.resolve()), info.st_mtime_ns, info.st_size)
    files = frame_files(video) if video.is_dir() else [video]
    if video.is_dir():
        key += tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    if key in _HASHES:
        return _HASHES[key]
    digest = hashlib.sha256()
    for path in files:
        if video.is_dir():
            name = path.name.encode("utf-8")
            digest.update(len(name).to_bytes(8, "little") + name + path.stat().st_size.to_bytes(8, "little"))
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def _av():
    try:
        import av
    except ImportError:
        raise UsageError("reading video files needs PyAV", hint="pip install 'artemis[video]'") from None
    return av


def _first_line(exc: BaseException, path: Optional[Path] = None) -> str:
    """The error's message on one line, at most 200 characters, naming the file by its name only."""
    text = " ".join(str(exc).split())
    if path is not None:
        text = text.replace(f"'{path}'", f"'{Path(path).name}'").replace(str(path), Path(path).name)
    return text[:200] or type(exc).__name__


def probe(video: Path, limits: VideoLimits = DEFAULT_LIMITS) -> VideoProbe:
    """Check `video` and read its header (size, frame count, fps); refuse what is over `limits`."""
    video = Path(video)
    check_video_path(video)
    if video.is_dir():
        from PIL import Image, UnidentifiedImageError

        files = frame_files(video)
        try:
            with Image.open(files[0]) as image:
                size = image.size
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{files[0]}: cannot read the frame ({type(exc).__name__})") from None
        limits.check_size(video, *size)
        limits.check_count(video, len(files), *size)
        return VideoProbe(video, True, (int(size[0]), int(size[1])), len(files), files=files)
    av = _av()
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise InputError(f"{video}: no video stream")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
            header = int(stream.frames) if stream.frames else None
            fps = float(stream.average_rate) if stream.average_rate else None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{video}: cannot decode the video ({_first_line(exc, video)})",
                         hint="check the file plays; re-encode it (e.g. to H.264 .mp4) if it does not") from None
    if width <= 0 or height <= 0:
        raise InputError(f"{video}: the video stream has no frame size")
    limits.check_size(video, width, height)
    if header:
        limits.check_count(video, header, width, height, header=True)
    return VideoProbe(video, False, (width, height), header, fps)


def iter_frames(info: VideoProbe, report: DecodeReport, *, limits: VideoLimits = DEFAULT_LIMITS,
                stop_after: Optional[int] = None, check: Optional[Callable[[int], None]] = None) -> Iterator[Frame]:
    """Every frame of the video in order, one at a time, up to frame `stop_after` (inclusive).

    Decoder errors and a truncated stream are counted in `report` (warnings, not failures) as long as some
    frames decode; none at all is an `InputError`. Past `limits` an `InputError` stops it. `check(index)` is
    called before each frame is handed out (a caller's deadline or cancel: it raises to stop)."""
    width, height = info.frame_size
    if info.folder:
        yield from _iter_folder(info, report, limits, stop_after, check)
        return
    av = _av()
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    index = -1
    try:
        # not thread-local: with frame threading the decoder reports from its own threads
        with av.logging.Capture(local=False) as logs, av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for decoded in container.decode(stream):
                    index += 1
                    if decoded.width != width or decoded.height != height:
                        raise InputError(f"{info.path}: frame {index} is {decoded.width}x{decoded.height} px, the "
                                         f"video {width}x{height}: the size changes mid-stream",
                                         hint="re-encode it at one size")
                    limits.check_count(info.path, index + 1, width, height)
                    if check is not None:
                        check(index)
                    report.decoded = index + 1
                    yield Frame(index, decoded)
                    if stop_after is not None and index >= stop_after:
                        return
            except av.FFmpegError as exc:
                if index < 0:
                    raise InputError(f"{info.path}: cannot decode the video ({_first_line(exc, info.path)})",
                                     hint="check the file plays; re-encode it (e.g. to H.264 .mp4)") from None
                report.warnings.append(f"decoding stopped after frame {index} ({_first_line(exc, info.path)}): the rest of "
                                       "the file is damaged or missing")
            errors = [message for lvl, _, message in logs if lvl <= av.logging.ERROR]
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{info.path}: cannot decode the video ({_first_line(exc, info.path)})",
                         hint="check the file plays; re-encode it (e.g. to H.264 .mp4)") from None
    finally:
        av.logging.set_level(level)
    if index < 0:
        raise InputError(f"{info.path}: no decodable video frames")
    if errors:
        report.decode_errors += len(errors)
        report.warnings.append(f"{len(errors)} decoder error(s) (first: {' '.join(errors[0].split())[:120]!r}): some "
                               "frames may be damaged")
    if stop_after is None and info.header_frames and report.decoded < info.header_frames - HEADER_SLACK:
        report.warnings.append(f"the header says {info.header_frames} frames but {report.decoded} decoded: the file is "
                               "truncated or damaged")


def read_ahead(items: Iterable, prepare: Callable, depth: int = 8) -> Iterator:
    """`prepare(item)` of each of `items`, in order, computed up to `depth` items ahead on a thread of its own
    (decoding and scaling release the GIL: they run while the caller tracks). What the thread raises is
    raised here, in order; when the caller stops early, the thread stops at its next item."""
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((prepare(item), None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the caller, in order
            put((done, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator (a decoder holding its file) ends on this thread
                close()

    thread = threading.Thread(target=work, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            value, error = ready.get()
            if error is not None:
                raise error
            if value is done:
                return
            yield value
    finally:
        stop.set()


def _iter_folder(info: VideoProbe, report: DecodeReport, limits: VideoLimits, stop_after: Optional[int],
                 check: Optional[Callable[[int], None]]) -> Iterator[Frame]:
    from PIL import Image, UnidentifiedImageError

    width, height = info.frame_size
    for index, path in enumerate(info.files):
        if check is not None:
            check(index)
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the frame ({type(exc).__name__})") from None
        if array.shape[:2] != (height, width):
            raise InputError(f"{info.path}: the frames have different sizes ({path.name} is "
                             f"{array.shape[1]}x{array.shape[0]}, the first {width}x{height})")
        report.decoded = index + 1
        yield Frame(index, array)
        if stop_after is not None and index >= stop_after:
            return


def check_box(box, frame_size: tuple[int, int], frame: int, min_side: float = 4.0) -> tuple[float, float, float, float]:
    """The user's box as floats; outside the frame, not x1 < x2, y1 < y2, or under `min_side` px on a side
    (too small to track or to see) is a `UsageError`."""
    width, height = frame_size
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise UsageError(f"--box {box!r}: expected four numbers X1,Y1,X2,Y2") from None
    if not all(np.isfinite([x1, y1, x2, y2])):
        raise UsageError(f"--box {box!r}: the coordinates must be finite numbers")
    shown = f"{x1:g},{y1:g},{x2:g},{y2:g}"
    if not (x1 < x2 and y1 < y2):
        raise UsageError(f"--box {shown}: needs x1 < x2 and y1 < y2",
                         hint="the box is X1,Y1,X2,Y2 (top-left and bottom-right corners), not X,Y,W,H")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise UsageError(f"--box {shown}: outside frame {frame} ({width}x{height} px)",
                         hint="give the box in pixels of the key frame")
    if x2 - x1 < min_side or y2 - y1 < min_side:
        raise UsageError(f"--box {shown}: {x2 - x1:g}x{y2 - y1:g} px is too small to track (at least "
                         f"{min_side:g} px a side)", hint="draw the box around the whole target")
    return x1, y1, x2, y2


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"X1,Y1,X2,Y2"`` -> four floats (a `UsageError` otherwise)."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)):
        raise UsageError(f"--box {text!r}: expected four numbers X1,Y1,X2,Y2")
    return values  # type: ignore[return-value]


def default_cache_dir() -> Path:
    """``$ARTEMIS_CACHE`` or ``~/.cache/artemis``."""
    return Path(os.environ.get("ARTEMIS_CACHE") or Path.home() / ".cache" / "artemis").expanduser()


def iter_selected(info: VideoProbe, numbers, *, limits: VideoLimits = DEFAULT_LIMITS,
                  check: Optional[Callable[[int], None]] = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB [H, W, 3]) of the frames `numbers`, in order, one at a time: a folder's images are
    read directly; a file is decoded up to the last one wanted (nothing else is converted or kept). A frame
    that cannot be had is an `InputError`."""
    wanted = sorted(set(int(n) for n in numbers))
    if not wanted:
        return
    if info.folder:
        for number in wanted:
            if number >= len(info.files):
                raise InputError(f"{info.path}: frame {number} does not exist ({len(info.files)} frames)")
            single = VideoProbe(info.path, True, info.frame_size, 1, files=[info.files[number]])
            for frame in _iter_folder(single, DecodeReport(), limits, None, check):
                yield number, frame.rgb()
        return
    pending = set(wanted)
    for frame in iter_frames(info, DecodeReport(), limits=limits, stop_after=wanted[-1], check=check):
        if frame.index in pending:
            pending.discard(frame.index)
            yield frame.index, frame.rgb()
    if pending:
        raise InputError(f"{info.path}: frame {min(pending)} could not be decoded", hint="pick an earlier frame")
