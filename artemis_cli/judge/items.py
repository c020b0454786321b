"""Prediction records -> judge items (id, placeholder fields, content hash).

A task reads the prediction record of its `JudgeTask.prediction` schema, the one `artemis infer`
writes: QA lines ``{"id", "question", "answer", "pred"}`` (ids must be unique), Video-ChatGPT lines
``{"video_name", "Q", "A", "pred", "id"}`` and the consistency set ``{"video_name", "Q1", "Q2", "A",
"pred1", "pred2", "id"}``. A placeholder's text may also come under its own name (``question`` for
``Q``). An item's id is the line's `id` as `infer` wrote it; a Video-ChatGPT line without both a
`video_name` and an `id` (the published scripts' files) is numbered ``<video_name>_<k>``, k counting
earlier records of the same video (`data.benchmarks.numbered_id`), as the published scripts did.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from artemis_cli.data.benchmarks import PredictionSchema, numbered_id
from artemis_cli.common.validation import validation_problems
from artemis_cli.errors import InputError
from artemis_cli.judge.tasks import JudgeTask, judge_task

_TEXT = ConfigDict(extra="ignore", coerce_numbers_to_str=True, populate_by_name=True)


def record_model(schema: PredictionSchema) -> type[BaseModel]:
    """The pydantic model of one prediction line: each text role under its key (or its role name)."""
    return _record_model(schema.name, tuple(schema.roles.items()))


@lru_cache(maxsize=None)
def _record_model(name: str, roles: tuple[tuple[str, str], ...]) -> type[BaseModel]:
    fields: dict[str, Any] = {role: (str, Field(alias=key) if key != role else ...) for role, key in roles
                              if role != "video"}
    video = dict(roles).get("video")
    if video is not None:
        fields.update(video=(Optional[str], Field(None, alias=video)), id=(Optional[str], None))
    else:
        fields["id"] = (str, ...)
    return create_model(f"{name.title()}Prediction", __config__=_TEXT, **fields)


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


def load_items(task: "str | JudgeTask", predictions: Union[str, os.PathLike, Iterable[dict[str, Any]]]) -> list[JudgeItem]:
    """Read a predictions file (`.jsonl` or a `.json` list), or take records, and build the items.

    Every malformed record is reported at once (up to 20 listed) as an `InputError`.
    """
    from artemis_cli.common.jsonio import load_records

    if isinstance(predictions, (str, os.PathLike)):
        source = str(predictions)
        numbered_lines = load_records(predictions)
    else:
        source = "predictions"
        numbered_lines = list(enumerate(predictions))
    spec = judge_task(task)
    model = record_model(spec.prediction)
    numbered = "video" in spec.prediction.roles
    items: list[JudgeItem] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for line, record in numbered_lines:
        if not isinstance(record, dict):
            problems.append(f"{source}:{line}: expected a JSON object, got {type(record).__name__}")
            continue
        try:
            parsed = model.model_validate(record)
        except ValidationError as exc:
            problems.extend(f"{source}:{line}: {problem}" for problem in validation_problems(exc))
            continue
        fields = parsed.model_dump(include=set(spec.placeholders))
        if not numbered or (parsed.video is not None and parsed.id is not None):
            item_id = parsed.id
        elif parsed.video is None and parsed.id is None:
            problems.append(f"{source}:{line}: needs '{spec.prediction.roles['video']}' or 'id'")
            continue
        else:
            item_id = numbered_id(parsed.video if parsed.video is not None else parsed.id, seen)
        if item_id in first_line:
            problems.append(f"{source}:{line}: duplicate id {item_id!r} (first at {first_line[item_id]})")
            continue
        first_line[item_id] = line
        items.append(JudgeItem(id=item_id, fields=fields, line=line))
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise InputError(
            f"{source}: {len(problems)} malformed prediction record(s) for task {spec.name}\n{listed}{more}",
            hint=_record_hint(spec),
        )
    if not items:
        raise InputError(f"{source}: no prediction records", hint=_record_hint(spec))
    return items


def _record_hint(task: JudgeTask) -> str:
    what = {"qa": "QA", "consistency": "consistency"}.get(task.prediction.name, "Video-ChatGPT")
    return f"{what} lines look like {task.prediction.example()}"
