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


def tracked_frames(n_frames: int, key_frames=(0,), fps: float = 10.0) -> list[int]:
    """The frames a default track covers (about `tracking.TRACK_FPS` a second, and the key frames) of a
    `video_file` clip (10 fps)."""
    from artemis_cli.ownvideo.tracking import resolve_stride

    return sorted(set(range(0, n_frames, resolve_stride(None, fps))) | set(key_frames))


def box_arg(box) -> str:
    return ",".join(f"{v:g}" for v in box)


def save_tiny_sam2(folder: Path, size: int = 128) -> Path:
    """A random-init SAM 2 video model shrunk for CPU tests (128 px input, a 5-block Hiera) and its
    processor, saved to `folder` (never downloaded). The memory/prompt widths stay at 256: SAM 2 splits
    its object pointers into 64-wide memory tokens and hard-codes that width."""
    from transformers import Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=16, image_size=[size, size],
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                    num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                    global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2])
    vision = dict(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                  backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2])
    config = Sam2VideoConfig(vision_config=vision, prompt_encoder_config=dict(image_size=size, patch_size=16),
                             mask_decoder_config=dict(mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
                             image_size=size, memory_attention_num_layers=1,
                             memory_attention_feed_forward_hidden_size=64,
                             memory_attention_rope_feat_sizes=[size // 16, size // 16], memory_fuser_intermediate_dim=64)
    torch.manual_seed(0)
    Sam2VideoModel(config).save_pretrained(folder)
    resize = {"height": size, "width": size}
    Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size=resize), video_processor=Sam2VideoVideoProcessor(size=resize),
                       target_size=size).save_pretrained(folder)
    return folder
