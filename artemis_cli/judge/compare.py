"""`judge compare`: how much a judge swap moves the numbers, from two judges' outputs on the same predictions.

Each side is an `artemis judge gpt` output folder (its `judgments.jsonl` and `manifest.json`: every
verdict is already there, so nothing is called). Items pair by id and must hold the same text on both
sides (the same predictions judged with the same task); only items judged on both sides are compared.
Reported: Pearson and Spearman correlation of the scores, the mean shift (B - A) and mean absolute
difference, exact score agreement and Cohen's kappa on the scores rounded to integers; for a yes/no
task the yes/no agreement and its Cohen's kappa; for a dimensions task (videorefer-d) the shift and
correlation per dimension.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from artemis_cli.errors import InputError, UsageError
from artemis_cli.judge.output import JUDGMENTS, MANIFEST, RUN_FILE
from artemis_cli.judge.tasks import judge_task

JUDGE_FIELDS = ("task", "model", "base_url", "temperature", "prompt_hash")


@dataclass
class JudgeSide:
    folder: Path
    judge: dict[str, Any]  # JUDGE_FIELDS as recorded
    verdicts: dict[str, dict[str, Any]]  # id -> judged record
    n_failed: int


@dataclass
class CompareReport:
    a: JudgeSide
    b: JudgeSide
    task: str
    n_paired: int = 0
    n_only_a: int = 0
    n_only_b: int = 0
    n_failed_either: int = 0
    n_text_differs: int = 0
    scores: dict[str, Any] = field(default_factory=dict)
    yes_no: Optional[dict[str, Any]] = None
    dimensions: Optional[dict[str, dict[str, Any]]] = None

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task,
                "a": {**self.a.judge, "folder": str(self.a.folder), "n_judged": len(self.a.verdicts),
                      "n_failed": self.a.n_failed},
                "b": {**self.b.judge, "folder": str(self.b.folder), "n_judged": len(self.b.verdicts),
                      "n_failed": self.b.n_failed},
                "n_paired": self.n_paired, "n_only_a": self.n_only_a, "n_only_b": self.n_only_b,
                "n_failed_either": self.n_failed_either, "n_text_differs": self.n_text_differs,
                "scores": self.scores, "yes_no": self.yes_no, "dimensions": self.dimensions}


def read_side(folder: Path) -> JudgeSide:
    """One judge's output folder: what judged (manifest or run.json) and its verdicts by id."""
    from artemis_cli.common.jsonio import iter_jsonl, load_json

    folder = Path(folder)
    if not (folder / JUDGMENTS).is_file():
        raise InputError(f"{folder}: no {JUDGMENTS} (not an `artemis judge gpt` output folder)",
                         hint="pass the folders `artemis judge gpt` wrote (its --output)")
    recorded: dict[str, Any] = {}
    for name in (RUN_FILE, MANIFEST):  # the manifest (written last) knows the base URL and temperature
        if (folder / name).is_file():
            data = load_json(folder / name)
            if isinstance(data, dict):
                recorded.update({key: data[key] for key in JUDGE_FIELDS if key in data})
    if "task" not in recorded or "model" not in recorded:
        raise InputError(f"{folder}: no {RUN_FILE} / {MANIFEST} naming the task and model")
    verdicts, failed = {}, 0
    for line, record in iter_jsonl(folder / JUDGMENTS):
        if not isinstance(record, dict) or "id" not in record:
            raise InputError(f"{folder / JUDGMENTS}:{line}: not a judgment line")
        if record.get("status") == "judged" and isinstance(record.get("verdict"), dict):
            verdicts[str(record["id"])] = record
        else:
            failed += 1
    return JudgeSide(folder, {key: recorded.get(key) for key in JUDGE_FIELDS}, verdicts, failed)


def compare_judges(a: Path, b: Path) -> CompareReport:
    """Agreement between the judges of two output folders on the items both judged (see module docstring)."""
    side_a, side_b = read_side(a), read_side(b)
    if side_a.judge["task"] != side_b.judge["task"]:
        raise UsageError(f"{a} judged --task {side_a.judge['task']} but {b} judged --task {side_b.judge['task']}",
                         hint="compare two judges of the same task on the same predictions")
    task = judge_task(side_a.judge["task"])
    report = CompareReport(side_a, side_b, task.name)
    ids_a, ids_b = set(side_a.verdicts), set(side_b.verdicts)
    report.n_only_a, report.n_only_b = len(ids_a - ids_b), len(ids_b - ids_a)
    report.n_failed_either = side_a.n_failed + side_b.n_failed
    pairs = []
    for key in sorted(ids_a & ids_b):
        left, right = side_a.verdicts[key], side_b.verdicts[key]
        if left.get("item") != right.get("item"):
            report.n_text_differs += 1
            continue
        pairs.append((left["verdict"], right["verdict"]))
    report.n_paired = len(pairs)
    if not pairs:
        raise InputError(f"{a} and {b} have no item judged on both sides with the same text",
                         hint="judge the same predictions file with both judges")
    report.scores = score_agreement([p[0]["score"] for p in pairs], [p[1]["score"] for p in pairs])
    if task.yes_no:
        left = [p[0]["pred"] for p in pairs]
        right = [p[1]["pred"] for p in pairs]
        report.yes_no = {"agreement": _agreement(left, right), "kappa": cohen_kappa(left, right),
                         "yes_rate_a": left.count("yes") / len(left), "yes_rate_b": right.count("yes") / len(right)}
    if task.dimensions:
        report.dimensions = {}
        for name in task.dimensions:
            left = [p[0]["scores"][name] for p in pairs]
            right = [p[1]["scores"][name] for p in pairs]
            stats = score_agreement(left, right)
            report.dimensions[name] = {key: stats[key] for key in ("mean_a", "mean_b", "mean_shift", "pearson")}
    return report


def score_agreement(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Means, shift (b - a), mean absolute difference, Pearson, Spearman, exact and kappa on rounded scores."""
    n = len(a)
    mean_a, mean_b = sum(a) / n, sum(b) / n
    rounded_a, rounded_b = [round(v) for v in a], [round(v) for v in b]
    return {"n": n, "mean_a": mean_a, "mean_b": mean_b, "mean_shift": mean_b - mean_a,
            "mean_abs_diff": sum(abs(x - y) for x, y in zip(a, b)) / n, "pearson": pearson(a, b),
            "spearman": pearson(_ranks(a), _ranks(b)), "exact_agreement": _agreement(rounded_a, rounded_b),
            "kappa": cohen_kappa(rounded_a, rounded_b)}


def pearson(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Pearson's r; None when either side is constant (r is undefined)."""
    n = len(a)
    mean_a, mean_b = sum(a) / n, sum(b) / n
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    if var_a == 0 or var_b == 0:
        return None
    return cov / math.sqrt(var_a * var_b)


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank (Spearman's convention)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _agreement(a: Sequence[Any], b: Sequence[Any]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> Optional[float]:
    """Cohen's kappa: (p_o - p_e) / (1 - p_e); None when chance agreement is 1 (both judges constant)."""
    n = len(a)
    observed = _agreement(a, b)
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[label] * count_b[label] for label in set(count_a) | set(count_b)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)
