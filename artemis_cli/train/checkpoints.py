"""Checkpoint folders that survive a kill at any moment.

A ``checkpoint-N`` folder counts as complete only once `COMPLETE_MARKER` is written into it, after
every other file (the Trainer's model, optimizer, scheduler, RNG and trainer state); the rotation
(``save_total_limit``) removes the marker first, so a folder half-deleted by a kill reads as
incomplete. `--resume` takes the newest complete checkpoint and skips the others, saying why; run
folders written before the marker existed are judged by their files alone.
"""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from artemis_cli.model import weights as W

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "checkpoint_complete.json"
TRAINER_STATE = "trainer_state.json"
# Stage files per stage (train.outputs.STAGE_FILES without the import of torch it would pull in).
_STAGE_FILES = {1: (W.PROJECTOR_FILE, "config.json"),
                2: ("config.json",),
                3: (W.ADAPTER_CONFIG, "adapter_model.safetensors", W.NON_LORA_FILE, "config.json")}


@dataclass(frozen=True)
class Skipped:
    checkpoint: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.checkpoint.name}: {self.reason}"


def checkpoint_step(folder: Path) -> Optional[int]:
    suffix = folder.name[len(CHECKPOINT_PREFIX):]
    return int(suffix) if folder.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def checkpoints(folder: Path) -> list[Path]:
    """``checkpoint-N`` folders, oldest first."""
    if not Path(folder).is_dir():
        return []
    found = [p for p in Path(folder).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def uses_marker(run_dir: Path) -> bool:
    """Whether this run writes completion markers (any checkpoint has one); older runs did not."""
    return any((p / COMPLETE_MARKER).is_file() for p in checkpoints(run_dir))


def mark_complete(folder: Path, global_step: int) -> None:
    """Written last, atomically: from here on the checkpoint counts."""
    from artemis_cli.common.atomic import atomic_write_json

    files = sorted(p.name for p in folder.iterdir() if p.name != COMPLETE_MARKER and not p.name.startswith("."))
    atomic_write_json(folder / COMPLETE_MARKER, {"global_step": global_step, "files": files})


def _zip_problem(path: Path) -> Optional[str]:
    """torch.save files are zip archives: a truncated one has no readable central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            if not archive.namelist():
                return f"{path.name} is empty"
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"{path.name} is not readable ({exc})"
    return None


def _safetensors_problem(path: Path) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            size = path.stat().st_size
            head = handle.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8:
                return f"{path.name} is truncated (header of {length} bytes in a {size}-byte file)"
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as exc:
        return f"{path.name} is not readable ({exc})"
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry]
    if ends and 8 + length + max(ends) > size:
        return f"{path.name} is truncated ({size} of {8 + length + max(ends)} bytes)"
    return None


def _file_problem(path: Path) -> Optional[str]:
    if not path.is_file():
        return f"{path.name} is missing"
    if path.suffix in (".bin", ".pt", ".pth"):
        return _zip_problem(path)
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"{path.name} is not readable JSON ({exc})"
    return None


def checkpoint_problem(folder: Path, stage: int, *, require_marker: bool) -> Optional[str]:
    """Why `folder` cannot be resumed from (None: complete and readable)."""
    if require_marker and not (folder / COMPLETE_MARKER).is_file():
        return f"incomplete: no {COMPLETE_MARKER} (the run was stopped while writing this checkpoint)"
    names = [TRAINER_STATE, *_STAGE_FILES[stage]]
    if stage == 2:
        names += [p.name for p in W.weight_files(folder)] or [W.SAFE_SINGLE]
    deepspeed_state = [p for p in folder.glob("global_step*") if p.is_dir()]
    if not deepspeed_state:
        names += ["optimizer.pt", "scheduler.pt"]
    for name in names:
        problem = _file_problem(folder / name)
        if problem:
            return problem
    try:
        state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{TRAINER_STATE} has no global_step"
    return None


def newest_complete(run_dir: Path, stage: int) -> tuple[Optional[Path], list[Skipped]]:
    """The newest checkpoint `--resume` can use, and the newer ones it skips with the reason."""
    require_marker = uses_marker(run_dir)
    skipped = []
    for folder in reversed(checkpoints(run_dir)):
        problem = checkpoint_problem(folder, stage, require_marker=require_marker)
        if problem is None:
            return folder, skipped
        skipped.append(Skipped(folder, problem))
    return None, skipped


def remove_checkpoint(folder: Path) -> None:
    """Marker first, so a kill halfway through leaves a folder that reads as incomplete."""
    (folder / COMPLETE_MARKER).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def rotate(run_dir: Path, limit: Optional[int], current: Path, stage: int) -> list[Path]:
    """`save_total_limit` over complete checkpoints only, by step (not by mtime: a half-deleted old
    folder has a new mtime). Incomplete ones of this run are removed and never counted; a folder
    without a marker whose files are all there (written before markers existed) counts as complete."""
    removed, complete = [], []
    for folder in checkpoints(run_dir):
        if folder == current or (folder / COMPLETE_MARKER).is_file() \
                or checkpoint_problem(folder, stage, require_marker=False) is None:
            complete.append(folder)
        elif checkpoint_step(folder) < checkpoint_step(current):
            remove_checkpoint(folder)
            removed.append(folder)
    if limit is not None and limit > 0:
        for folder in complete[:-limit]:
            if folder != current:
                remove_checkpoint(folder)
                removed.append(folder)
    return removed
