"""`artemis demo` on the terminal: the summary table (step, status, time, output) and where the report is."""

from __future__ import annotations

from artemis_cli.demo.report import step_time
from artemis_cli.demo.results import DemoResult

STATUS_STYLE = {"ok": "green", "reused": "cyan", "skipped": "yellow", "failed": "red", "not run": "dim"}


def print_summary(result: DemoResult, console) -> None:
    """The summary table (step, status, time, output) and where the report is."""
    from rich.markup import escape
    from rich.table import Table

    # Paths cannot wrap between words: on a narrow terminal they go below the table, one per line,
    # instead of a column that breaks them mid-word.
    narrow = console.width < 120
    table = Table(title=f"artemis demo: {result.seconds:.0f} s", title_justify="left")
    columns = [("#", "right"), ("step", "left"), ("status", "left"), ("time", "right")]
    columns += [] if narrow else [("output", "left")]
    for column, justify in [*columns, ("why", "left")]:
        table.add_column(column, justify=justify, overflow="fold" if column == "why" else "ellipsis",
                         no_wrap=column in ("#", "status", "time"))
    for number, record in enumerate(result.steps, start=1):
        why = {"skipped": record.detail, "failed": record.error}.get(record.status) or ""
        cells = [str(number), record.title, f"[{STATUS_STYLE[record.status]}]{record.status}[/]", step_time(record)]
        cells += [] if narrow else [escape(record.output or "-")]
        table.add_row(*cells, escape(why))
    console.print(table)
    if narrow:
        console.print(f"outputs (in {result.out}):", soft_wrap=True)
        for number, record in enumerate(result.steps, start=1):
            if record.output:
                console.print(f"  {number:>2} {escape(record.output)}", soft_wrap=True)
    if result.removed:
        console.print(f"removed the temporary folder {result.out} (pass --keep, or --output DIR, to keep the "
                      "outputs)", soft_wrap=True)
        if result.kept_report is not None:
            console.print(f"report: {result.kept_report}", soft_wrap=True)
    else:
        console.print(f"report: {result.out / 'report.md'}", soft_wrap=True)
