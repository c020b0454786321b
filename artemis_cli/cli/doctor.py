"""`artemis doctor`: check torch/CUDA, video decoding, Java, SPICE, DeepSpeed, open_clip, the API key, disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from artemis_cli.cli.options import JsonFlag


def doctor_cmd(
    path: Annotated[Path, typer.Option("--path", exists=True, file_okay=False, metavar="DIR",
                                       help="Where data and runs will live (for the free-disk check).")] = Path("."),
    json_out: JsonFlag = False,
) -> None:
    """Check the environment and print what is missing with how to fix it. Exit 1 if a check fails.

    Example: artemis doctor --path /data"""
    from rich.markup import escape
    from rich.table import Table

    from artemis_cli.common.console import print_json, stdout
    from artemis_cli.doctor import as_json, doctor

    checks = doctor(path)
    result = as_json(checks)
    if json_out:
        print_json(result)
    else:
        # The fixes are paragraphs (a SPICE fix names several jars): numbered below the table, wrapped at the
        # terminal's width, instead of a fourth column that folds them into dozens of short lines.
        table = Table(title="artemis doctor", title_justify="left")
        for column in ("check", "status", "found", "fix"):
            table.add_column(column, overflow="fold", no_wrap=column in ("status", "fix"))
        style = {"ok": "green", "warn": "yellow", "fail": "red"}
        fixes = [c for c in checks if c.fix]
        for c in checks:
            number = f"[{fixes.index(c) + 1}]" if c in fixes else ""
            table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", escape(c.detail), number)
        stdout.print(table)
        for number, c in enumerate(fixes, start=1):
            stdout.print(f"[{number}] {escape(c.name)}: {escape(c.fix)}")
    raise typer.Exit(0 if result["ok"] else 1)
