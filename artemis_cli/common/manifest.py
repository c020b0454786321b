"""Run manifests: what produced an output folder (versions, git SHA, seed, parameters)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "artemis", "torch", "torchvision", "transformers", "peft", "accelerate", "deepspeed",
    "open_clip_torch", "decord", "av", "openai", "pycocoevalcap", "numpy", "pydantic",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def build_manifest(command: str, seed: int | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "versions": package_versions(),
        **fields,
    }


def write_manifest(path: str | os.PathLike, command: str, seed: int | None = None, **fields: Any) -> dict[str, Any]:
    from artemis_cli.common.atomic import atomic_write_json

    manifest = build_manifest(command, seed=seed, **fields)
    atomic_write_json(path, manifest)
    return manifest
