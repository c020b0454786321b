"""Generated videos for tracking: textured objects over a textured background, with known boxes.

`make_tracking_video` draws two objects: the *walker* grows by half while it crosses the frame and
passes behind a static occluder that hides part of it; the *leaver* drifts out of the right edge and
stays out. Each object's true box per frame is known (`None` once less than half of it is inside the
frame), so tracker accuracy can be measured (`benchmarks/track.py`, `tests/test_ownvideo_track.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

VISIBLE_FRACTION = 0.5  # an object with less of its area inside the frame counts as gone


@dataclass
class TrackedObject:
    name: str
    boxes: list[Optional[list[float]]]  # per frame [x1, y1, x2, y2] clipped to the frame, None when gone
    # where it is, hidden or not (None only when out of the frame or the shot): a box there is not on
    # another object, even while the object is hidden (defaults to `boxes`)
    positions: Optional[list[Optional[list[float]]]] = None

    def where(self) -> list[Optional[list[float]]]:
        return self.positions if self.positions is not None else self.boxes

    def visible_frames(self) -> list[int]:
        return [index for index, box in enumerate(self.boxes) if box is not None]


@dataclass
class TrackingVideo:
    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    objects: dict[str, TrackedObject]
    occluder: tuple[int, int, int, int]  # x1, y1, x2, y2 of the static occluder

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def _upsample(low: np.ndarray, height: int, width: int, smooth: bool) -> np.ndarray:
    import cv2

    return cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC if smooth else cv2.INTER_NEAREST)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Muted, blotchy texture with fine grain and a few darker shapes: trackers get edges to hold on to."""
    import cv2

    low = rng.uniform(70, 170, size=(max(2, height // 24), max(2, width // 24), 3)).astype(np.float32)
    image = _upsample(low, height, width, smooth=True)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        radius = int(rng.integers(max(3, height // 30), max(4, height // 10)))
        colour = tuple(float(v) for v in rng.uniform(40, 120, size=3))
        cv2.circle(image, (x, y), radius, colour, thickness=-1)
    image += rng.normal(0, 6, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255)


def _object_texture(rng: np.random.Generator, size: int, palette: np.ndarray) -> np.ndarray:
    """A square patch of saturated colour blocks with a dark border (scaled per frame)."""
    cells = rng.integers(0, len(palette), size=(5, 5))
    low = palette[cells].astype(np.float32)
    patch = _upsample(low, size, size, smooth=False)
    edge = max(1, size // 16)
    patch[:edge], patch[-edge:], patch[:, :edge], patch[:, -edge:] = 20, 20, 20, 20
    return patch


def _paste(frame: np.ndarray, patch: np.ndarray, box: tuple[float, float, float, float]) -> None:
    import cv2

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    w, h = x2 - x1, y2 - y1
    if w < 1 or h < 1:
        return
    scaled = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
    height, width = frame.shape[:2]
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    frame[fy1:fy2, fx1:fx2] = scaled[fy1 - y1:fy2 - y1, fx1 - x1:fx2 - x1]


def visible_box(box: tuple[float, float, float, float], width: int, height: int) -> Optional[list[float]]:
    """`box` clipped to the frame, or None when less than `VISIBLE_FRACTION` of it is inside."""
    x1, y1, x2, y2 = box
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    area = (x2 - x1) * (y2 - y1)
    inside = max(0.0, cx2 - cx1) * max(0.0, cy2 - cy1)
    if area <= 0 or inside < VISIBLE_FRACTION * area:
        return None
    return [round(cx1, 2), round(cy1, 2), round(cx2, 2), round(cy2, 2)]


def make_tracking_video(seed: int = 0, n_frames: int = 48, width: int = 320, height: int = 180) -> TrackingVideo:
    """A deterministic video (same seed, same pixels) with the walker and the leaver (see module doc)."""
    rng = np.random.default_rng(seed)
    background = _background(rng, width, height)
    palette_a = np.array([[230, 40, 40], [250, 220, 30], [30, 30, 200], [240, 240, 240]], dtype=np.float32)
    palette_b = np.array([[40, 200, 60], [200, 40, 200], [20, 20, 20], [250, 150, 30]], dtype=np.float32)
    base = int(height * 0.22)
    walker = _object_texture(rng, 64, palette_a)
    leaver = _object_texture(rng, 64, palette_b)
    # The occluder: a textured vertical bar in the walker's path, covering part of its height.
    occ_w = max(4, int(width * 0.05))
    occ_x1 = int(width * 0.5)
    occ_y1 = int(height * 0.30)
    occluder = (occ_x1, occ_y1, occ_x1 + occ_w, int(height * 0.62))
    occ_texture = rng.uniform(90, 140, size=(occluder[3] - occluder[1], occ_w, 3)).astype(np.float32)

    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    walker_boxes, leaver_boxes = [], []
    last = max(n_frames - 1, 1)
    for t in range(n_frames):
        frame = background.copy()
        progress = t / last
        # Walker: left to right through the occluder, growing from `base` to 1.5 x `base`.
        size = base * (1.0 + 0.5 * progress)
        cx = width * (0.18 + 0.64 * progress)
        cy = height * (0.45 + 0.08 * np.sin(progress * np.pi))
        walker_box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
        # Leaver: from the right third, out of the right edge by 70% of the video, then gone.
        lsize = base * 0.9
        lx = width * (0.62 + 0.6 * progress)
        ly = height * (0.78 - 0.1 * progress)
        leaver_box = (lx - lsize / 2, ly - lsize / 2, lx + lsize / 2, ly + lsize / 2)
        _paste(frame, leaver, leaver_box)
        _paste(frame, walker, walker_box)
        frame[occluder[1]:occluder[3], occluder[0]:occluder[2]] = occ_texture
        frame += rng.normal(0, 3, size=frame.shape).astype(np.float32)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
        walker_boxes.append(visible_box(walker_box, width, height))
        leaver_boxes.append(visible_box(leaver_box, width, height))
    objects = {"walker": TrackedObject("walker", walker_boxes), "leaver": TrackedObject("leaver", leaver_boxes)}
    return TrackingVideo(frames=frames, objects=objects, occluder=occluder)


def box_iou(a, b) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def save_video(video: TrackingVideo, path: Path, fps: int = 10) -> Path:
    """Write the frames as an `.mp4` (see `synthetic_video.encode_mp4`) or, for a folder path, JPEGs."""
    from artemis_cli.data.synthetic_video import encode_mp4, save_jpeg

    path = Path(path)
    if path.suffix.lower() == ".mp4":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_mp4(video.frames, fps=fps))
        return path
    path.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(video.frames):
        save_jpeg(path / f"{index:05d}.jpg", frame, quality=92)
    return path


# ---- scenarios a tracker must not get wrong (tests/test_ownvideo_integrity.py, benchmarks/track.py) ------
SCENARIOS = ("lookalike", "hidden", "cut")


def _covered_fraction(box, cover) -> float:
    """How much of `box` the box `cover` hides."""
    ix = max(0.0, min(box[2], cover[2]) - max(box[0], cover[0]))
    iy = max(0.0, min(box[3], cover[3]) - max(box[1], cover[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return ix * iy / area if area > 0 else 0.0


def make_scenario(name: str, seed: int = 0, n_frames: int = 60, width: int = 320, height: int = 180) -> TrackingVideo:
    """A generated video with a trap for trackers, and the true box of each object per frame (None when it
    is gone or more than half hidden). The object to track is always ``target``:

    - ``lookalike``: a ``twin`` with the target's very texture walks the other way and crosses in front
      of it mid-video (a tracker that follows the twin has switched identity);
    - ``hidden``: the target walks behind a wide wall that hides it completely for a while, then comes out;
    - ``cut``: half-way the shot cuts to another scene that holds a ``twin`` (same texture) elsewhere;
      the target is not in the second shot (None there).
    """
    if name not in SCENARIOS:
        raise ValueError(f"scenario {name!r}: expected one of {', '.join(SCENARIOS)}")
    rng = np.random.default_rng(seed)
    palette = np.array([[230, 40, 40], [250, 220, 30], [30, 30, 200], [240, 240, 240]], dtype=np.float32)
    backgrounds = [_background(rng, width, height), _background(rng, width, height)]
    texture = _object_texture(rng, 64, palette)
    size = int(height * 0.24)
    last = max(n_frames - 1, 1)
    wall = (int(width * 0.42), 0, int(width * 0.58), height)
    wall_texture = rng.uniform(60, 110, size=(height, wall[2] - wall[0], 3)).astype(np.float32)
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    target_boxes: list[Optional[list[float]]] = []
    target_positions: list[Optional[list[float]]] = []
    twin_boxes: list[Optional[list[float]]] = []
    for t in range(n_frames):
        progress = t / last
        second_shot = name == "cut" and t >= n_frames // 2
        frame = backgrounds[1 if second_shot else 0].copy()
        cx = width * (0.15 + 0.7 * progress)
        cy = height * (0.5 + 0.06 * np.sin(progress * 2 * np.pi))
        target = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
        twin = None
        if name == "lookalike":
            tx = width * (0.85 - 0.7 * progress)
            twin = (tx - size / 2, cy + 2 - size / 2, tx + size / 2, cy + 2 + size / 2)
        elif second_shot:
            tx, ty, ts = width * (0.3 + 0.3 * progress), height * 0.35, size * 1.1
            twin = (tx - ts / 2, ty - ts / 2, tx + ts / 2, ty + ts / 2)
        if not second_shot:
            _paste(frame, texture, target)
        if twin is not None:
            _paste(frame, texture, twin)  # in front of the target
        if name == "hidden":
            frame[:, wall[0]:wall[2]] = wall_texture
        frame += rng.normal(0, 3, size=frame.shape).astype(np.float32)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
        visible = None if second_shot else visible_box(target, width, height)
        target_positions.append(visible)
        cover = twin if name == "lookalike" else (wall if name == "hidden" else None)
        if visible is not None and cover is not None and _covered_fraction(target, cover) > 0.5:
            visible = None
        target_boxes.append(visible)
        twin_boxes.append(visible_box(twin, width, height) if twin is not None else None)
    objects = {"target": TrackedObject("target", target_boxes, target_positions)}
    if name in ("lookalike", "cut"):
        objects["twin"] = TrackedObject("twin", twin_boxes)
    return TrackingVideo(frames=frames, objects=objects, occluder=wall if name == "hidden" else (0, 0, 0, 0))


def track_errors(boxes, target: TrackedObject, iou: float = 0.3) -> dict:
    """How a track compares with the truth: frames where a box is reported away from the target (on
    another object, or on anything once the target left the frame or the shot), frames where the target is
    visible and a box is on it, and that coverage of its visible frames."""
    wrong = covered = 0
    truth, where = target.boxes, target.where()
    for frame, box in enumerate(boxes):
        if box is None:
            continue
        if truth[frame] is not None and box_iou(box, truth[frame]) >= iou:
            covered += 1
        elif where[frame] is None or box_iou(box, where[frame]) < iou:
            wrong += 1
    visible = sum(1 for box in truth if box is not None)
    return {"wrong": wrong, "covered": covered, "visible": visible, "reported": sum(b is not None for b in boxes),
            "coverage": covered / visible if visible else 0.0}


def write_long_video(path: Path, *, seconds: float, width: int = 1280, height: int = 720, fps: int = 30,
                     seed: int = 0, codec: str = "h264") -> TrackedObject:
    """Encode a long video frame by frame (nothing held but the frame at hand) with one textured target
    wandering over a textured background; returns the target's true box per frame. For the memory and
    latency benchmarks of the own-video path (benchmarks/ownvideo.py) and the long-video test."""
    import av

    rng = np.random.default_rng(seed)
    background = _background(rng, width, height).astype(np.uint8)
    palette = np.array([[230, 40, 40], [250, 220, 30], [30, 30, 200], [240, 240, 240]], dtype=np.float32)
    texture = _object_texture(rng, 64, palette)
    size = int(height * 0.2)
    frames = int(round(seconds * fps))
    boxes: list[Optional[list[float]]] = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            phase = 2 * np.pi * t / max(frames, 1)
            cx = width * (0.5 + 0.35 * np.sin(phase * 3))
            cy = height * (0.5 + 0.3 * np.sin(phase * 2 + 1))
            box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
            frame = background.copy()
            _paste(frame, texture, box)
            boxes.append(visible_box(box, width, height))
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return TrackedObject("target", boxes)
