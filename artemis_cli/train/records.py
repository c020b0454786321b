"""Training records: read the annotation files of a stage, validate every record, resolve its files.

Each record is checked before training starts (pydantic model, the cross-field rules of
`data.records`, and with `check_files` that every file it references exists). A bad record stops
the run with its file and index; with ``skip_bad`` it is left out, counted and listed. It is never
replaced by a random other record (the reference did that silently).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from pydantic import ValidationError

from artemis_cli.data import records as R
from artemis_cli.data.layout import ListingCache
from artemis_cli.errors import InputError

MEDIA_TOKEN = re.compile(r"<image>|<video>")


@dataclass(frozen=True)
class ConversationItem:
    """A stage 1-2 record: turns as (speaker, text), resolved image files and video feature file."""

    ref: str  # "file[index]"
    turns: tuple[tuple[str, str], ...]
    images: tuple[Path, ...]
    video: Optional[Path]

    @property
    def modality_length(self) -> int:
        """Word count of all turns, negative for text-only records (the reference's grouping key)."""
        words = sum(len(text.split()) for _, text in self.turns)
        return words if (self.images or self.video) else -words


@dataclass(frozen=True)
class ReferringItem:
    """A stage 3 record with its clip feature file and frame folder resolved."""

    ref: str
    record: R.ReferringRecord
    clip: Path
    frame_dir: Path

    @property
    def modality_length(self) -> int:
        return len(self.record.caption.split())


Item = Union[ConversationItem, ReferringItem]


@dataclass(frozen=True)
class BadRecord:
    ref: str
    problem: str
    phase: str = "check"  # "check" (before training) or "load" (while training)

    def to_json(self) -> dict:
        return {"record": self.ref, "phase": self.phase, "problem": self.problem}


@dataclass
class RecordSet:
    items: list[Item] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    files: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> {records, kept, bad}


def annotation_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders expanded to their `.json` files (recursively, sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.json") if p.is_file())
            if not found:
                raise InputError(f"{path}: no .json annotation files in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: annotation file or folder not found")
    return files


class _Resolver:
    """Finds referenced files under the configured folders (one directory listing per folder)."""

    def __init__(self, image_folders: Sequence[Path], video_folders: Sequence[Path], check_files: bool):
        self.image_folders = [str(p) for p in image_folders]
        self.video_folders = [str(p) for p in video_folders]
        self.check_files = check_files
        self.listings = ListingCache()

    def find(self, relative: str, folders: list[str], what: str, *, folder: bool = False) -> Path:
        for base in folders:
            candidate = os.path.join(base, relative)
            if not self.check_files or (self.listings.is_dir(candidate) if folder else self.listings.is_file(candidate)):
                return Path(candidate)
        raise ValueError(f"{what} {relative!r} not found in {' or '.join(folders)}")

    def conversation(self, ref: str, raw: dict) -> ConversationItem:
        record = R.ConversationRecord.model_validate(raw)
        problems = [f"{where}: {message}" for where, message in R.conversation_rules(record)]
        if problems:
            raise ValueError("; ".join(problems))
        images = tuple(self.find(name, self.image_folders, "image") for name in record.images)
        video = self.find(record.video_clip, self.video_folders, "video_clip") if record.video is not None else None
        human = " ".join(turn.value for turn in record.conversations if turn.speaker == "human")
        tokens = MEDIA_TOKEN.findall(human)
        if tokens.count("<image>") != len(images):
            raise ValueError(f"{tokens.count('<image>')} <image> token(s) in the human turns but {len(images)} image(s)")
        turns = tuple((turn.speaker, turn.value) for turn in record.conversations)
        return ConversationItem(ref=ref, turns=turns, images=images, video=video)

    def referring(self, ref: str, raw: dict) -> ReferringItem:
        record = R.ReferringRecord.model_validate(raw)
        problems = [f"{where}: {message}" for where, message in R.referring_rules(record)]
        if problems:
            raise ValueError("; ".join(problems))
        clip = self.find(record.clip_path, self.video_folders, "clip_path")
        frame_dir = self.find(record.frame_path, self.video_folders, "frame_path", folder=True)
        if self.check_files:
            present = self.listings.files_in(str(frame_dir)) or frozenset()
            needed = [str(record.frame_id[i]) for i, box in enumerate(record.track_list) if box]
            if record.key_frame_box and record.key_frame_id:
                needed.append(str(record.key_frame_id))
            missing = sorted({name for name in needed if name not in present})
            if missing:
                shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                raise ValueError(f"{len(missing)} tracked frame(s) missing in {frame_dir}: {shown}")
        return ReferringItem(ref=ref, record=record, clip=clip, frame_dir=frame_dir)


def _problem_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(record)"
            parts.append(f"{where}: {'missing required field' if err['type'] == 'missing' else err['msg']}")
        return "; ".join(parts)
    return str(exc)


def read_records(paths: Sequence[Path], kind: str, *, image_folders: Sequence[Path] = (),
                 video_folders: Sequence[Path] = (), check_files: bool = True) -> RecordSet:
    """Read and check every record of the annotation files (`kind`: ``conversation`` or ``referring``).

    Returns the good records as items plus every bad one; raises only for unreadable files."""
    from artemis_cli.common.jsonio import load_json

    resolver = _Resolver(image_folders, video_folders, check_files)
    build = resolver.conversation if kind == "conversation" else resolver.referring
    result = RecordSet()
    for path in annotation_files(paths):
        data = load_json(path)
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of records, got a JSON {type(data).__name__}")
        counts = {"records": len(data), "kept": 0, "bad": 0}
        for index, raw in enumerate(data):
            ref = f"{path}[{index}]"
            try:
                if not isinstance(raw, dict):
                    raise ValueError(f"expected an object, got {type(raw).__name__}")
                result.items.append(build(ref, raw))
                counts["kept"] += 1
            except (ValidationError, ValueError) as exc:
                result.bad.append(BadRecord(ref, _problem_text(exc)))
                counts["bad"] += 1
        result.files[str(path)] = counts
    return result


def bad_records_error(bad: Sequence[BadRecord], limit: int = 10) -> InputError:
    """The error that stops a run on bad records: the first `limit` listed with file and index."""
    lines = [f"{b.ref}: {b.problem}" for b in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more")
    return InputError(f"{len(bad)} bad record(s)\n  " + "\n  ".join(lines),
                      hint="fix the records, or pass --skip-bad to leave them out (they are listed in the run folder)")
