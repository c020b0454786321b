"""Shared pieces of the own-video tests: a sharpened tiny Artemis (answers depend on the input) and
generated videos with known boxes."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

SCALED = ("model.layers", "model.embed_tokens", "lm_head", "model.mm_projector")
MAX_NEW = 8


def sharpened(tiny_artemis, folder: Path):
    """A copy of the session's tiny Artemis with its LLM/projector weights x4 (random weights answer every
    prompt alike otherwise), saved as a merged checkpoint in `folder`; returns (folder, LoadedModel)."""
    from artemis_cli.model.loading import LoadedModel, save_model

    model, tokenizer, processor = tiny_artemis
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and name.startswith(SCALED):
                param.mul_(4.0)
    save_model(model, tokenizer, folder)
    return folder, LoadedModel(model=model, tokenizer=tokenizer, image_processor=processor, kind="merged",
                               source=folder)


def video_file(folder: Path, *, seed: int = 0, n_frames: int = 20, width: int = 320, height: int = 180,
               name: str = "clip.mp4"):
    """(path, TrackingVideo) of a generated `.mp4` (or a frame folder when `name` has no suffix)."""
    from artemis_cli.data.synthetic_tracking import make_tracking_video, save_video

    video = make_tracking_video(seed=seed, n_frames=n_frames, width=width, height=height)
    return save_video(video, folder / name), video


def box_arg(box) -> str:
    return ",".join(f"{v:g}" for v in box)
