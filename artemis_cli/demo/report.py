"""The demo's ``report.md``: every step with its status and time, scores, judge results, loss plots,
the environment and the commands that repeat each step."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

from artemis_cli.demo.results import DemoResult, StepRecord
from artemis_cli.demo.workspace import REAL_COMMANDS, DemoOptions, Workspace, demo_commands

METRIC_HEADERS = {"Bleu_1": "B@1", "Bleu_2": "B@2", "Bleu_3": "B@3", "Bleu_4": "B@4", "METEOR": "METEOR",
                  "ROUGE_L": "ROUGE_L", "CIDEr": "CIDEr", "SPICE": "SPICE"}


def step_time(record: StepRecord) -> str:
    if record.status in ("skipped", "not run"):
        return "-"
    return f"{record.seconds:.1f} s" + (" (earlier run)" if record.status == "reused" else "")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _score_section(record: StepRecord | None) -> list[str]:
    score = record.data.get("score") if record is not None else None
    if not score:
        return ["Not computed (the score step did not finish)."]
    metrics = score["metrics"]
    lines = [f"VideoRefBench captions, {score['n_scored']} records, pycocoevalcap metrics x100 "
             "(scored without the 6-299 character filter: a random model's answers may be empty).", "",
             "| " + " | ".join(METRIC_HEADERS.values()) + " |", "|" + " ---: |" * len(METRIC_HEADERS),
             "| " + " | ".join(_pct(metrics.get(name)) for name in METRIC_HEADERS) + " |", ""]
    lines += [f"- {name} unavailable: {reason}" for name, reason in score.get("unavailable", {}).items()]
    return lines


def _judge_section(record: StepRecord | None) -> list[str]:
    if record is None:
        return ["Not part of this run."]
    if record.status == "skipped":
        return [f"Skipped: {record.detail}. Set `OPENAI_API_KEY` (or pass `--judge-base-url` for an "
                "OpenAI-compatible server) and rerun the demo into the same `-o` folder to add it."]
    judged = record.data.get("judge")
    if not judged:
        return [f"Not run ({record.status})."]
    lines = ["| task | items | judged | accuracy | mean score (0-5) | served model |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for task, summary in judged.items():
        accuracy = "-" if summary.get("accuracy") is None else f"{summary['accuracy'] * 100:.1f}%"
        mean = "-" if summary.get("mean_score") is None else f"{summary['mean_score']:.2f}"
        lines.append(f"| {task} | {summary['n_items']} | {summary['n_judged']} | {accuracy} | {mean} | "
                     f"{', '.join(summary.get('served_models') or []) or '-'} |")
    return lines


def _loss_section(result: DemoResult, root: Path, kept: Path | None = None) -> list[str]:
    """The loss plots, linked relative to the report; with `kept` (the demo folder is about to go) each
    plot is copied into ``kept/plots/`` first."""
    import shutil

    lines = []
    for record in result.steps:
        if not record.key.startswith("train-") or record.status not in ("ok", "reused"):
            continue
        losses = record.data.get("losses") or []
        stage = record.key.removeprefix("train-")
        summary = f"{len(losses)} logged steps, {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "no losses logged"
        lines += [f"**{stage}**: {summary}", ""]
        plot = record.data.get("loss_plot")
        if plot and kept is not None and Path(plot).is_file():
            copy = kept / "plots" / f"{stage}-loss.png"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plot, copy)
            lines += [f"![{stage} loss]({os.path.relpath(copy, kept)})", ""]
        elif plot and kept is None:
            lines += [f"![{stage} loss]({os.path.relpath(plot, root)})", ""]
    return lines or ["No training stage finished."]


def _doctor_section(record: StepRecord | None) -> list[str]:
    checks = record.data.get("checks") if record is not None else None
    if not checks:
        return ["Not run."]
    lines = ["| check | status | found | fix |", "| --- | --- | --- | --- |"]
    for c in checks:
        cells = [c["name"], c["status"], c["detail"], c["fix"]]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    return lines


def _commands_section(ws: Workspace, options: DemoOptions, result: DemoResult, removed: bool) -> list[str]:
    """Per step: the command on the demo's files (not when its folder was removed) and on the real data."""
    if removed:
        lines = ["The demo ran in a temporary folder that was removed, so there are no demo files to repeat the "
                 "steps on: `artemis demo -o DIR` keeps them, and its report lists the command of each step on "
                 "them. The commands for the real data:", ""]
    else:
        lines = [f"Each step is one library call that the command below also makes. Rerunning `artemis demo -o "
                 f"{ws.root}` reuses the steps that finished (same settings, outputs still there) and redoes the "
                 "rest; `--fresh` redoes everything.", ""]
    mine = demo_commands(ws, options)
    for number, record in enumerate(result.steps, start=1):
        lines += [f"### {number}. {record.title} ({record.status})", ""]
        if not removed:
            lines += ["Repeat it on the demo's files:", "", "```bash", *mine[record.key], "```", ""]
        lines += ["On the real data:", "", "```bash", *REAL_COMMANDS[record.key], "```", ""]
    return lines


def write_report(ws: Workspace, options: DemoOptions, result: DemoResult, *, kept: Path | None = None) -> Path:
    """Write ``report.md``: steps, scores, judge results, loss plots, environment, commands.

    `kept`: the demo folder is temporary and about to be removed; the report goes to ``kept/report.md``
    instead, with copies of the loss plots beside it and no links into the removed folder."""
    from artemis_cli import __version__
    from artemis_cli.common.atomic import atomic_write_text

    target = ws.report if kept is None else kept / "report.md"
    folder = f"folder `{ws.root}`" if kept is None else f"temporary folder `{ws.root}` (removed)"

    by_key = {r.key: r for r in result.steps}
    failed = result.failed
    verdict = (f"**Failed at step '{failed.title}'**: {failed.error}" if failed is not None
               else "Every step finished.")
    lines = [
        "# artemis demo report", "",
        f"artemis {__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"{_dt.datetime.now().astimezone().isoformat(timespec='seconds')}; total {result.seconds:.0f} s; "
        f"{folder}; device `{options.device}`.", "",
        verdict, "",
        "The models are tiny and random (a 2-layer Llama of width 64, a CLIP tower of width 64 with the real "
        "224 px / patch-14 geometry), trained for a few steps on the sample data: the numbers show that "
        "every stage runs and feeds the next, not how good Artemis is.", "",
        "## Steps", "",
        "| # | step | status | time | output | detail |", "| ---: | --- | --- | ---: | --- | --- |",
    ]
    for number, record in enumerate(result.steps, start=1):
        detail = (record.error if record.status == "failed" else record.detail) or ""
        lines.append(f"| {number} | {record.title} | {record.status} | {step_time(record)} | "
                     f"{'`' + record.output + '`' if record.output else '-'} | {detail.replace('|', '/')} |")
    lines += ["", "## Scores", "", *_score_section(by_key.get("score")), "",
              "## GPT judge", "", *_judge_section(by_key.get("judge")), "",
              "## Training loss", "", *_loss_section(result, ws.root, kept), "",
              "## Environment (`artemis doctor`)", "", *_doctor_section(by_key.get("doctor")), "",
              "## Commands", "", *_commands_section(ws, options, result, removed=kept is not None)]
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, "\n".join(lines).rstrip() + "\n")
    return target
