"""Training records: read the annotation files of a stage, validate every record, resolve its files.

Each record is checked before training starts (pydantic model, the cross-field rules of
`data.records`, and with `check_files` that every file it reads exists, through the resolver
`data verify-layout` uses). A bad record stops
the run with its file and index; with ``skip_bad`` it is left out, counted and listed. It is never
replaced by a random other record (the reference did that silently).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from pydantic import ValidationError

from artemis_cli.common.media import IMAGE_TOKEN, MEDIA_TOKEN
from artemis_cli.common.validation import validation_problems
from artemis_cli.data import records as R
from artemis_cli.data.annotations import ReferenceResolver
from artemis_cli.errors import InputError



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


def _conversation(resolver: ReferenceResolver, ref: str, raw: dict) -> ConversationItem:
    record = R.ConversationRecord.model_validate(raw)
    problems = R.conversation_rules(record)
    images, video, missing = resolver.conversation(record)
    problems += missing
    if problems:
        raise ValueError("; ".join(f"{where}: {message}" for where, message in problems))
    human = " ".join(turn.value for turn in record.conversations if turn.speaker == "human")
    tokens = MEDIA_TOKEN.findall(human)
    if tokens.count(IMAGE_TOKEN) != len(images):
        raise ValueError(f"{tokens.count(IMAGE_TOKEN)} {IMAGE_TOKEN} token(s) in the human turns but {len(images)} image(s)")
    turns = tuple((turn.speaker, turn.value) for turn in record.conversations)
    return ConversationItem(ref=ref, turns=turns, images=tuple(images), video=video)


def _referring(resolver: ReferenceResolver, ref: str, raw: dict) -> ReferringItem:
    record = R.ReferringRecord.model_validate(raw)
    problems = R.referring_rules(record)
    clip, frame_dir, missing = resolver.referring(record)
    problems += missing
    if problems:
        raise ValueError("; ".join(f"{where}: {message}" for where, message in problems))
    return ReferringItem(ref=ref, record=record, clip=clip, frame_dir=frame_dir)


def _problem_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(validation_problems(exc, root="(record)", missing="missing required field"))
    return str(exc)


def read_records(paths: Sequence[Path], kind: str, *, image_folders: Sequence[Path] = (),
                 video_folders: Sequence[Path] = (), check_files: bool = True, root: Optional[Path] = None) -> RecordSet:
    """Read and check every record of the annotation files (`kind`: ``conversation`` or ``referring``).

    Records and their files are checked by `data.annotations.ReferenceResolver`, as `data
    verify-layout` checks them (`root`, the DATA_ROOT, only shortens messages). Returns the good
    records as items plus every bad one; raises only for unreadable files."""
    from artemis_cli.common.jsonio import load_json

    resolver = ReferenceResolver(image_folders, video_folders, check_files=check_files, root=root)
    build = functools.partial(_conversation if kind == "conversation" else _referring, resolver)
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
