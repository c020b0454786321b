"""Rich tables for `artemis judge gpt` (summary and dry run)."""

from __future__ import annotations

from rich.table import Table

from artemis_cli.common.console import stdout
from artemis_cli.judge.output import JudgeSummary
from artemis_cli.judge.tasks import judge_task

MAX_FAILED_SHOWN = 20


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.3f}"


def print_summary(summary: JudgeSummary) -> None:
    table = Table(title=f"judge {summary.task}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("model (asked)", summary.model)
    table.add_row("served by", ", ".join(summary.served_models) or "-")
    table.add_row("items", str(summary.n_items))
    table.add_row("judged", str(summary.n_judged))
    table.add_row("failed", f"[red]{summary.n_failed}[/red]" if summary.n_failed else "0")
    table.add_row("no call needed", str(summary.n_cached))
    table.add_row("calls made", str(summary.n_calls))
    if judge_task(summary.task).yes_no:
        table.add_row("yes / no", f"{summary.n_yes} / {summary.n_no}")
        table.add_row("accuracy", _fmt(summary.accuracy, percent=True))
    table.add_row("mean score (0-5)", _fmt(summary.mean_score))
    table.add_row("output", str(summary.output_dir))
    stdout.print(table)
    if summary.failures:
        failed = Table(title="failed items (not counted in accuracy or score)", title_justify="left")
        for column in ("id", "attempts", "error", "last reply"):
            failed.add_column(column, overflow="fold")
        for failure in summary.failures[:MAX_FAILED_SHOWN]:
            failed.add_row(failure["id"], str(failure["attempts"]), failure["error"] or "-",
                           repr(failure["raw_reply"]) if failure["raw_reply"] is not None else "-")
        stdout.print(failed)
        if len(summary.failures) > MAX_FAILED_SHOWN:
            stdout.print(f"... and {len(summary.failures) - MAX_FAILED_SHOWN} more in {summary.output_dir}/judgments.jsonl")
        stdout.print("rerun the same command to retry the failed items (judged ones are cached)")


def print_dry_run(summary: JudgeSummary) -> None:
    table = Table(title=f"judge {summary.task} (dry run: no calls made)", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("model", summary.model)
    table.add_row("items", str(summary.n_items))
    table.add_row("already judged or cached", str(summary.n_cached))
    table.add_row("calls needed (first attempts)", str(summary.calls_needed))
    table.add_row("est. prompt tokens", f"~{summary.est_prompt_tokens}")
    table.add_row("est. completion tokens", f"~{summary.est_completion_tokens}")
    stdout.print(table)
