"""What `artemis web --demo` serves (nothing downloaded): the toy Artemis shipped in the package (`--model toy`,
trained by `artemis model train-toy` on generated videos of coloured boxes, so its answers name the boxed box's
colour and motion), a few videos like the ones it learnt from (two boxes of different colours and motions each,
built into a cache folder on first use), and a larger generated video of two textured objects, one of them
passing behind an occluder and one leaving the frame (`data.synthetic_tracking`), to try the tracker on."""

from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ASSETS_VERSION = 3
MARKER = "web-demo.json"
TRACKING_VIDEO = ("walker_and_leaver_320x180.mp4", 48, 320, 180)  # name, frames, width, height
TOY_VIDEO_SEEDS = (7_000_001, 7_000_002, 7_000_003)  # `two_box_video` examples, far from the toy's training seeds


@dataclass(frozen=True)
class DemoAssets:
    root: Path
    model: Path  # the toy Artemis (a merged checkpoint)
    clip: Path  # its CLIP tower (passed as image_tower)
    videos: tuple[Path, ...]


def _assets(root: Path, record: dict) -> DemoAssets:
    from artemis_cli.common.hub import toy_model_folder

    model = toy_model_folder()
    return DemoAssets(root, model, model / "clip", tuple(root / v for v in record["videos"]))


def _read_marker(root: Path):
    try:
        record = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != ASSETS_VERSION:
        return None
    try:
        assets = _assets(root, record)
    except (KeyError, TypeError):
        return None
    return assets if all(p.is_file() for p in assets.videos) else None


def ensure_demo_assets(root: Path, log: Callable[[str], None] = lambda line: None) -> DemoAssets:
    """The demo's model and videos under `root`, building the videos when missing (a second, once).

    Several servers starting at once build them once (a lock file); a half-built folder from a killed
    build is rebuilt. Only the folders this function writes are ever removed."""
    from artemis_cli.common.atomic import atomic_write_bytes, atomic_write_json

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assets = _read_marker(root)
        if assets is not None:
            return assets
        from artemis_cli.data.synthetic_tracking import make_tracking_video, save_video
        from artemis_cli.data.synthetic_video import encode_mp4, two_box_video

        log(f"web: writing the demo videos to {root} (first use only)")
        for part in ("tiny", "sample", "videos"):  # "tiny" and "sample": what earlier versions built here
            shutil.rmtree(root / part, ignore_errors=True)
        names = []
        for seed in TOY_VIDEO_SEEDS:
            video = two_box_video(seed)
            name = "videos/two_boxes_" + "_".join(t.colour for t in video.targets) + ".mp4"
            atomic_write_bytes(root / name, encode_mp4(video.frames))
            names.append(name)
        name, frames, width, height = TRACKING_VIDEO
        save_video(make_tracking_video(seed=0, n_frames=frames, width=width, height=height), root / "videos" / name)
        record = {"version": ASSETS_VERSION, "videos": [*names, f"videos/{name}"]}
        atomic_write_json(root / MARKER, record)
        return _assets(root, record)
