"""Rich console, progress bars and JSON output shared by every command.

Human output (tables, progress) goes to stderr when `--json` is given, so stdout stays valid JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def make_progress(*extra_columns: Any, console: Console | None = None, transient: bool = False) -> Progress:
    """A progress bar with count, elapsed time and ETA; extra columns (rates) go before the times."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console or stderr,
        transient=transient,
    )


def print_json(obj: Any) -> None:
    """Print `obj` as JSON on stdout, nothing else on that stream."""
    from artemis_cli.common.quiet import result_stream

    stream = result_stream()  # the real stdout, also while `--json` diverts everything else to stderr
    stream.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    stream.flush()
