"""Where a checkpoint's parts come from: its CLIP tower (weights and config) and its tokenizer files.

Shared by `model.loading` (loading a checkpoint) and `model.merge` (merging a LoRA run shard by shard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from artemis_cli.errors import InputError


def resolve_tower(name: str, checkpoint: Optional[Path] = None, override: Optional[str] = None) -> str:
    """Where the tower weights come from: `override`, else a path relative to the checkpoint, else the
    configured path if it exists, else the canonical hub id of a known tower (HF cache)."""
    from artemis_cli.model.config import canonical_tower_name

    if override:
        return str(override)
    for candidate in ([checkpoint / name] if checkpoint is not None else []) + [Path(name).expanduser()]:
        if (candidate / "config.json").is_file():
            return str(candidate)
    return canonical_tower_name(name) or name


def vision_config_for(source: str):
    from artemis_cli.model.config import tower_config

    return tower_config(source)


def tokenizer_folder(folder: Path, base: Optional[Path]) -> Path:
    """The checkpoint folder holding the tokenizer files: `folder`, else `base`."""
    for candidate in (folder, base):
        if candidate is not None and any((candidate / name).is_file() for name in
                                         ("tokenizer_config.json", "tokenizer.model", "tokenizer.json")):
            return candidate
    raise InputError(f"{folder}: no tokenizer files (tokenizer_config.json / tokenizer.model)"
                     + ("" if base is None else f" and none in {base}"),
                     hint="copy the tokenizer of the base model (Vicuna) into the checkpoint folder")
