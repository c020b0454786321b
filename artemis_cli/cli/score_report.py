"""`artemis score` on the terminal: a `ScoreReport` as the paper-style table (x100, one decimal)."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.table import Table

from artemis_cli.metrics.protocol import MAX_PRED_CHARS, MIN_PRED_CHARS
from artemis_cli.metrics.score import METRIC_NAMES, ScoreReport

HEADERS = {"Bleu_1": "B@1", "Bleu_2": "B@2", "Bleu_3": "B@3", "Bleu_4": "B@4", "METEOR": "METEOR",
           "ROUGE_L": "ROUGE_L", "CIDEr": "CIDEr", "SPICE": "SPICE"}
MAX_LISTED = 10


def paper_style(value: Optional[float]) -> str:
    """0.1553 -> "15.5" (x100, one decimal, as the paper's tables); None -> "-"."""
    return "-" if value is None or value != value else f"{value * 100:.1f}"


def build_table(report: ScoreReport) -> Table:
    table = Table(title=f"COCO caption metrics (x100) on {report.n_scored} records", title_justify="left")
    table.add_column("")
    for name in METRIC_NAMES:
        table.add_column(HEADERS[name], justify="right")
    table.add_row("score", *(paper_style(report.metrics[name]) for name in METRIC_NAMES))
    if report.ci is not None:
        for label, end in (("95% CI low", 0), ("95% CI high", 1)):
            table.add_row(label, *(paper_style(report.ci.get(name, (None, None))[end]) for name in METRIC_NAMES))
        table.caption = f"confidence intervals from {report.options.bootstrap} bootstrap resamples (seed {report.options.seed})"
    return table


def print_report(report: ScoreReport, console: Console) -> None:
    """The table, the protocol's counts, every unavailable metric with its reason, skipped records."""
    console.print(build_table(report))
    options = report.options
    counts = [f"{report.n_input} records read, {report.n_scored} scored"]
    if options.keep_duplicates:
        counts.append("duplicates kept (--keep-duplicates)")
    else:
        counts.append(f"{report.n_dropped_duplicate} dropped as duplicate ids (the last one per id is kept)")
    if options.length_filter:
        counts.append(f"{report.n_dropped_length} dropped by length (predictions outside "
                      f"{MIN_PRED_CHARS}-{MAX_PRED_CHARS} characters)")
    else:
        counts.append("no length filter (--no-length-filter)")
    console.print("; ".join(counts))
    for name, reason in report.unavailable.items():
        if not reason.startswith("not requested"):
            console.print(f"[yellow]{name} unavailable:[/] {reason}", soft_wrap=True)
    if report.skipped:
        console.print(f"[yellow]skipped {len(report.skipped)} bad record(s):[/]")
        for message in report.skipped[:MAX_LISTED]:
            console.print(f"  {message}", soft_wrap=True, markup=False)
        if len(report.skipped) > MAX_LISTED:
            console.print(f"  ... and {len(report.skipped) - MAX_LISTED} more")
    console.print(f"[dim]{report.java}[/]", soft_wrap=True)


def print_side_by_side(reports: dict[str, ScoreReport], console: Console) -> None:
    """One row per caption protocol (x100), then each protocol's counts."""
    from artemis_cli.metrics.protocol import PROTOCOLS

    table = Table(title="COCO caption metrics (x100) under each protocol", title_justify="left")
    table.add_column("protocol")
    table.add_column("scored", justify="right")
    for name in METRIC_NAMES:
        table.add_column(HEADERS[name], justify="right")
    for name, report in reports.items():
        table.add_row(name, str(report.n_scored), *(paper_style(report.metrics[m]) for m in METRIC_NAMES))
    console.print(table)
    for name, report in reports.items():
        counts = [f"{report.n_input} records read, {report.n_scored} scored"]
        if not report.options.keep_duplicates:
            counts.append(f"{report.n_dropped_duplicate} dropped as duplicate ids")
        if report.options.length_filter:
            counts.append(f"{report.n_dropped_length} dropped by length")
        if PROTOCOLS[name].truncate_words:
            counts.append(f"{report.n_truncated} cut to {PROTOCOLS[name].truncate_words} words")
        console.print(f"{name}: {PROTOCOLS[name].about}. " + "; ".join(counts), soft_wrap=True)
    first = next(iter(reports.values()))
    for metric, reason in first.unavailable.items():
        if not reason.startswith("not requested"):
            console.print(f"[yellow]{metric} unavailable:[/] {reason}", soft_wrap=True)
    console.print(f"[dim]{first.java}[/]", soft_wrap=True)


def print_mcq(report, console: Console) -> None:
    """VideoRefer-Bench-Q accuracy: per type and over all questions, with what was counted wrong and why."""
    scoring = ", ".join(report.scoring) or "-"
    table = Table(title=f"multiple-choice accuracy (published letter regex; answers by {scoring})",
                  title_justify="left")
    table.add_column("type")
    table.add_column("questions", justify="right")
    table.add_column("correct", justify="right")
    table.add_column("accuracy", justify="right")
    for name, row in sorted(report.per_type.items()):
        table.add_row(name, str(row["n"]), str(row["correct"]), f"{100 * row['accuracy']:.1f}%")
    accuracy = report.accuracy
    table.add_row("all (micro)", str(report.n_questions), str(report.n_correct),
                  "-" if accuracy is None else f"{100 * accuracy:.1f}%", style="bold")
    console.print(table)
    notes = [f"{report.n_missing_predictions} not answered by infer (wrong)" if report.n_missing_predictions else "",
             f"{report.n_empty} empty (wrong)" if report.n_empty else "",
             f"{report.n_first_char} read by the first-character fallback" if report.n_first_char else "",
             f"{report.n_multi_region} about several objects (the first is Artemis' region)"
             if report.n_multi_region else ""]
    notes = [note for note in notes if note]
    if notes:
        console.print("; ".join(notes), soft_wrap=True)
