"""The multi-level RoI module (`model.spi_model`) of the published model, on torchvision's RoIAlign.

One LLM token per box: the four CLIP levels of each frame are resized to a pyramid (128, 64, 32, 16
px for a 16 x 16 grid), fused by five channel-shuffle rounds, pooled by RoIAlign at every level,
summed, flattened and projected, plus a box embedding. All frames of all samples go through in one
batch (one box per frame); there is no loop over boxes. The module runs in its parameters' dtype
(fp32, fp16 or bf16); the reference forced fp16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GN_GROUPS = 64
POS_HIDDEN = 256


class ConvGNReLU(nn.Module):
    """3x3 conv without bias, GroupNorm(64), ReLU (keys ``conv.weight``, ``gn.weight``, ``gn.bias``).

    GroupNorm runs in the convolution's output dtype, as in the published fp16 module. CUDA autocast
    would run it in fp32 instead, which doubles the bytes of every 128 x 128 x 1024 activation it and
    the ReLU write and keep for backward (the statistics are accumulated in fp32 either way)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.gn = nn.GroupNorm(min(GN_GROUPS, channels), channels)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv `ConvModule`'s constructor init: Kaiming-normal conv weight (``mode="fan_out"``,
        ReLU gain, std sqrt(2 / (9 C))), GroupNorm weight 1 and bias 0."""
        nn.init.kaiming_normal_(self.conv.weight, a=0, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.gn.weight)
        nn.init.zeros_(self.gn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        gn = self.gn
        with torch.autocast(x.device.type, enabled=False):
            x = F.group_norm(x, gn.num_groups, gn.weight.to(x.dtype), gn.bias.to(x.dtype), gn.eps)
        return F.relu(x)


def coordinate_channels(feature: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, 2, H, W] in the feature's dtype: x then y, each in [-1, 1] across the map.

    Built in fp32 and cast afterwards, as the published module does (it casts the concatenated input
    to fp16); `linspace` computed in fp16 itself lands on other fp16 values for some points."""
    n, _, h, w = feature.shape
    ys = torch.linspace(-1, 1, h, device=feature.device, dtype=torch.float32)
    xs = torch.linspace(-1, 1, w, device=feature.device, dtype=torch.float32)
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each
    return torch.stack([x, y]).to(feature.dtype).unsqueeze(0).expand(n, -1, -1, -1)


def resize(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature  # bilinear with align_corners to the same size is the identity
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=True)


class MultiLevelFuse(nn.Module):
    """`mlvl_fuse`: coordinate channels + per-level 1x1 conv, then `num_fuse` shuffle-fuse rounds.

    Before each round, level i is rebuilt from its own channels [0, C/2), channels [3C/4, C) of
    level i+1 (deeper) and channels [C/2, 3C/4) of level i-1 (shallower), clamped at the ends, the
    borrowed parts resized bilinearly to level i's size. The round's conv is shared by all levels.
    """

    def __init__(self, in_channels: int, channels: int, num_levels: int, num_fuse: int = 5):
        super().__init__()
        self.num_levels = num_levels
        self.shuffle_channels = channels // 4
        self.keep_channels = channels - 2 * self.shuffle_channels
        self.input_conv = nn.ModuleList(nn.Conv2d(in_channels + 2, channels, 1) for _ in range(num_levels))
        self.fuse_convs = nn.ModuleList(ConvGNReLU(channels) for _ in range(num_fuse))

    def _shuffled(self, levels: list[torch.Tensor], index: int) -> torch.Tensor:
        target = levels[index]
        deeper = levels[min(index + 1, self.num_levels - 1)]
        shallower = levels[max(index - 1, 0)]
        size = tuple(target.shape[-2:])
        start = self.keep_channels + self.shuffle_channels
        return torch.cat([
            target[:, :self.keep_channels],
            resize(deeper[:, start:], size),
            resize(shallower[:, self.keep_channels:start], size),
        ], dim=1)

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """`num_levels` x [N, C_in, S_l, S_l] -> `num_levels` x [N, C, S_l, S_l]."""
        levels = [conv(torch.cat([feature, coordinate_channels(feature)], dim=1))
                  for conv, feature in zip(self.input_conv, levels)]
        for fuse in self.fuse_convs:
            levels = [fuse(self._shuffled(levels, index)) for index in range(self.num_levels)]
        return levels


class MultiLevelRoIExtractor(nn.Module):
    """`roi_align`: RoIAlign per level, per-level 3x3 conv, sum, ReLU, flatten, linear, box embedding, updims."""

    def __init__(self, channels: int, num_levels: int, out_features: int, output_size: int = 14,
                 sampling_ratio: int = 2, query_size: int = 1024):
        super().__init__()
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.pconvs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_levels))
        self.pos_embedd = nn.Sequential(
            nn.Linear(4, POS_HIDDEN), nn.ReLU(), nn.LayerNorm(POS_HIDDEN),
            nn.Linear(POS_HIDDEN, query_size), nn.ReLU(), nn.LayerNorm(query_size),
        )
        self.flatten_linear = nn.Linear(channels * output_size * output_size, query_size)
        self.updims = nn.Linear(query_size, out_features)
        self.init_weights()

    def init_weights(self) -> None:
        """The published `norm_init_weights`: every conv here (the per-level 3x3 `pconvs`) ~ N(0, 0.01),
        bias 0; the linear layers and LayerNorms keep PyTorch's defaults."""
        for conv in self.pconvs:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def _roi_align(self, feature: torch.Tensor, rois: torch.Tensor, spatial_scale: float) -> torch.Tensor:
        from torchvision.ops import roi_align

        # torchvision has no bf16 RoIAlign kernel on CPU (and not everywhere on CUDA): pool in fp32.
        compute = torch.float32 if feature.dtype == torch.bfloat16 else feature.dtype
        pooled = roi_align(feature.to(compute), rois.to(compute), output_size=self.output_size,
                           spatial_scale=spatial_scale, sampling_ratio=self.sampling_ratio, aligned=True)
        return pooled.to(feature.dtype)  # [N, C, out, out]

    def forward(self, levels: list[torch.Tensor], boxes: torch.Tensor, image_size: int) -> torch.Tensor:
        """levels: L x [N, C, S_l, S_l]; boxes [N, 4] in [0, 1] (x1, y1, x2, y2), one per frame -> [N, D]."""
        frame_index = torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype)
        rois = torch.cat([frame_index[:, None], boxes * image_size], dim=1)  # [N, 5] in input pixels
        pooled = sum(conv(self._roi_align(level, rois, level.shape[-1] / image_size))
                     for conv, level in zip(self.pconvs, levels))  # [N, C, out, out]
        tokens = self.flatten_linear(F.relu(pooled).flatten(1))  # [N, query]
        tokens = tokens + self.pos_embedd(boxes)
        return self.updims(tokens)  # [N, D]


class MultiLevelRoIModule(nn.Module):
    """`spi_model`: CLIP levels of every frame + one box per frame -> one LLM token per box."""

    def __init__(self, in_channels: int, out_features: int, num_levels: int = 4, num_fuse: int = 5,
                 output_size: int = 14, query_size: int = 1024):
        super().__init__()
        self.num_levels = num_levels
        self.mlvl_fuse = MultiLevelFuse(in_channels, in_channels, num_levels, num_fuse)
        self.roi_align = MultiLevelRoIExtractor(in_channels, num_levels, out_features, output_size,
                                                query_size=query_size)

    def reset_parameters(self) -> None:
        """Initialise every tensor as the published classes' constructors do: PyTorch's defaults
        (the 1x1 `input_conv`, linear layers, LayerNorms), then mmcv `ConvModule`'s Kaiming init of
        the fuse convolutions and the extractor's N(0, 0.01) `pconvs`."""
        for child in self.modules():
            if child is not self and hasattr(child, "reset_parameters"):
                child.reset_parameters()
        for fuse in self.mlvl_fuse.fuse_convs:
            fuse.init_weights()
        self.roi_align.init_weights()

    @property
    def dtype(self) -> torch.dtype:
        return self.mlvl_fuse.input_conv[0].weight.dtype

    def pyramid(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """L x [N, P, C] (or [N, C, S, S]) -> L x [N, C, S * 2^(L-1-l), ...]: shallowest largest."""
        maps = []
        for index, level in enumerate(levels):
            level = level.to(self.dtype)
            if level.dim() == 3:
                n, patches, channels = level.shape
                side = int(round(patches ** 0.5))
                level = level.reshape(n, side, side, channels).permute(0, 3, 1, 2)  # [N, C, S, S]
            scale = 2 ** (self.num_levels - 1 - index)
            maps.append(resize(level, (level.shape[-2] * scale, level.shape[-1] * scale)))
        return maps

    def forward(self, levels: list[torch.Tensor], boxes: torch.Tensor, image_size: int = 224) -> torch.Tensor:
        """levels: L x [N, P, C] CLIP hidden states (CLS dropped), boxes [N, 4] normalised -> [N, D]."""
        if len(levels) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} feature levels, got {len(levels)}")
        if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != levels[0].shape[0]:
            raise ValueError(f"boxes must be [N, 4] with N = {levels[0].shape[0]} frames, got {tuple(boxes.shape)}")
        fused = self.mlvl_fuse(self.pyramid(levels))
        return self.roi_align(fused, boxes.to(self.dtype), image_size)
