"""The frozen CLIP image tower (`model.image_tower.vision_tower`, a transformers `CLIPVisionModel`).

It gives (a) layer -2 patch features for stage 1-2 images and (b) the four hidden states
-11, -8, -5, -2 (every third counting back from the selected layer, shallow first) for the RoI module.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageTower(nn.Module):
    """Frozen CLIP vision model with the reference's feature selection.

    The weights come from the tower's own checkpoint (``mm_image_tower``), never from the LLM
    checkpoint, as in the published loader; `loading.attach_tower` puts them in place.
    """

    def __init__(self, vision_config, select_layer: int = -2, select_feature: str = "patch", num_levels: int = 4):
        super().__init__()
        from transformers import CLIPVisionModel

        self.vision_tower = CLIPVisionModel(vision_config)
        self.vision_tower.requires_grad_(False)
        self.select_layer = select_layer
        self.select_feature = select_feature
        self.num_levels = num_levels

    @property
    def config(self):
        return self.vision_tower.config

    @property
    def grid_size(self) -> int:
        return self.config.image_size // self.config.patch_size

    def _hidden_states(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        param = next(self.vision_tower.parameters())
        out = self.vision_tower(pixels.to(device=param.device, dtype=param.dtype), output_hidden_states=True)
        return out.hidden_states  # (layers + 1) x [N, 1 + P, C]

    @torch.no_grad()
    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, P, C] (layer `select_layer`, CLS dropped for ``patch``)."""
        features = self._hidden_states(pixels)[self.select_layer]
        return features[:, 1:] if self.select_feature == "patch" else features

    @torch.no_grad()
    def multilevel_features(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """[N, 3, H, W] -> `num_levels` x [N, P, C], shallow first (layers -11, -8, -5, -2 for 4 levels)."""
        hidden = self._hidden_states(pixels)
        picked = hidden[self.select_layer::-3][::-1][-self.num_levels:]
        return [level[:, 1:] for level in picked]


def load_clip_vision(source: str, dtype=None):
    """`CLIPVisionModel.from_pretrained(source)`, refusing a checkpoint that lacks tower weights.

    transformers fills missing or mis-shaped weights at random and only warns (a tower saved by
    transformers 5 read by 4.x is one way to get there); features or a model built on that would be
    silently wrong. Raises `InputError` naming the first missing keys; `OSError` passes through."""
    from transformers import CLIPVisionModel

    from artemis_cli.errors import InputError

    vision, info = CLIPVisionModel.from_pretrained(source, dtype=dtype, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    mismatched = [str(item[0]) if isinstance(item, tuple) else str(item) for item in info.get("mismatched_keys") or []]
    if missing or mismatched:
        problems = [f"{len(missing)} weight(s) missing ({', '.join(missing[:3])})"] if missing else []
        problems += [f"{len(mismatched)} of the wrong shape ({', '.join(mismatched[:3])})"] if mismatched else []
        raise InputError(f"{source}: not a complete CLIP vision tower: {'; '.join(problems)}",
                         hint="use a CLIP checkpoint such as openai/clip-vit-large-patch14, saved by the "
                              "transformers version you load it with")
    return vision
