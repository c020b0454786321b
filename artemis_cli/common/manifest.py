"""Run manifests and the resumable run folder: what produced an output (versions, git SHA, seed,
parameters), and the one check that a rerun into it uses the settings of the earlier run.

`features extract`, `infer`, `judge` and the demo all resume into their earlier output; each keeps
the settings that decide its results in a manifest (or state file) and compares them with
`changed_settings` / `refuse_other_settings` before adding to it."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

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


def changed_settings(earlier: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The settings (keys) whose values differ between the earlier run and this one, sorted."""
    return sorted(key for key in set(earlier) | set(current) if earlier.get(key) != current.get(key))


def refuse_other_settings(target: Any, earlier: Mapping[str, Any], current: Mapping[str, Any], *,
                          also: Iterable[str] = (), hint: str = "pass --overwrite to start again, or choose "
                                                                 "another output") -> None:
    """Raise a `UsageError` when `target` was written with other settings than this run's (`also`:
    further differences the caller found, such as "input ids"), so a rerun never mixes two runs' results."""
    from artemis_cli.errors import UsageError

    changed = changed_settings(earlier, current) + list(also)
    if changed:
        raise UsageError(f"{target}: was written with other settings ({', '.join(changed)}): a different "
                         f"{' and '.join(changed)} than this run; refusing to mix them", hint=hint)
