"""The published CLIP video-feature recipe (100 frames, CLIP ViT-L/14 layer -2, CLS dropped) as small functions.

Per video: sample up to 100 frames (rounded segment midpoints), squash each frame to 224 x 224 by
nearest-neighbour (*quirk*), normalise with CLIP's mean/std, run the vision tower, take layer -2
without CLS (``[T, P, C]``), cast to float16, then pool: per-frame means over patches (``[T, C]``,
zero-padded to 100 rows) on top of per-patch means over time (``[P, C]``) -> ``[100 + P, C]`` float16.

Frame sampling and the nearest-neighbour indices are numpy (they run in decode workers); resizing,
normalisation and pooling are tensor ops that run on the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

NUM_FRAMES = 100
LAYER = -2  # hidden state taken from the vision tower: the second-to-last layer's output
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("nearest", "center-crop")


def sample_frame_indices(total: int, num_frames: int = NUM_FRAMES) -> list[int]:
    """Indices of the frames the recipe reads from a video of `total` frames.

    ``min(total, num_frames)`` segments over ``total - 1``; each index is the floor of the mean of
    the segment's rounded ends (numpy's round-half-to-even, as the published script).
    """
    count = min(total, num_frames)
    if count <= 0:
        return []
    segment = float(total - 1) / count
    ends = np.rint(segment * np.arange(count + 1, dtype=np.float64)).astype(np.int64)
    return [int(i) for i in (ends[:-1] + ends[1:]) // 2]


def nearest_source_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source row/column for each output pixel, exactly as ``F.interpolate(mode="nearest")``.

    PyTorch computes ``min(floor(i * (in / out)), in - 1)`` in float32; doing the same here lets a
    decode worker shrink frames by plain indexing with bit-identical results.
    """
    if in_size == out_size:
        return np.arange(out_size, dtype=np.int64)
    if out_size == 2 * in_size:
        return np.arange(out_size, dtype=np.int64) >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    index = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, in_size - 1)


def resize_nearest_numpy(frames: np.ndarray, size: int) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 -> ``[T, size, size, 3]`` by nearest-neighbour indexing (the quirk)."""
    rows = nearest_source_indices(frames.shape[1], size)
    cols = nearest_source_indices(frames.shape[2], size)
    return frames.take(rows, axis=1).take(cols, axis=2)  # two contiguous gathers beat one fancy index


@dataclass
class Preprocess:
    """How frames become the tower's input: square size, resize mode, normalisation."""

    size: int = 224
    resize: str = "nearest"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    # Small constant tensors kept on the device: a fresh host-to-device copy per video would make
    # the host wait for the GPU's queue and stall the pipeline.
    _constants: dict = field(default_factory=dict, repr=False, compare=False)

    def _constant(self, key: tuple, make: Callable[[], "torch.Tensor"], device: "torch.device") -> "torch.Tensor":
        key = (*key, str(device))
        if key not in self._constants:
            self._constants[key] = make().to(device)
        return self._constants[key]

    def to_pixels(self, frames: "torch.Tensor", dtype: "torch.dtype") -> "torch.Tensor":
        """``[T, H, W, 3]`` uint8 on the device -> ``[T, 3, size, size]`` normalised, in `dtype`.

        ``nearest`` squashes the frame to a square (the published quirk); ``center-crop`` resizes the
        shorter side to `size` (bicubic, antialiased) and crops the centre, keeping the aspect ratio.
        """
        import torch

        device = frames.device
        pixels = frames.permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
        height, width = pixels.shape[-2:]
        if self.resize == "nearest":
            if (height, width) != (self.size, self.size):
                rows = self._constant(("rows", height), lambda: torch.from_numpy(nearest_source_indices(height, self.size)), device)
                cols = self._constant(("cols", width), lambda: torch.from_numpy(nearest_source_indices(width, self.size)), device)
                pixels = pixels.index_select(2, rows).index_select(3, cols)  # [T, 3, S, S]
        elif self.resize == "center-crop":
            from torchvision.transforms.v2 import functional as TF

            pixels = TF.resize(pixels, [self.size], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
            pixels = TF.center_crop(pixels, [self.size, self.size])  # [T, 3, S, S]
        else:
            raise ValueError(f"unknown resize mode {self.resize!r}")
        mean = self._constant(("mean",), lambda: torch.tensor(self.mean).view(1, 3, 1, 1) * 255.0, device)
        std = self._constant(("std",), lambda: torch.tensor(self.std).view(1, 3, 1, 1) * 255.0, device)
        # Rescale and normalise fused, as transformers' CLIPImageProcessor computes it.
        return pixels.float().sub_(mean).div_(std).to(dtype)  # in place: one float copy of the frames


class VideoPooler:
    """Accumulates one video's layer features batch by batch and pools them into ``[N + P, C]``.

    Features are cast to float16 first (the published script pooled its float16 array); means are
    taken in float32 and stored as float16, as numpy does for float16 input.
    """

    def __init__(self, frames: int, num_frames: int, patches: int, width: int, device: "torch.device"):
        import torch

        self.frames = frames
        self.filled = 0
        self.temporal = torch.zeros(num_frames, width, dtype=torch.float32, device=device)  # [N, C]
        self.spatial_sum = torch.zeros(patches, width, dtype=torch.float32, device=device)  # [P, C]

    def add(self, features: "torch.Tensor") -> None:
        """Add the next ``[k, P, C]`` frames' features (in frame order)."""
        import torch

        features = features.to(torch.float16).float()  # [k, P, C]
        count = features.shape[0]
        self.temporal[self.filled:self.filled + count] = features.mean(dim=1)  # [k, C]
        self.spatial_sum += features.sum(dim=0)  # [P, C]
        self.filled += count

    @property
    def complete(self) -> bool:
        return self.filled == self.frames

    def result(self) -> "torch.Tensor":
        """``[N + P, C]`` float16: temporal tokens (zero rows after the last frame), spatial tokens."""
        import torch

        spatial = self.spatial_sum / self.frames  # [P, C]
        return torch.cat([self.temporal.to(torch.float16), spatial.to(torch.float16)], dim=0)
