"""Synthetic videos for the sample dataset: a textured background with coloured boxes that move.

Each target's true box per frame is known, so the sample's track lists and captions are exact.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from artemis_cli.errors import ArtemisError

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 180, 60), "yellow": (230, 200, 40)}
Motion = Literal["free", "classes"]
# The nine motions a caption can name (`Target.motion`), as the sign of the x and y displacement.
MOTIONS = {"to the left": (-1, 0), "to the right": (1, 0), "upwards": (0, -1), "downwards": (0, 1),
           "to the left and upwards": (-1, -1), "to the left and downwards": (-1, 1),
           "to the right and upwards": (1, -1), "to the right and downwards": (1, 1), "around in place": (0, 0)}
MIN_TRAVEL = 4  # pixels of centre displacement below which a box "moves around in place" (per axis)
CLASS_TRAVEL = (0.45, 0.9)  # "classes": a moving axis travels this fraction of the room the frame leaves


@dataclass
class Target:
    colour: str
    boxes: list[list[int]]  # per frame [x1, y1, x2, y2] in pixels

    def motion(self) -> str:
        """A caption of how the target moves, read off its first and last box."""
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = self.boxes[0], self.boxes[-1]
        dx = (bx1 + bx2 - ax1 - ax2) / 2
        dy = (by1 + by2 - ay1 - ay2) / 2
        parts = []
        if abs(dx) >= MIN_TRAVEL:
            parts.append("to the right" if dx > 0 else "to the left")
        if abs(dy) >= MIN_TRAVEL:
            parts.append("downwards" if dy > 0 else "upwards")
        where = " and ".join(parts) if parts else "around in place"
        return f"The {self.colour} box moves {where} across the scene."


@dataclass
class SyntheticVideo:
    frames: np.ndarray  # [T, H, W, 3] uint8
    targets: list[Target]


def make_video(rng: np.random.Generator, n_frames: int, width: int, height: int, n_targets: int,
               motion: Motion = "free") -> SyntheticVideo:
    """A smooth textured background (compresses well) with `n_targets` boxes moving in straight lines.

    `motion` "free": each box goes from one random place to another (most captions are diagonal).
    "classes": each box of a video gets its own colour and its own one of the nine caption motions
    (`MOTIONS`), moved far enough that the caption is unambiguous, and no two boxes ever overlap
    (`class_paths`): the caption of a box is then a function of what is inside it across the video."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    background = np.stack([
        110 + 60 * np.sin(xx / width * 2 * np.pi + phase[0]) * np.cos(yy / height * np.pi + phase[1]),
        120 + 50 * np.cos(xx / width * np.pi + phase[2]),
        130 + 40 * np.sin(yy / height * 2 * np.pi),
    ], axis=-1)
    frames = np.repeat(background[None], n_frames, axis=0)
    targets = []
    colour_names = list(COLOURS)
    if motion == "classes":
        paths = class_paths(rng, n_frames, width, height, n_targets)
    elif motion == "free":
        paths = []
        for k in range(n_targets):
            colour = colour_names[(k + int(rng.integers(len(colour_names)))) % len(colour_names)]
            bw, bh = int(rng.integers(width // 6, width // 4)), int(rng.integers(height // 5, height // 3))
            start = np.array([rng.uniform(0, width - bw), rng.uniform(0, height - bh)])
            end = np.array([rng.uniform(0, width - bw), rng.uniform(0, height - bh)])
            paths.append((colour, _straight_boxes(start, end, bw, bh, n_frames)))
    else:
        raise ValueError(f"motion must be 'free' or 'classes', got {motion!r}")
    for colour, boxes in paths:
        for t, (x1, y1, x2, y2) in enumerate(boxes):
            frames[t, y1:y2, x1:x2] = COLOURS[colour]
        targets.append(Target(colour, boxes))
    noise = rng.normal(0, 3, size=frames.shape)
    return SyntheticVideo(np.clip(frames + noise, 0, 255).astype(np.uint8), targets)


def _straight_boxes(start, end, bw: int, bh: int, n_frames: int) -> list[list[int]]:
    boxes = []
    for t in range(n_frames):
        x, y = start + (end - start) * t / max(n_frames - 1, 1)
        x1, y1 = int(round(x)), int(round(y))
        boxes.append([x1, y1, x1 + bw, y1 + bh])
    return boxes


def _axis_path(rng: np.random.Generator, room: float, sign: int) -> tuple[float, float]:
    """Start and end of one axis: still (sign 0) or a travel of `CLASS_TRAVEL` of `room` in direction `sign`."""
    if sign == 0:
        start = rng.uniform(0, room)
        return start, start
    travel = rng.uniform(*CLASS_TRAVEL) * room
    start = rng.uniform(0, room - travel)
    return (start, start + travel) if sign > 0 else (start + travel, start)


def _overlap(a: list[list[int]], b: list[list[int]], margin: int = 2) -> bool:
    return any(p[0] < q[2] + margin and q[0] < p[2] + margin and p[1] < q[3] + margin and q[1] < p[3] + margin
               for p, q in zip(a, b))


def class_paths(rng: np.random.Generator, n_frames: int, width: int, height: int, n_targets: int,
                tries: int = 200) -> list[tuple[str, list[list[int]]]]:
    """(colour, boxes per frame) of `n_targets` boxes with distinct colours and distinct `MOTIONS`, that never
    overlap. Up to `tries` draws per video; the last draw is kept when none is clear of overlaps."""
    if n_targets > len(COLOURS):
        raise ValueError(f"at most {len(COLOURS)} targets (one per colour), got {n_targets}")
    names = list(MOTIONS)
    colours = rng.permutation(list(COLOURS))[:n_targets]
    motions = rng.permutation(len(names))[:n_targets]  # drawn once: redrawing them would favour easy ones
    for _ in range(tries):
        paths = []
        for colour, motion in zip(colours, motions):
            sx, sy = MOTIONS[names[motion]]
            bw, bh = int(rng.integers(width // 6, width // 4 + 1)), int(rng.integers(height // 6, height // 4 + 1))
            x0, x1 = _axis_path(rng, width - bw, sx)
            y0, y1 = _axis_path(rng, height - bh, sy)
            paths.append((str(colour), _straight_boxes(np.array([x0, y0]), np.array([x1, y1]), bw, bh, n_frames)))
        if not any(_overlap(paths[i][1], paths[j][1]) for i in range(n_targets) for j in range(i)):
            break
    return paths


TOY_SIZE = (112, 112)  # square frames: CLIP's centre crop then sees the whole frame, and boxes stay on their target
TOY_FRAMES = 24


def two_box_video(seed: int) -> SyntheticVideo:
    """A video like the toy model's training videos (`data make-sample --motion classes --size 112x112`): two
    boxes of different colours and different motions, from `seed` alone."""
    return make_video(np.random.default_rng(seed), TOY_FRAMES, *TOY_SIZE, 2, motion="classes")


def encode_mp4(frames: np.ndarray, fps: int = 8, codecs: tuple[str, ...] = ("mpeg4", "h264")) -> bytes:
    """Encode [T, H, W, 3] uint8 frames as an MPEG-4 part 2 (or H.264) `.mp4`, in memory.

    MPEG-4 part 2 comes first because its bitstream is identical from run to run; libx264's is not
    (even single-threaded), and the sample must be deterministic. `codecs` is the order to try.
    """
    try:
        import av
    except ImportError:
        raise ArtemisError("writing sample videos needs PyAV", hint="pip install 'artemis[video]'") from None
    for codec in codecs:
        buffer = io.BytesIO()
        try:
            with av.open(buffer, "w", format="mp4") as container:
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height = frames.shape[2], frames.shape[1]
                stream.pix_fmt = "yuv420p"
                for index, pixels in enumerate(frames):
                    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                    frame.pts = index
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            return buffer.getvalue()
        except (av.FFmpegError, ValueError):
            continue
    raise ArtemisError("PyAV could encode neither H.264 nor MPEG-4 video on this machine")


def save_jpeg(path: Path, image: np.ndarray, quality: int = 85) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=quality)


def make_image(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, str]:
    """A still image with one coloured box, and a caption saying where it is."""
    video = make_video(rng, 1, width, height, 1)
    target = video.targets[0]
    x1, y1, x2, y2 = target.boxes[0]
    horizontal = "left" if (x1 + x2) / 2 < width / 2 else "right"
    vertical = "top" if (y1 + y2) / 2 < height / 2 else "bottom"
    return video.frames[0], f"A {target.colour} box in the {vertical} {horizontal} of a smooth coloured background."
