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
    table.add_row("endpoint", summary.base_url or "OpenAI API")
    table.add_row("temperature", "server default" if summary.temperature is None else f"{summary.temperature:g}")
    table.add_row("prompt hash", summary.prompt_hash or "-")
    table.add_row("items", str(summary.n_items))
    table.add_row("judged", str(summary.n_judged))
    table.add_row("failed", f"[red]{summary.n_failed}[/red]" if summary.n_failed else "0")
    if summary.n_missing_predictions:
        table.add_row("missing predictions", f"[red]{summary.n_missing_predictions}[/red] (failed in infer)")
    table.add_row("no call needed", str(summary.n_cached))
    table.add_row("calls made", str(summary.n_calls))
    if judge_task(summary.task).yes_no:
        table.add_row("yes / no", f"{summary.n_yes} / {summary.n_no}")
        table.add_row("accuracy", _fmt(summary.accuracy, percent=True))
    for name, value in (summary.dimension_scores or {}).items():
        table.add_row(f"  {name} (0-{summary.score_max})", _fmt(value))
    table.add_row(f"mean score (0-{summary.score_max})", _fmt(summary.mean_score))
    if summary.n_failed or summary.n_missing_predictions:
        table.add_row("mean, failed/missing as 0", _fmt(summary.mean_score_failures_as_zero))
    table.add_row("output", str(summary.output_dir))
    stdout.print(table)
    if summary.failures:
        failed = Table(title="failed items (not in accuracy or mean score; 0 in the failed-as-0 mean)",
                       title_justify="left")
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


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_comparison(report, to_stderr: bool = False) -> None:
    """`artemis judge compare`: the two judges, the pairing counts and the agreement figures."""
    from artemis_cli.common.console import stderr

    console = stderr if to_stderr else stdout
    judges = Table(title=f"judge compare ({report.task})", title_justify="left")
    for column in ("", "A", "B"):
        judges.add_column(column, overflow="fold")
    for key in ("model", "base_url", "temperature", "prompt_hash"):
        judges.add_row(key, str(report.a.judge.get(key)), str(report.b.judge.get(key)))
    judges.add_row("judged / failed", f"{len(report.a.verdicts)} / {report.a.n_failed}",
                   f"{len(report.b.verdicts)} / {report.b.n_failed}")
    console.print(judges)
    scores = report.scores
    table = Table(show_header=False, title=f"{report.n_paired} items judged by both", title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("mean score A / B", f"{_num(scores['mean_a'])} / {_num(scores['mean_b'])}")
    table.add_row("mean shift (B - A)", f"{scores['mean_shift']:+.3f}")
    table.add_row("mean |B - A|", _num(scores["mean_abs_diff"]))
    table.add_row("Pearson / Spearman", f"{_num(scores['pearson'])} / {_num(scores['spearman'])}")
    table.add_row("exact agreement (rounded)", f"{100 * scores['exact_agreement']:.1f}%")
    table.add_row("Cohen's kappa (rounded scores)", _num(scores["kappa"]))
    if report.yes_no:
        yes_no = report.yes_no
        table.add_row("yes/no agreement", f"{100 * yes_no['agreement']:.1f}%")
        table.add_row("yes/no Cohen's kappa", _num(yes_no["kappa"]))
        table.add_row("yes rate A / B", f"{100 * yes_no['yes_rate_a']:.1f}% / {100 * yes_no['yes_rate_b']:.1f}%")
    for name, stats in (report.dimensions or {}).items():
        table.add_row(f"{name}: shift / Pearson", f"{stats['mean_shift']:+.3f} / {_num(stats['pearson'])}")
    skipped = {"only in A": report.n_only_a, "only in B": report.n_only_b, "failed in either": report.n_failed_either,
               "different text": report.n_text_differs}
    table.add_row("not compared", ", ".join(f"{n} {what}" for what, n in skipped.items() if n) or "0")
    console.print(table)
