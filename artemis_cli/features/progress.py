"""The extraction progress bar: videos done of total, frames/s through the tower, ETA."""

from __future__ import annotations

import time

from rich.progress import TextColumn

from artemis_cli.common.console import make_progress


class ExtractProgress:
    """`advance(status, frames)` after each video; a no-op when disabled (``--json``, tests)."""

    def __init__(self, total: int, enabled: bool = True):
        self.enabled = enabled
        self.total = total
        self.frames = 0
        self.failed = 0
        self.started = time.perf_counter()
        self._progress = None
        self._task = None

    def __enter__(self) -> "ExtractProgress":
        if self.enabled:
            self._progress = make_progress(TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[failed]}"))
            self._progress.__enter__()
            self._task = self._progress.add_task("videos", total=self.total, rate="", failed="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def advance(self, status: str, frames: int) -> None:
        self.frames += frames
        self.failed += status == "failed"
        if self._progress is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self._progress.update(self._task, advance=1, rate=f"{self.frames / elapsed:,.0f} frames/s",
                              failed=f"[red]{self.failed} failed" if self.failed else "")
