"""Reading checkpoint weights safely and comparing their names and shapes with the model.

safetensors is preferred; `.bin` files are read with ``torch.load(weights_only=True)`` (no code runs).
Sharded checkpoints (``*.index.json``) are followed. A missing, unexpected or mis-shaped weight is
reported by name; callers turn a non-empty report into an `InputError`.
"""

from __future__ import annotations

import json
import re
import zipfile
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
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"{folder / index}: not a valid shard index ({type(exc).__name__}: {exc})") from None
            if not isinstance(mapping, dict) or not all(isinstance(n, str) and isinstance(f, str) and f
                                                        for n, f in mapping.items()):
                raise InputError(f"{folder / index}: weight_map must be an object of tensor name -> shard file name")
            if any(Path(name).name != name for name in mapping.values()):
                raise InputError(f"{folder / index}: weight_map names a file outside the folder")
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
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable PyTorch weights file, truncated or corrupt "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                         hint="copy or write the file again") from None
    if not isinstance(state, Mapping):
        raise InputError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return dict(state)


def read_state_dict(files: Iterable[Path], device: str = "cpu") -> dict:
    """Load every tensor of the given weight files (name -> tensor)."""
    from safetensors.torch import load_file

    state: dict = {}
    for path in files:
        if path.suffix == ".safetensors":
            check_safetensors(path)
            state.update(load_file(str(path), device=device))
        else:
            state.update(load_bin(path, device))
    return state


def check_safetensors(path: Path) -> list[str]:
    """The tensor names of a safetensors file, after checking its header and that the file holds every
    tensor's bytes (a truncated or garbage file is an `InputError`, not a crash in the Rust reader)."""
    import struct

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            (length,) = struct.unpack("<Q", head) if len(head) == 8 else (None,)
            if length is None or length > size - 8 or length > 100_000_000:
                raise ValueError("no valid header")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("the header is not an object")
        ends = []
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
                raise ValueError(f"entry {name!r} has no data_offsets")
            ends.append(offsets[1])
        if ends and 8 + length + max(ends) > size:
            raise ValueError(f"truncated: {size} of {8 + length + max(ends)} bytes")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})", hint="copy or write the file again") from None
    return [name for name in header if name != "__metadata__"]


def check_adapter(folder: Path) -> None:
    """A LoRA run's `adapter_config.json` must parse, and its adapter file must hold LoRA tensors
    (merging an adapter without them would write the base model as "merged")."""
    from artemis_cli.common.jsonio import load_json

    config = load_json(folder / ADAPTER_CONFIG)
    if not isinstance(config, dict):
        raise InputError(f"{folder / ADAPTER_CONFIG}: expected a JSON object")
    rank = config.get("r")
    if rank is not None and (type(rank) is not int or rank < 1):
        raise InputError(f"{folder / ADAPTER_CONFIG}: r: expected a positive whole number, got {rank!r}")
    safe, legacy = folder / "adapter_model.safetensors", folder / "adapter_model.bin"
    if safe.is_file():
        names = check_safetensors(safe)
    elif legacy.is_file():
        names = list(load_bin(legacy))
    else:
        raise InputError(f"{folder}: LoRA run without adapter_model.safetensors (or adapter_model.bin)")
    if not any("lora_" in name for name in names):
        raise InputError(f"{safe if safe.is_file() else legacy}: holds no LoRA tensors (lora_A / lora_B)",
                         hint="pass the stage-3 run folder (or a checkpoint-N) that `artemis train stage3` wrote")


def read_shapes(files: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    """Names and shapes without reading the data (safetensors headers; `.bin` memory-mapped)."""
    import torch
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        if path.suffix == ".safetensors":
            check_safetensors(path)
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    shapes[name] = tuple(handle.get_slice(name).get_shape())
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except (RuntimeError, EOFError, ValueError):  # legacy (non-zip) format cannot be memory-mapped
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
