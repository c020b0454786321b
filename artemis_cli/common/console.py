"""Rich console, progress bars and JSON output shared by every command.

Human output (tables, progress) goes to stderr when `--json` is given, so stdout stays valid JSON.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


PLAIN_INTERVAL_ENV = "ARTEMIS_PROGRESS_SECONDS"  # seconds between plain progress lines (default 5)


class PlainLinesProgress(Progress):
    """A `Progress` for a console that is not a terminal (a log file, a pipe, CI): no live bar (rich would
    print nothing until the end), but one plain line per task every few seconds while it moves, and its
    final count when it ends, like pip and hf do."""

    def __init__(self, *columns: Any, console: Console, interval: float, final_lines: bool = True, **kwargs: Any):
        super().__init__(*columns, console=console, disable=True, **kwargs)
        self._final_lines = final_lines  # False for a transient bar: only the lines while it runs
        self._plain_console = console
        self._interval = interval
        self._printed: dict[Any, tuple[float, float]] = {}  # task id -> (time printed, completed then)
        self._stop_lines = threading.Event()
        self._lines_thread: threading.Thread | None = None

    def start(self) -> None:
        if self._lines_thread is None:
            self._stop_lines.clear()
            self._lines_thread = threading.Thread(target=self._print_loop, name="progress-lines", daemon=True)
            self._lines_thread.start()

    def stop(self) -> None:
        if self._lines_thread is not None:
            self._stop_lines.set()
            self._lines_thread.join()
            self._lines_thread = None
        if self._final_lines:
            self._print_lines(final=True)

    def _print_loop(self) -> None:
        while not self._stop_lines.wait(min(0.5, self._interval)):
            self._print_lines(final=False)

    def _print_lines(self, final: bool) -> None:
        now = time.monotonic()
        with self._lock:
            tasks = [task for task in self._tasks.values() if task.visible]
        for task in tasks:
            printed_at, printed_count = self._printed.get(task.id, (None, None))
            if printed_count == task.completed and (printed_at is not None or not final):
                continue  # nothing new to say
            if not final and not task.finished and printed_at is not None and now - printed_at < self._interval:
                continue
            if not final and not task.finished and printed_at is None and task.elapsed is not None \
                    and task.elapsed < self._interval:
                continue  # a task that ends within the first interval gets only its final line
            self._printed[task.id] = (now, task.completed)
            self._plain_console.print(plain_progress_line(task), markup=False, highlight=False, soft_wrap=True)


def plain_progress_line(task: Any) -> str:
    """``description: 37/128 (29%), 0:01:12 elapsed, eta 0:03:05, <fields>`` for a rich `Task`."""
    import datetime as dt

    from rich.text import Text

    def clock(seconds: float | None) -> str:
        return str(dt.timedelta(seconds=int(seconds))) if seconds is not None else "-"

    description = Text.from_markup(str(task.description)).plain
    count = f"{task.completed:g}/{task.total:g} ({100 * task.completed / task.total:.0f}%)" if task.total \
        else f"{task.completed:g}"
    parts = [f"{description}: {count}", f"{clock(task.elapsed)} elapsed"]
    if task.total and not task.finished and task.time_remaining is not None:
        parts.append(f"eta {clock(task.time_remaining)}")
    parts += [Text.from_markup(str(value)).plain.strip() for value in task.fields.values()
              if isinstance(value, str) and value.strip()]
    return ", ".join(parts)


def make_progress(*extra_columns: Any, console: Console | None = None, transient: bool = False) -> Progress:
    """A progress bar with count, elapsed time and ETA; extra columns (rates) go before the times.

    On a console that is not a terminal it is a `PlainLinesProgress` (a line every
    ``$ARTEMIS_PROGRESS_SECONDS`` seconds, default 5)."""
    console = console or stderr
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               *extra_columns, TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    if not console.is_terminal:
        try:
            interval = float(os.environ.get(PLAIN_INTERVAL_ENV, "5"))
        except ValueError:
            interval = 5.0
        return PlainLinesProgress(*columns, console=console, interval=max(interval, 0.05), final_lines=not transient)
    return Progress(*columns, console=console, transient=transient)


def print_json(obj: Any) -> None:
    """Print `obj` as JSON on stdout, nothing else on that stream."""
    from artemis_cli.common.quiet import result_stream

    stream = result_stream()  # the real stdout, also while `--json` diverts everything else to stderr
    stream.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    stream.flush()
