"""Multiple-choice scoring (VideoRefer-Bench-Q): the published letter regex, micro average and per type.

The published script (DAMO-NLP-SG/VideoRefer videorefer/eval/eval_videorefer_bench_q.py) reads the
answer's letter with ``\\(([A-Z])\\)``, and the prediction's with ``\\(([A-Z])\\)``, then ``([A-Z])\\)``,
else its first character after removing dots; it compares them case-insensitively and reports the
accuracy per question type and over all questions (a micro average). Kept here, with what the
published script does not do: an empty prediction (where it stops with an IndexError) is wrong and
counted, a prediction whose letter came from the first-character fallback is counted, and questions
that `artemis infer` was asked but could not answer (ids in its manifest without a prediction line)
are counted wrong, never dropped. A prediction made by option log-likelihood (``scoring`` in the line)
is reported as such.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from artemis_cli.common.validation import validation_problems
from artemis_cli.errors import InputError

_PAREN = re.compile(r"\(([A-Z])\)")
_CLOSE = re.compile(r"([A-Z])\)")
MCQ_KEYS = ("options", "answer", "type", "pred")  # what tells an MCQ prediction file from a caption one


class MCQLine(BaseModel):
    """One `artemis infer videorefer-q` line (other keys are kept but not read)."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)
    id: StrictStr
    answer: StrictStr
    type: StrictStr = "all"
    pred: StrictStr
    n_regions: Optional[StrictInt] = None
    scoring: StrictStr = Field("generate")


def answer_letter(text: str) -> Optional[str]:
    """The ground truth's letter: ``(B) a red car`` -> ``B``."""
    match = _PAREN.search(text)
    return match.group(1) if match else None


def predicted_letter(text: str) -> tuple[Optional[str], str]:
    """(letter, how): the published rules, ``how`` being ``paren``, ``close``, ``first_char`` or ``empty``."""
    match = _PAREN.search(text)
    if match:
        return match.group(1), "paren"
    match = _CLOSE.search(text)
    if match:
        return match.group(1), "close"
    stripped = text.replace(".", "")
    if not stripped:
        return None, "empty"
    return stripped[0], "first_char"


@dataclass
class MCQReport:
    """Accuracy over every question (micro) and per type, with what was counted wrong and why."""

    n_questions: int = 0
    n_correct: int = 0
    n_first_char: int = 0  # letters read by the published first-character fallback
    n_empty: int = 0  # empty predictions (wrong)
    n_missing_predictions: int = 0  # asked but not answered by `infer` (wrong)
    n_multi_region: int = 0  # questions about several objects (Artemis' RoI is the first one)
    scoring: list[str] = field(default_factory=list)  # how the predictions were made (generate, loglikelihood)
    per_type: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def accuracy(self) -> Optional[float]:
        return self.n_correct / self.n_questions if self.n_questions else None

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": "videorefer-q", "protocol": "published letter regex, micro average",
                "scoring": self.scoring, "n_questions": self.n_questions, "n_correct": self.n_correct,
                "accuracy": self.accuracy, "n_first_char": self.n_first_char, "n_empty": self.n_empty,
                "n_missing_predictions": self.n_missing_predictions, "n_multi_region": self.n_multi_region,
                "per_type": self.per_type}


def score_mcq(records: list[tuple[str, Any]], expected_ids: Optional[list[str]] = None) -> MCQReport:
    """Score ``(location, line)`` pairs; `expected_ids` (the infer manifest's) adds the unanswered ones as wrong.

    A malformed line is an `InputError` naming its location; so is a ground truth without a letter."""
    report = MCQReport()
    counts: dict[str, list[int]] = {}
    seen: set[str] = set()
    problems = []
    scoring = set()
    for location, raw in records:
        try:
            line = MCQLine.model_validate(raw)
        except ValidationError as exc:
            problems.extend(f"{location}: {p}" for p in validation_problems(exc))
            continue
        truth = answer_letter(line.answer)
        if truth is None:
            problems.append(f"{location}: answer: no option letter like '(A)' in {line.answer!r}")
            continue
        seen.add(line.id)
        letter, how = predicted_letter(line.pred)
        report.n_first_char += how == "first_char"
        report.n_empty += how == "empty"
        report.n_multi_region += (line.n_regions or 1) > 1
        scoring.add(line.scoring)
        correct = letter is not None and letter.lower() == truth.lower()
        total, right = counts.setdefault(line.type, [0, 0])
        counts[line.type] = [total + 1, right + correct]
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:20])
        raise InputError(f"{len(problems)} malformed multiple-choice prediction(s)\n{listed}",
                         hint="score the .jsonl that `artemis infer videorefer-q` wrote")
    if expected_ids is not None:
        report.n_missing_predictions = sum(1 for key in expected_ids if key not in seen)
        if report.n_missing_predictions:
            total, right = counts.setdefault("(not answered)", [0, 0])
            counts["(not answered)"] = [total + report.n_missing_predictions, right]
    report.n_questions = sum(total for total, _ in counts.values())
    report.n_correct = sum(right for _, right in counts.values())
    report.per_type = {name: {"n": total, "correct": right, "accuracy": right / total}
                       for name, (total, right) in counts.items()}
    report.scoring = sorted(scoring)
    return report


def is_mcq_predictions(path: str | os.PathLike) -> bool:
    """Whether a prediction file holds multiple-choice lines (its first complete line has the MCQ keys),
    for `artemis score` to pick the scorer. An unreadable file is left to the caption scorer to report."""
    from artemis_cli.common.jsonio import load_records

    try:
        records = load_records(path, skip_bad=True)
    except (InputError, OSError):
        return False
    return bool(records) and isinstance(records[0][1], dict) and all(key in records[0][1] for key in MCQ_KEYS)


def score_mcq_file(path: str | os.PathLike) -> MCQReport:
    """Read a `.jsonl` / `.json` prediction file and `score_mcq` it, counting the ids its infer manifest
    names without a prediction line."""
    from artemis_cli.common.jsonio import load_records
    from artemis_cli.data.benchmarks import recorded_input_ids

    path = Path(path)
    loaded = load_records(path)
    if not loaded:
        raise InputError(f"{path}: holds no prediction records (the file is empty)")
    return score_mcq([(f"{path}:{n}", record) for n, record in loaded], recorded_input_ids(path))
