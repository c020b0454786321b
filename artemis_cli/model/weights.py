"""Reading checkpoint weights safely and comparing their names and shapes with the model.

safetensors is preferred; `.bin` files are read with ``torch.load(weights_only=True)`` (no code runs).
Sharded checkpoints (``*.index.json``) are followed. A missing, unexpected or mis-shaped weight is
reported by name; callers turn a non-empty report into an `InputError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

from artemis_cli.errors import InputError

TOWER_PREFIX = "model.image_tower."
SAFE_SINGLE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN_SINGLE, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
NON_LORA_FILE = "non_lora_trainables.bin"
PROJECTOR_FILE = "mm_projector.bin"
ADAPTER_CONFIG = "adapter_config.json"


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder, safetensors first; [] when it has none."""
    for single, index in ((SAFE_SINGLE, SAFE_INDEX), (BIN_SINGLE, BIN_INDEX)):
        if (folder / index).is_file():
            try:
                mapping = json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"{folder / index}: not a valid shard index ({exc})") from None
            files = sorted({folder / name for name in mapping.values()})
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise InputError(f"{folder / index}: shard file(s) missing: {', '.join(missing)}")
            return files
        if (folder / single).is_file():
            return [folder / single]
    return []


def load_bin(path: Path, device: str = "cpu") -> dict:
    """A `.bin` state dict through ``torch.load(weights_only=True)``: tensors only, never code."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path}: refused to load (weights_only): {exc}",
                         hint="the file holds more than tensors; convert it to safetensors in a trusted environment") from None
    if not isinstance(state, Mapping):
        raise InputError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return dict(state)


def read_state_dict(files: Iterable[Path], device: str = "cpu") -> dict:
    """Load every tensor of the given weight files (name -> tensor)."""
    from safetensors.torch import load_file

    state: dict = {}
    for path in files:
        state.update(load_file(str(path), device=device) if path.suffix == ".safetensors" else load_bin(path, device))
    return state


def read_shapes(files: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    """Names and shapes without reading the data (safetensors headers; `.bin` memory-mapped)."""
    import torch
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    shapes[name] = tuple(handle.get_slice(name).get_shape())
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
                state = load_bin(path)
            shapes.update({name: tuple(t.shape) for name, t in state.items()})
    return shapes


def strip_peft_prefixes(state: Mapping) -> dict:
    """Names of `non_lora_trainables.bin` as the published loader rewrites them: drop ``base_model.``,
    then one ``model.`` when the names start with ``model.model.``."""
    out = {(k[len("base_model."):] if k.startswith("base_model.") else k): v for k, v in state.items()}
    if any(k.startswith("model.model.") for k in out):
        out = {(k[len("model."):] if k.startswith("model.") else k): v for k, v in out.items()}
    return out


@dataclass
class KeyReport:
    """How checkpoint names/shapes compare with the model (the image tower is exempt)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "name: checkpoint [a, b] vs model [c, d]"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def raise_if_bad(self, source: str, limit: int = 20) -> None:
        if self.ok:
            return
        lines = []
        for title, names in (("missing", self.missing), ("unexpected", self.unexpected), ("mismatched", self.mismatched)):
            if names:
                shown = names[:limit] + ([f"... and {len(names) - limit} more"] if len(names) > limit else [])
                lines.append(f"{len(names)} {title}: " + ", ".join(shown))
        raise InputError(f"{source}: weights do not match the model\n  " + "\n  ".join(lines),
                         hint="check the config (vocab_size, hidden_size, mm_* fields) and --model-base")


# Buffers older transformers saved into checkpoints (Vicuna v1.5 files carry them); recomputed, never loaded.
IGNORED_FILE_KEYS = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


def compare_keys(model_shapes: Mapping[str, tuple], file_shapes: Mapping[str, tuple],
                 exempt_prefix: Optional[str] = TOWER_PREFIX) -> KeyReport:
    """Model names missing from the files, file names the model lacks, and shape mismatches."""
    def counted(name: str) -> bool:
        return not (exempt_prefix and name.startswith(exempt_prefix)) and not IGNORED_FILE_KEYS.search(name)

    report = KeyReport()
    report.missing = sorted(n for n in model_shapes if counted(n) and n not in file_shapes)
    report.unexpected = sorted(n for n in file_shapes if counted(n) and n not in model_shapes)
    report.mismatched = sorted(
        f"{n}: checkpoint {list(file_shapes[n])} vs model {list(model_shapes[n])}"
        for n in model_shapes if counted(n) and n in file_shapes and tuple(file_shapes[n]) != tuple(model_shapes[n]))
    return report
