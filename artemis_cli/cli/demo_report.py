"""`artemis demo` on the terminal: the summary table (step, status, time, output) and where the report is."""

from __future__ import annotations

from artemis_cli.demo.report import step_time
from artemis_cli.demo.results import DemoResult

STATUS_STYLE = {"ok": "green", "reused": "cyan", "skipped": "yellow", "failed": "red", "not run": "dim"}


def print_summary(result: DemoResult, console) -> None:
    """The summary table (step, status, time, output) and where the report is."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"artemis demo: {result.seconds:.0f} s", title_justify="left")
    for column, justify in (("#", "right"), ("step", "left"), ("status", "left"), ("time", "right"),
                            ("output", "left"), ("why", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for number, record in enumerate(result.steps, start=1):
        why = {"skipped": record.detail, "failed": record.error}.get(record.status) or ""
        table.add_row(str(number), record.title, f"[{STATUS_STYLE[record.status]}]{record.status}[/]", step_time(record),
                      escape(record.output or "-"), escape(why))
    console.print(table)
    if result.removed:
        console.print(f"removed the temporary folder {result.out} (pass --keep, or --output DIR, to keep the "
                      "outputs)", soft_wrap=True)
        if result.kept_report is not None:
            console.print(f"report: {result.kept_report}", soft_wrap=True)
    else:
        console.print(f"report: {result.out / 'report.md'}", soft_wrap=True)
