"""The judge's output folder: per-item `judgments.jsonl`, `run.json`, `summary.json`, `manifest.json`.

`judgments.jsonl` has one line per item, ``status`` "judged" or "failed". It is written through
`ResumableJsonl`, so a killed run resumes where it stopped; failed lines are dropped when a run
starts, so a rerun tries those items again. `run.json` records what the lines were judged with
(task, model, prompt hash, predictions hash); a later run with other settings refuses to mix them in.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artemis_cli.judge.client import Outcome
from artemis_cli.judge.items import JudgeItem
from artemis_cli.judge.tasks import judge_task

JUDGMENTS = "judgments.jsonl"
RUN_FILE = "run.json"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"

SUMMARY_KEYS = ("task", "model", "base_url", "temperature", "prompt_hash", "served_models", "n_items", "n_judged",
                "n_failed", "n_cached", "n_missing_predictions", "accuracy", "mean_score", "score_max",
                "mean_score_failures_as_zero", "dimension_scores", "failed_ids")


@dataclass
class JudgeSummary:
    """What `judge` returns. `to_json()` gives exactly the documented summary keys."""

    task: str
    model: str
    n_items: int
    base_url: str | None = None  # None: the OpenAI API
    temperature: float | None = None  # as sent (None: the server's default)
    prompt_hash: str | None = None
    served_models: list[str] = field(default_factory=list)
    n_judged: int = 0
    n_failed: int = 0
    n_cached: int = 0
    n_missing_predictions: int | None = None  # ids `infer` was asked for that have no prediction line
    accuracy: float | None = None
    mean_score: float | None = None  # over judged items (the published scripts' denominator)
    score_max: int = 5
    mean_score_failures_as_zero: float | None = None  # every item, failed and missing ones counted 0
    dimension_scores: dict[str, float] | None = None  # per-dimension means (videorefer-d)
    failed_ids: list[str] = field(default_factory=list)
    n_yes: int = 0
    n_no: int = 0
    n_calls: int = 0
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    failures: list[dict[str, Any]] = field(default_factory=list)
    output_dir: Path | None = None
    dry_run: bool = False
    calls_needed: int = 0
    est_prompt_tokens: int = 0
    est_completion_tokens: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in SUMMARY_KEYS}

    def dry_run_json(self) -> dict[str, Any]:
        return {"task": self.task, "model": self.model, "n_items": self.n_items, "n_cached": self.n_cached,
                "calls_needed": self.calls_needed, "est_prompt_tokens": self.est_prompt_tokens,
                "est_completion_tokens": self.est_completion_tokens}


def default_output_dir(predictions: Path, task: str, model: str) -> Path:
    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", model)
    return predictions.parent / f"{predictions.stem}.judge-{task}-{safe_model}"


def predictions_hash(items: list[JudgeItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.id}\0{item.content_hash}\n".encode("utf-8"))
    return digest.hexdigest()[:16]


def check_run_file(out: Path, identity: dict[str, str], overwrite: bool) -> None:
    """Refuse to resume into `out` when its lines were judged with other settings (unless `overwrite`)."""
    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.common.jsonio import load_json
    from artemis_cli.common.manifest import refuse_other_settings

    run_file = out / RUN_FILE
    if overwrite:
        for name in (JUDGMENTS, SUMMARY):
            (out / name).unlink(missing_ok=True)
    elif run_file.exists() or (out / JUDGMENTS).exists():
        previous = load_json(run_file) if run_file.exists() else {}
        refuse_other_settings(out, previous, identity, hint="pass --overwrite to start over (cached verdicts are "
                                                            "reused) or choose another --output")
    atomic_write_json(run_file, identity)


def load_judged(path: Path) -> dict[str, dict[str, Any]]:
    """Repair a torn last line, drop failed lines (so they are retried), return judged records by id."""
    from artemis_cli.common.atomic import atomic_write_text
    from artemis_cli.common.jsonio import iter_jsonl
    from artemis_cli.common.jsonl_writer import ResumableJsonl

    if not path.exists():
        return {}
    with ResumableJsonl(path):
        pass
    records = [record for _, record in iter_jsonl(path)]
    judged = {str(r.get("id")): r for r in records if isinstance(r, dict) and r.get("status") == "judged"}
    if len(judged) != len(records):
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in judged.values()))
    return judged


def judged_record(item: JudgeItem, outcome: Outcome, cached: bool) -> dict[str, Any]:
    return {"id": item.id, "status": "judged", "verdict": outcome.verdict, "attempts": outcome.attempts,
            "served_model": outcome.served_model, "cached": cached, "raw_reply": outcome.raw_reply,
            "usage": outcome.usage, "item": item.fields}


def failed_record(item: JudgeItem, outcome: Outcome) -> dict[str, Any]:
    return {"id": item.id, "status": "failed", "verdict": None, "attempts": outcome.attempts,
            "served_model": outcome.served_model, "cached": False, "raw_reply": outcome.raw_reply,
            "error": outcome.error, "errors": outcome.errors, "item": item.fields}


def aggregate(summary: JudgeSummary, items: list[JudgeItem], records: dict[str, dict[str, Any]],
              expected_ids: list[str] | None = None) -> None:
    """Fill counts, mean score (and per dimension) over judged items, the mean over every item with failed
    and missing ones counted 0, and, for a yes/no task (qa), accuracy = yes / (yes + no) over judged items.

    `expected_ids` are the ids `infer` was asked for (its manifest): those without a prediction line
    are counted as missing predictions."""
    spec = judge_task(summary.task)
    judged = [records[item.id] for item in items if records.get(item.id, {}).get("status") == "judged"]
    failed = [records[item.id] for item in items if records.get(item.id, {}).get("status") == "failed"]
    summary.n_judged, summary.n_failed = len(judged), len(failed)
    summary.failed_ids = [r["id"] for r in failed]
    summary.failures = [{"id": r["id"], "error": r["error"], "raw_reply": r["raw_reply"], "attempts": r["attempts"]}
                        for r in failed]
    summary.served_models = sorted({r["served_model"] for r in judged if r.get("served_model")})
    scores = [r["verdict"]["score"] for r in judged]
    summary.mean_score = sum(scores) / len(scores) if scores else None
    summary.score_max = spec.score_max
    if expected_ids is not None:
        present = {item.id for item in items}
        summary.n_missing_predictions = sum(1 for key in expected_ids if key not in present)
    every = len(items) + (summary.n_missing_predictions or 0)
    summary.mean_score_failures_as_zero = sum(scores) / every if every else None
    if spec.dimensions:
        summary.dimension_scores = {name: sum(r["verdict"]["scores"][name] for r in judged) / len(judged)
                                    for name in spec.dimensions} if judged else None
    if judge_task(summary.task).yes_no:
        summary.n_yes = sum(r["verdict"]["pred"] == "yes" for r in judged)
        summary.n_no = sum(r["verdict"]["pred"] == "no" for r in judged)
        answered = summary.n_yes + summary.n_no
        summary.accuracy = summary.n_yes / answered if answered else None


def write_results(out: Path, summary: JudgeSummary, manifest_fields: dict[str, Any]) -> None:
    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.common.manifest import write_manifest

    atomic_write_json(out / SUMMARY, summary.to_json())
    write_manifest(out / MANIFEST, "artemis judge gpt", **manifest_fields,
                   n_yes=summary.n_yes, n_no=summary.n_no, n_calls=summary.n_calls, usage=summary.usage,
                   failures=summary.failures)
