"""`inspect_features`: shape, dtype, statistics and validity of feature files, loaded safely."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artemis_cli.data.feature_files import FEATURE_SUFFIXES, load_feature
from artemis_cli.errors import InputError
from artemis_cli.features.recipe import NUM_FRAMES


@dataclass
class FeatureInfo:
    """One file: `problems` make it invalid; `warnings` are unusual but loadable."""

    path: str
    shape: list[int] | None = None
    dtype: str | None = None
    frames: int | None = None  # non-zero temporal rows: the frames the video had (up to num_frames)
    patches: int | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    nonfinite: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def expand_feature_paths(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for the feature files directly inside it (sorted)."""
    expanded: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in FEATURE_SUFFIXES and not p.name.startswith("."))
            if not found:
                raise InputError(f"{path}: no feature files ({', '.join(FEATURE_SUFFIXES)}) in this folder")
            expanded.extend(found)
        else:
            expanded.append(path)
    return expanded


def inspect_feature(path: Path, num_frames: int = NUM_FRAMES) -> FeatureInfo:
    """Load `path` safely and check it is a ``[num_frames + P, C]`` float16 clip feature."""
    info = FeatureInfo(str(path))
    if not path.exists():
        info.problems.append("file not found")
        return info
    try:
        array = load_feature(path)
    except InputError as exc:
        info.problems.append(exc.message)
        return info
    info.shape, info.dtype = list(array.shape), str(array.dtype)
    if not np.issubdtype(array.dtype, np.floating):
        info.problems.append(f"dtype {array.dtype} is not a float type")
        return info
    values = array.astype(np.float32)
    finite = np.isfinite(values)
    info.nonfinite = int(values.size - finite.sum())
    if info.nonfinite:
        info.problems.append(f"{info.nonfinite} NaN/inf value(s)")
    if finite.any():
        good = values[finite]
        info.min, info.max = float(good.min()), float(good.max())
        info.mean, info.std = float(good.mean()), float(good.std())
    if array.dtype != np.float16:
        info.warnings.append(f"dtype {array.dtype}; the published files are float16")
    if array.ndim != 2:
        info.problems.append(f"expected a 2-D [{num_frames} + P, C] array, got shape {tuple(array.shape)}")
        return info
    patches = array.shape[0] - num_frames
    if patches < 1 or math.isqrt(patches) ** 2 != patches:
        info.problems.append(f"{array.shape[0]} rows is not {num_frames} temporal + a square number of patch rows "
                             f"(356 = 100 + 16x16 for ViT-L/14 at 224 px)")
        return info
    info.patches = patches
    nonzero = np.abs(values[:num_frames]).sum(axis=1) > 0  # [num_frames]
    info.frames = int(nonzero.sum())
    if info.frames == 0:
        info.problems.append("all temporal rows are zero")
    elif not nonzero[:info.frames].all():
        info.warnings.append("zero rows between temporal tokens (padding is expected only at the end)")
    if not np.abs(values[num_frames:]).sum() > 0:
        info.problems.append("all spatial rows are zero")
    return info


def inspect_features(paths: list[Path], num_frames: int = NUM_FRAMES) -> list[FeatureInfo]:
    """`inspect_feature` for every file (folders expanded); never raises for a bad file."""
    return [inspect_feature(path, num_frames) for path in expand_feature_paths(paths)]
