"""CLIP vision towers that turn ``[B, 3, S, S]`` pixels into layer -2 patch features ``[B, P, C]``.

`hf` loads a transformers `CLIPVisionModel` (hub id or local folder, the published default);
`open_clip` loads open_clip checkpoints (``ARCH:TAG``, ``ARCH:/path/ckpt.pt``, ``hf-hub:org/repo``,
``local-dir:/path`` or a folder holding ``open_clip_config.json``). Both stop after the layer they
need, so the last block never runs. For the same weights both give the same numbers: open_clip's
``visual.transformer.resblocks.i`` is transformers' ``vision_model.encoder.layers.i`` (``attn.in_proj``
= q/k/v projections stacked, ``mlp.c_fc``/``c_proj`` = ``fc1``/``fc2``, ``ln_1``/``ln_2`` =
``layer_norm1``/``2``), ``conv1`` the patch embedding, ``ln_pre`` the ``pre_layrnorm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from artemis_cli.errors import InputError, UsageError
from artemis_cli.features.recipe import CLIP_MEAN, CLIP_STD, LAYER, Preprocess

if TYPE_CHECKING:
    import torch

BACKENDS = ("hf", "open_clip")
DEFAULT_MODELS = {"hf": "openai/clip-vit-large-patch14", "open_clip": "ViT-L-14-quickgelu:openai"}


@dataclass
class Backend:
    """A loaded tower: `forward` maps ``[B, 3, S, S]`` to ``[B, P, C]`` (layer -2, CLS dropped)."""

    name: str
    model: str
    forward: Callable[["torch.Tensor"], "torch.Tensor"]
    preprocess: Preprocess
    patch_size: int
    width: int
    layers: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def patches(self) -> int:
        return (self.preprocess.size // self.patch_size) ** 2

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "image_size": self.preprocess.size,
                "patch_size": self.patch_size, "patches": self.patches, "width": self.width,
                "layers": self.layers, "layer": LAYER, "drop_cls": True, "resize": self.preprocess.resize,
                "mean": list(self.preprocess.mean), "std": list(self.preprocess.std), **self.extra}


def load_backend(name: str, model: str | None, device: "torch.device", dtype: "torch.dtype",
                 resize: str = "nearest", option: str = "--model") -> Backend:
    """Load the vision tower `model` with backend `name` on `device` in `dtype`, ready for inference.
    `option` is the flag that named the model (errors say it)."""
    if name not in BACKENDS:
        raise UsageError(f"--backend {name!r}: expected one of {', '.join(BACKENDS)}")
    model = model or DEFAULT_MODELS[name]
    if name == "hf":
        return _load_hf(model, device, dtype, resize, option)
    return _load_open_clip(model, device, dtype, resize)


def _load_hf(model_id: str, device, dtype, resize: str, option: str = "--model") -> Backend:
    import torch
    from transformers import CLIPImageProcessor
    from transformers.utils import logging as hf_logging

    from artemis_cli.common.hub import resolve_model_folder
    from artemis_cli.model.tower import load_clip_vision

    folder = str(resolve_model_folder(model_id, option=option))  # a folder: transformers never goes online here

    hf_logging.disable_progress_bar()  # our own progress bar is the only one
    verbosity = hf_logging.get_verbosity()
    # A full CLIPModel checkpoint (the default) loads fine; its text weights are just not used, and
    # transformers would list each of them as "unexpected".
    hf_logging.set_verbosity_error()
    try:
        tower = load_clip_vision(folder, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise InputError(f"{option} {model_id}: cannot load a CLIP vision model ({_first_line(exc)})",
                         hint=f"pass {option} with a CLIP folder (such as openai/clip-vit-large-patch14)") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    try:
        processor = CLIPImageProcessor.from_pretrained(folder)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except (OSError, ValueError):
        mean, std = CLIP_MEAN, CLIP_STD  # a bare vision-model folder: CLIP's own statistics
    config = tower.config
    encoder = getattr(tower, "vision_model", tower).encoder  # transformers < 5.24 nests a vision_model
    layers = len(encoder.layers)
    # hidden_states[-2] is the output of layer L-1; the last layer's work would be thrown away.
    encoder.layers = encoder.layers[:layers + LAYER + 1]
    tower = tower.to(device).eval()

    @torch.inference_mode()
    def forward(pixels):
        return tower(pixel_values=pixels).last_hidden_state[:, 1:]  # [B, P, C]

    return Backend("hf", model_id, forward, Preprocess(config.image_size, resize, mean, std),
                   config.patch_size, config.hidden_size, layers)


def parse_open_clip_model(spec: str) -> tuple[str, str | None]:
    """``ARCH:TAG`` / ``ARCH:/path`` -> (arch, pretrained); schemas and folders -> (``local-dir:``..., None)."""
    from pathlib import Path

    if spec.startswith(("hf-hub:", "local-dir:")):
        return spec, None
    if Path(spec).is_dir():
        return f"local-dir:{spec}", None
    arch, sep, pretrained = spec.partition(":")
    if not sep or not arch or not pretrained:
        raise UsageError(f"--model {spec!r}: open_clip needs weights: ARCH:TAG (ViT-L-14-quickgelu:openai), "
                         "ARCH:/path/to/checkpoint, hf-hub:org/repo, local-dir:/path or a folder")
    return arch, pretrained


def _load_open_clip(spec: str, device, dtype, resize: str) -> Backend:
    import torch

    try:
        import open_clip
    except ImportError:
        raise UsageError("--backend open_clip needs open_clip_torch", hint="pip install 'artemis[clip]'") from None
    arch, pretrained = parse_open_clip_model(spec)
    try:
        clip = open_clip.create_model(arch, pretrained=pretrained, device="cpu")
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise InputError(f"{spec}: cannot load an open_clip model ({_first_line(exc)})") from None
    visual = clip.visual
    if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "transformer"):
        raise UsageError(f"{spec}: only open_clip ViT towers are supported, got {type(visual).__name__}")
    cfg = open_clip.get_model_preprocess_cfg(clip)
    size = cfg.get("size", visual.image_size)
    size = size if isinstance(size, int) else size[0]
    patch = visual.patch_size if isinstance(visual.patch_size, int) else visual.patch_size[0]
    layers = len(visual.transformer.resblocks)
    take = layers + LAYER
    visual = visual.to(device=device, dtype=dtype).eval()
    del clip

    @torch.inference_mode()
    def forward(pixels):
        out = visual.forward_intermediates(pixels, indices=[take], stop_early=True, intermediates_only=True,
                                           output_fmt="NLC")
        return out["image_intermediates"][0]  # [B, P, C], CLS already split off

    mean = tuple(cfg.get("mean", CLIP_MEAN))
    std = tuple(cfg.get("std", CLIP_STD))
    return Backend("open_clip", spec, forward, Preprocess(size, resize, mean, std), patch,
                   visual.transformer.width, layers)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
