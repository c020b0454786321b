"""What `artemis web --demo` serves, built on first use into a cache folder (nothing downloaded): a
tiny random Artemis (`model.tiny`, the size the tests use) with its LLM and projector weights
sharpened so that its (meaningless) answers depend on the video and the box, the sample's HC-STVG
videos (`artemis data make-sample`) and a larger generated video of two textured objects, one of them
passing behind an occluder and one leaving the frame (`data.synthetic_tracking`)."""

from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ASSETS_VERSION = 2
MARKER = "web-demo.json"
TRACKING_VIDEO = ("walker_and_leaver_320x180.mp4", 48, 320, 180)  # name, frames, width, height
SHARPEN = 4.0  # random weights at init scale answer every prompt alike; x4 makes the answer follow the input
SHARPENED = ("model.layers", "model.embed_tokens", "lm_head", "model.mm_projector")


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


def save_demo_model(folder: Path) -> Path:
    """The tiny Artemis (tower in `folder/clip`, merged checkpoint in `folder/artemis`), sharpened."""
    import torch

    from artemis_cli.model.loading import save_model
    from artemis_cli.model.tiny import build_tiny_artemis, save_tiny_clip, save_tiny_tokenizer

    clip = save_tiny_clip(folder / "clip", seed=0)
    tokenizer_dir = save_tiny_tokenizer(folder / "tokenizer")
    model, tokenizer, _ = build_tiny_artemis(tokenizer_dir, clip, seed=0, roi_num_fuse=1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and name.startswith(SHARPENED):
                param.mul_(SHARPEN)
    return save_model(model, tokenizer, folder / "artemis", overwrite=True)


def ensure_demo_assets(root: Path, log: Callable[[str], None] = lambda line: None) -> DemoAssets:
    """The demo's model and videos under `root`, building what is missing (a few seconds, once).

    Several servers starting at once build it once (a lock file); a half-built folder from a killed
    build is rebuilt. Only the folders this function writes are ever removed."""
    from artemis_cli.common.atomic import atomic_write_json

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assets = _read_marker(root)
        if assets is not None:
            return assets
        from artemis_cli.data.sample import make_sample
        from artemis_cli.data.synthetic_tracking import make_tracking_video, save_video

        log(f"web: building the demo model and videos in {root} (first use only)")
        for part in ("tiny", "sample", "videos"):
            shutil.rmtree(root / part, ignore_errors=True)
        model = save_demo_model(root / "tiny")
        make_sample(root / "sample", seed=0, feature_dim=64)
        sample_videos = sorted((root / "sample" / "DATA_ROOT" / "Artemis_data" / "HC-STVG" / "videos").glob("*.mp4"))
        name, frames, width, height = TRACKING_VIDEO
        save_video(make_tracking_video(seed=0, n_frames=frames, width=width, height=height), root / "videos" / name)
        record = {"version": ASSETS_VERSION, "model": str(model.relative_to(root)), "clip": "tiny/clip",
                  "videos": [f"videos/{name}", *(str(p.relative_to(root)) for p in sample_videos)]}
        atomic_write_json(root / MARKER, record)
        return _assets(root, record)
