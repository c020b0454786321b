"""Preparing targets (tracking, clip features) for the server: bounded, cancellable, out of generation's way.

`Preparer` runs `Referrer.prepare` in a few threads of their own (`workers`, at a lower CPU priority
than the threads that generate), so a new video never holds up answers to videos already prepared,
and at most `workers` videos are tracked at once. While a batch is being generated (`busy()`), a
preparation pauses after each frame (and each batch of feature frames) three times as long as that
step took: it keeps going, at a quarter of its pace, and leaves the cores to generation (a lower
priority alone does not: generation's threads wait for each other at every step, so one of them
losing its core for a moment stalls them all). Each preparation is bounded: the video's size and
length by `VideoLimits` (checked from the header before any work, and again as frames decode), its
time by `timeout_s` (a preparation past it stops at its next frame). A request that would wait behind
more than `max_waiting` others is refused at once (503), and so is one that waited longer than
`timeout_s` for a thread. `close()` (the server stopping) makes every preparation stop at its next
frame; they fail with `WorkStopped` (503).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional

from artemis_cli.errors import ArtemisError

PREPARE_NICE = 10  # preparation threads yield the CPU to generation (Linux: per-thread nice value)
BUSY_SHARE = 0.25  # while answers are being generated, preparation works at most this share of its time
MAX_YIELD_S = 0.2  # the longest pause between two steps of a preparation


class WorkStopped(ArtemisError):
    """A preparation stopped before its end: its time limit (`status` 400), the server stopping (503)."""

    def __init__(self, message: str, status: int, code: str):
        super().__init__(message)
        self.status = status
        self.code = code


class Busy(ArtemisError):
    """Too many preparations are waiting: try again later (503)."""


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREPARE_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the normal priority
        pass


class Preparer:
    """Runs `prepare(target, progress=, limits=, check=)` (a `Referrer`'s) for requests (see the module doc)."""

    def __init__(self, prepare: Callable, *, limits=None, workers: int = 1, max_waiting: int = 32,
                 timeout_s: float = 120.0, busy: Optional[Callable[[], bool]] = None):
        self._prepare = prepare
        self.busy = busy
        self.limits = limits
        self.workers = max(1, int(workers))
        self.max_waiting = max(0, int(max_waiting))
        self.timeout_s = float(timeout_s)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0  # waiting or running
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="artemis-prepare", initializer=_lower_priority)

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def submit(self, target, *, progress: Optional[Callable[[str, float], None]] = None,
               cancelled: Optional[threading.Event] = None, then: Optional[Callable] = None) -> Future:
        """Start preparing `target`; the future gets the `PreparedTarget` or the exception. `cancelled`
        (set when the request's client went away) stops the work like a shutdown; `then(prepared)` runs in
        the preparation thread once it is done. Raises `Busy` at once when too many are waiting,
        `WorkStopped` when the server is stopping."""
        if self.stopping.is_set():
            raise WorkStopped("the server is shutting down", 503, "shutting_down")
        with self._lock:
            if self._pending >= self.workers + self.max_waiting:
                raise Busy(f"{self._pending} videos are being prepared or waiting: try again in a while")
            self._pending += 1
        submitted = time.monotonic()
        try:
            future = self._pool.submit(self._run, target, progress, cancelled, submitted, then)
        except RuntimeError:  # the pool was shut down meanwhile
            with self._lock:
                self._pending -= 1
            raise WorkStopped("the server is shutting down", 503, "shutting_down") from None
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def _run(self, target, progress, cancelled: Optional[threading.Event], submitted: float, then):
        started = time.monotonic()
        if started - submitted > self.timeout_s:
            raise Busy(f"the request waited over {self.timeout_s:g} s for a free preparation thread")
        deadline = started + self.timeout_s
        last: dict[int, float] = {}  # per thread (tracking, and the clip features beside it)

        def check(frame: int) -> None:
            thread = threading.get_ident()
            step = time.monotonic() - last.get(thread, started)
            if self.busy is not None and self.busy():  # generation first: keep to a share of the time
                self.stopping.wait(min(MAX_YIELD_S, step * (1 - BUSY_SHARE) / BUSY_SHARE))
            last[thread] = time.monotonic()
            if self.stopping.is_set():
                raise WorkStopped("the server is shutting down", 503, "shutting_down")
            if cancelled is not None and cancelled.is_set():
                raise WorkStopped("the request was cancelled", 499, "cancelled")
            if time.monotonic() > deadline:
                raise WorkStopped(f"preparing the video took over {self.timeout_s:g} s (the server's "
                                  "--prepare-timeout): send a shorter or smaller video", 400, "prepare_timeout")

        check(-1)
        prepared = self._prepare(target, progress=progress, limits=self.limits, check=check)
        if then is not None:
            then(prepared)
        return prepared

    def close(self, wait: bool = True) -> None:
        """Stop: preparations under way stop at their next frame, waiting ones are cancelled."""
        self.stopping.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
