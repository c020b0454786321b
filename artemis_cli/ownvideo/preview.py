"""Previews of a track, to check it by eye: the box drawn on the video (.mp4 / .gif) or a contact sheet (.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from artemis_cli.errors import UsageError

PREVIEW_SUFFIXES = (".mp4", ".gif", ".png")
SHEET_FRAMES = 16  # frames on a contact sheet
SHEET_WIDTH = 240  # px per thumbnail
KEY_COLOUR = (255, 200, 0)
TRACK_COLOUR = (0, 230, 60)
LOST_COLOUR = (230, 40, 40)


def check_preview_path(path: Optional[Path]) -> None:
    if path is not None and Path(path).suffix.lower() not in PREVIEW_SUFFIXES:
        raise UsageError(f"--preview {path}: expected a .mp4, .gif or .png file")


def _draw(image, box: Optional[Sequence[float]], label: str, key: bool, scale: float = 1.0):
    """Draw `box` (pixels of the original frame, times `scale`) and a label on `image` (RGB)."""
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(image)
    width = max(2, round(image.size[0] / 160))
    if box:
        draw.rectangle([float(v) * scale for v in box], outline=KEY_COLOUR if key else TRACK_COLOUR, width=width)
    else:
        label += " lost"
    size = max(10, image.size[0] // 24)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((4, 2), label, font=font)
    draw.rectangle([0, 0, right + 4, bottom + 2], fill=(0, 0, 0))
    draw.text((4, 2), label, fill=LOST_COLOUR if not box else (255, 255, 255), font=font)
    return image


def render_preview(path: Path, frames_dir: Path, record: dict, frame_numbers: Sequence[int], key_frame: int,
                   fps: float = 8.0) -> Path:
    """Draw the record's track on its frames and write `path` (.mp4, .gif, or a .png contact sheet)."""
    from PIL import Image

    from artemis_cli.common.atomic import atomic_write_bytes

    path = Path(path)
    check_preview_path(path)
    suffix = path.suffix.lower()
    items = list(zip(record["frame_id"], record["track_list"], frame_numbers))
    if suffix == ".png":
        tracked = [item for item in items if item[1]] or items
        step = max(1, -(-len(tracked) // SHEET_FRAMES))
        chosen = tracked[::step][:SHEET_FRAMES]
        if not any(number == key_frame for _, _, number in chosen):
            chosen = ([item for item in items if item[2] == key_frame] + chosen)[:SHEET_FRAMES]
            chosen.sort(key=lambda item: item[2])
        thumbs = []
        for name, box, number in chosen:
            with Image.open(frames_dir / name) as image:
                scale = SHEET_WIDTH / image.size[0]
                thumb = image.convert("RGB").resize((SHEET_WIDTH, max(1, round(image.size[1] * scale))))
                thumbs.append(_draw(thumb, box, f"#{number}" + (" key" if number == key_frame else ""),
                                    number == key_frame, scale))
        columns = min(4, len(thumbs))
        rows = -(-len(thumbs) // columns)
        cell_h = max(t.size[1] for t in thumbs)
        sheet = Image.new("RGB", (columns * SHEET_WIDTH, rows * cell_h), (16, 16, 16))
        for index, thumb in enumerate(thumbs):
            sheet.paste(thumb, ((index % columns) * SHEET_WIDTH, (index // columns) * cell_h))
        import io

        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
        return path
    drawn = []
    for name, box, number in items:
        with Image.open(frames_dir / name) as image:
            drawn.append(_draw(image.convert("RGB"), box, f"#{number}", number == key_frame))
    if suffix == ".gif":
        import io

        buffer = io.BytesIO()
        drawn[0].save(buffer, format="GIF", save_all=True, append_images=drawn[1:], duration=int(1000 / fps), loop=0)
        atomic_write_bytes(path, buffer.getvalue())
        return path
    from artemis_cli.data.synthetic_video import encode_mp4

    frames = np.stack([np.asarray(image) for image in drawn])  # [T, H, W, 3]
    height, width = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    atomic_write_bytes(path, encode_mp4(frames[:, :height, :width], fps=max(1, int(round(fps)))))
    return path
