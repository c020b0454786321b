"""Prediction records -> judge items (id, placeholder fields, content hash).

QA files (as written by the Video-QA inference scripts) have lines ``{"id", "question", "answer",
"pred"}``; ids must be unique. Video-ChatGPT files have ``{"video_name" (or "id"), "Q", "A", "pred"}``
and the consistency set ``{"video_name", "Q1", "Q2", "A", "pred1", "pred2"}``. As in the published
scripts, a Video-ChatGPT item's id is ``<video_name>_<k>`` where k counts earlier records of the
same video (0 for the first), since one video carries several questions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from artemis_cli.errors import InputError

_TEXT = ConfigDict(extra="ignore", coerce_numbers_to_str=True, populate_by_name=True)


class QARecord(BaseModel):
    model_config = _TEXT
    id: str
    question: str
    answer: str
    pred: str


class _VideoRecord(BaseModel):
    model_config = _TEXT
    video_name: Optional[str] = None
    id: Optional[str] = None


class BenchmarkRecord(_VideoRecord):
    question: str = Field(alias="Q")
    answer: str = Field(alias="A")
    pred: str


class ConsistencyRecord(_VideoRecord):
    question1: str = Field(alias="Q1")
    question2: str = Field(alias="Q2")
    answer: str = Field(alias="A")
    pred1: str
    pred2: str


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge: its id, the text for each placeholder, and a hash of that text."""

    id: str
    fields: dict[str, str]
    line: int

    @property
    def content_hash(self) -> str:
        canonical = json.dumps(self.fields, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


MAX_LISTED = 20


def load_items(task: str, predictions: Union[str, os.PathLike, Iterable[dict[str, Any]]]) -> list[JudgeItem]:
    """Read a predictions file (`.jsonl` or a `.json` list), or take records, and build the items.

    Every malformed record is reported at once (up to 20 listed) as an `InputError`.
    """
    from artemis_cli.common.jsonio import load_records

    if isinstance(predictions, (str, os.PathLike)):
        source = str(predictions)
        numbered = load_records(predictions)
    else:
        source = "predictions"
        numbered = list(enumerate(predictions))
    model = {"qa": QARecord, "consistency": ConsistencyRecord}.get(task, BenchmarkRecord)
    items: list[JudgeItem] = []
    problems: list[str] = []
    seen: Counter[str] = Counter()
    first_line: dict[str, int] = {}
    for line, record in numbered:
        if not isinstance(record, dict):
            problems.append(f"{source}:{line}: expected a JSON object, got {type(record).__name__}")
            continue
        try:
            parsed = model.model_validate(record)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"{source}:{line}: {where}: {err['msg']}")
            continue
        fields = parsed.model_dump(include=set(_field_names(task)))
        if task == "qa":
            item_id = parsed.id
            if item_id in first_line:
                problems.append(f"{source}:{line}: duplicate id {item_id!r} (first at {first_line[item_id]})")
                continue
            first_line[item_id] = line
        else:
            base = parsed.video_name if parsed.video_name is not None else parsed.id
            if base is None:
                problems.append(f"{source}:{line}: needs 'video_name' or 'id'")
                continue
            item_id = f"{base}_{seen[base]}"
            seen[base] += 1
        items.append(JudgeItem(id=item_id, fields=fields, line=line))
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise InputError(
            f"{source}: {len(problems)} malformed prediction record(s) for task {task}\n{listed}{more}",
            hint=_record_hint(task),
        )
    if not items:
        raise InputError(f"{source}: no prediction records", hint=_record_hint(task))
    return items


def _field_names(task: str) -> tuple[str, ...]:
    from artemis_cli.judge.prompts import PLACEHOLDERS

    return PLACEHOLDERS[task]


def _record_hint(task: str) -> str:
    if task == "qa":
        return 'QA lines look like {"id": ..., "question": ..., "answer": ..., "pred": ...}'
    if task == "consistency":
        return 'consistency lines look like {"video_name": ..., "Q1": ..., "Q2": ..., "A": ..., "pred1": ..., "pred2": ...}'
    return 'Video-ChatGPT lines look like {"video_name": ..., "Q": ..., "A": ..., "pred": ...}'
