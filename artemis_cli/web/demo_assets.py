"""What `artemis web --demo` serves, built on first use into a cache folder (nothing downloaded): the
tiny random Artemis (as `artemis model make-tiny` / the test fixtures build it), the sample's HC-STVG
videos (`artemis data make-sample`) and one larger generated video with two moving boxes."""

from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ASSETS_VERSION = 1
MARKER = "web-demo.json"
LARGE_VIDEO = ("two_boxes_320x240.mp4", 48, 320, 240)  # name, frames, width, height


@dataclass(frozen=True)
class DemoAssets:
    root: Path
    model: Path  # a merged tiny Artemis checkpoint
    clip: Path  # its tiny CLIP tower (passed as image_tower: the checkpoint's own path may have moved)
    videos: tuple[Path, ...]


def _assets(root: Path, record: dict) -> DemoAssets:
    return DemoAssets(root, root / record["model"], root / record["clip"], tuple(root / v for v in record["videos"]))


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
    files = [assets.model / "config.json", assets.clip / "config.json", *assets.videos]
    return assets if all(p.is_file() for p in files) else None


def ensure_demo_assets(root: Path, log: Callable[[str], None] = lambda line: None) -> DemoAssets:
    """The demo's model and videos under `root`, building what is missing (a few seconds, once).

    Several servers starting at once build it once (a lock file); a half-built folder from a killed
    build is rebuilt. Only the folders this function writes are ever removed."""
    from artemis_cli.common.atomic import atomic_write_bytes, atomic_write_json

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assets = _read_marker(root)
        if assets is not None:
            return assets
        import numpy as np

        from artemis_cli.data.sample import make_sample
        from artemis_cli.data.synthetic_video import encode_mp4, make_video
        from artemis_cli.model.tiny import save_tiny_artemis

        log(f"web: building the demo model and videos in {root} (first use only)")
        for part in ("tiny", "sample", "videos"):
            shutil.rmtree(root / part, ignore_errors=True)
        model = save_tiny_artemis(root / "tiny", seed=0)
        make_sample(root / "sample", seed=0, feature_dim=64)
        sample_videos = sorted((root / "sample" / "DATA_ROOT" / "Artemis_data" / "HC-STVG" / "videos").glob("*.mp4"))
        name, frames, width, height = LARGE_VIDEO
        video = make_video(np.random.default_rng(17), frames, width, height, n_targets=2)
        atomic_write_bytes(root / "videos" / name, encode_mp4(video.frames))
        record = {"version": ASSETS_VERSION, "model": str(model.relative_to(root)), "clip": "tiny/clip",
                  "videos": [f"videos/{name}", *(str(p.relative_to(root)) for p in sample_videos)]}
        atomic_write_json(root / MARKER, record)
        return _assets(root, record)
