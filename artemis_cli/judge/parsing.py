"""Strict parsing of judge replies: a JSON object (a code fence around it is tolerated).

Unlike the published scripts (``ast.literal_eval`` then ``int(score)``), nothing is evaluated and a
reply that does not give a usable verdict raises `ReplyError`, which the runner retries and, after
the last attempt, reports as a failed item. A reply is never read as "no" or 0 by default.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from artemis_cli.judge.tasks import judge_task

SCORE_MIN, SCORE_MAX = 0, 5
_FENCE = re.compile(r"^```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)\n?[ \t]*```$", re.DOTALL)


class ReplyError(ValueError):
    """The judge's reply is not a valid verdict (the message says why)."""


_DIMENSION_LINE = re.compile(r"\d+\.\s+(.*?):\s+([\d.]+)")  # VideoRefer's published score regex


def parse_reply(text: str | None, task: Any) -> dict[str, Any]:
    """The verdict of a reply under `task`'s reply schema (a task name or `JudgeTask`):
    ``{"pred": "yes"|"no", "score": number}`` for a yes/no task (qa), ``{"scores": {dimension: number},
    "score": their mean}`` for a dimensions task (videorefer-d), else ``{"score": number}``.

    Scores are JSON numbers in 0..the task's maximum (5; RCap 10); a float such as 4.8 is kept as it
    is. Extra keys are ignored. The published prompt asks for a *Python* dict (``{'pred': 'yes',
    'score': 4}``); such a reply is read by a small quote-translating scanner, never by ``eval``.
    """
    if text is None or not text.strip():
        raise ReplyError("empty reply")
    spec = judge_task(task)
    if spec.reply == "dimensions":
        return _dimensions(text, spec.dimensions, spec.score_max)
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        translated = _python_dict_to_json(body)
        if translated is None:
            raise ReplyError(f"not JSON: {exc.msg} at column {exc.colno}") from None
        try:
            data = json.loads(translated)
        except json.JSONDecodeError:
            raise ReplyError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ReplyError(f"expected a JSON object, got {type(data).__name__}")
    verdict: dict[str, Any] = {}
    if spec.yes_no:
        pred = data.get("pred")
        if not isinstance(pred, str) or pred.strip().lower() not in ("yes", "no"):
            raise ReplyError(f"'pred' must be \"yes\" or \"no\", got {pred!r}")
        verdict["pred"] = pred.strip().lower()
    verdict["score"] = _score(data, spec.score_max)
    return verdict


def _score(data: dict[str, Any], score_max: int = SCORE_MAX) -> int | float:
    if "score" not in data:
        raise ReplyError("no 'score' key")
    score = data["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise ReplyError(f"'score' must be a number, got {score!r}")
    if not math.isfinite(score) or not SCORE_MIN <= score <= score_max:
        raise ReplyError(f"'score' {score!r} is outside {SCORE_MIN}-{score_max}")
    return score


def _dimensions(text: str, dimensions: tuple[str, ...], score_max: int) -> dict[str, Any]:
    """``N. <dimension>: <score>`` lines (the published regex), one per dimension, each in 0..score_max.

    Unlike the published scripts, which keep whatever the regex finds and silently leave a dimension
    out of its average when it is missing, a reply must score every dimension; markdown emphasis
    around a name (``**Subject Correspondence**``) is tolerated."""
    found: dict[str, float] = {}
    wanted = {name.lower(): name for name in dimensions}
    for name, value in _DIMENSION_LINE.findall(text):
        key = wanted.get(name.strip().strip("*_").strip().lower())
        if key is None or key in found:
            continue
        try:
            score = float(value.rstrip("."))
        except ValueError:
            raise ReplyError(f"{key}: {value!r} is not a number") from None
        if not SCORE_MIN <= score <= score_max:
            raise ReplyError(f"{key}: score {value} is outside {SCORE_MIN}-{score_max}")
        found[key] = int(score) if score.is_integer() else score
    missing = [name for name in dimensions if name not in found]
    if missing:
        raise ReplyError(f"no score line for {', '.join(missing)} (expected 'N. <dimension>: <score>')")
    scores = {name: found[name] for name in dimensions}
    return {"scores": scores, "score": sum(scores.values()) / len(scores)}


_PY_WORDS = {"True": "true", "False": "false", "None": "null"}


def _python_dict_to_json(text: str) -> str | None:
    """Rewrite a Python dict literal of strings/numbers into JSON, or None when it is not one.

    Only quotes, escapes and True/False/None are translated; the result still goes through
    `json.loads`, so anything that is not a plain literal fails there.
    """
    if not text.startswith("{"):
        return None
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "'\"":
            end, value = _read_python_string(text, i)
            if end is None:
                return None
            out.append(json.dumps(value))
            i = end
            continue
        word = re.match(r"[A-Za-z_]+", text[i:])
        if word:
            out.append(_PY_WORDS.get(word.group(0), word.group(0)))
            i += len(word.group(0))
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _read_python_string(text: str, start: int) -> tuple[int | None, str]:
    quote = text[start]
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
            continue
        if char == quote:
            return i + 1, "".join(chars)
        chars.append(char)
        i += 1
    return None, ""
