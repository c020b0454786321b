"""`artemis data verify-layout` on the terminal: a verification `Report` as rich tables."""

from __future__ import annotations

from collections import Counter

from rich.markup import escape
from rich.table import Table

from artemis_cli.common.console import stdout
from artemis_cli.data.report import Report


def print_report(report: Report, max_problems: int = 100) -> None:
    counts = Table(title="verify-layout", show_header=True, title_justify="left")
    counts.add_column("what")
    counts.add_column("count", justify="right")
    for key in ("annotation_files", "records", "feature_files_checked"):
        if key in report.counts:
            counts.add_row(key.replace("_", " "), str(report.counts[key]))
    for kind, n in sorted(report.counts.get("records_by_kind", {}).items()):
        counts.add_row(f"  {kind} records", str(n))
    by_kind = Counter((p.kind, p.severity) for p in report.problems)
    for (kind, severity), n in sorted(by_kind.items()):
        style = "red" if severity == "error" else "yellow"
        counts.add_row(f"[{style}]{severity}s: {kind}[/]", f"[{style}]{n}[/]")
    if counts.row_count:
        stdout.print(counts)

    if report.problems:
        listed = report.problems if max_problems <= 0 else report.problems[:max_problems]
        table = Table(title=f"problems ({len(listed)} of {len(report.problems)} listed)", show_lines=False)
        table.add_column("severity")
        table.add_column("kind")
        table.add_column("location", overflow="fold")
        table.add_column("message", overflow="fold")
        for p in sorted(listed, key=lambda p: (p.kind, p.path, str(p.record))):
            style = "red" if p.severity == "error" else "yellow"
            table.add_row(f"[{style}]{p.severity}[/]", p.kind, escape(p.location), escape(p.message))
        stdout.print(table)
    for line in report.checked:
        stdout.print(f"checked: {escape(line)}", soft_wrap=True)
    for line in report.not_checked:
        stdout.print(f"not checked: {escape(line)}", soft_wrap=True)
    verdict = ("[green]ok[/]: no errors in what was checked" if report.ok
               else f"[red]FAILED[/]: {report.n_errors} error(s)")
    stdout.print(verdict)
