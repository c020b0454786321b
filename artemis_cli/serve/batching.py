"""A queue that gathers concurrent requests into batches for one blocking batch function.

Requests arrive from the server's event loop; one worker thread takes the oldest waiting request,
waits at most `wait_s` after that request arrived for company (up to `max_batch` requests with the
same `key`, e.g. the same decoding settings), and calls `run_batch` on them. `run_batch` returns one
result per request: a value, or an exception that belongs to that request alone. If `run_batch`
raises, the batch is rerun one request at a time, so only the request that fails gets the error.
`close()` stops taking new requests and returns once every accepted request has its result.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Optional, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueClosed(RuntimeError):
    """The queue is shutting down and takes no new requests."""


class QueueFull(RuntimeError):
    """More requests are waiting than the queue takes (`max_pending`)."""


@dataclass
class _Pending(Generic[T]):
    item: T
    key: Hashable
    future: Future
    arrived: float


@dataclass
class QueueStats:
    batches: int = 0
    items: int = 0
    largest_batch: int = 0
    sizes: list[int] = field(default_factory=list)  # the last 1,000 batch sizes

    def to_json(self) -> dict[str, Any]:
        return {"batches": self.batches, "requests": self.items, "largest_batch": self.largest_batch,
                "mean_batch": round(self.items / self.batches, 3) if self.batches else 0.0}


@dataclass
class BatchInfo:
    """What a result's batch looked like (given to each result's future as `future.batch_info`)."""

    size: int
    queued_s: float
    run_s: float


class BatchQueue(Generic[T, R]):
    """Batches `submit`ted items for `run_batch` (see the module docstring)."""

    def __init__(self, run_batch: Callable[[list[T]], Sequence[Any]], *, max_batch: int = 16, wait_s: float = 0.02,
                 key: Callable[[T], Hashable] = lambda item: None, name: str = "artemis-batch",
                 max_pending: Optional[int] = None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_pending = max_pending
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.wait_s = max(0.0, wait_s)
        self.key = key
        self.stats = QueueStats()
        self._pending: deque[_Pending[T]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._running = 0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    # ---- producers ------------------------------------------------------------------------------------
    def submit_future(self, item: T) -> Future:
        """Queue `item` (thread-safe); the future gets its result, or its exception. `QueueFull` when
        `max_pending` requests already wait."""
        future: Future = Future()
        with self._cond:
            if self._closing:
                raise QueueClosed("the server is shutting down")
            if self.max_pending is not None and len(self._pending) >= self.max_pending:
                raise QueueFull(f"{len(self._pending)} requests are waiting for the model: try again in a while")
            self._pending.append(_Pending(item, self.key(item), future, time.monotonic()))
            self._cond.notify_all()
        return future

    async def submit(self, item: T) -> R:
        """Queue `item` from an event loop and wait for its result (its exception is raised here)."""
        return await asyncio.wrap_future(self.submit_future(item))

    @property
    def running(self) -> bool:
        """A batch is being answered now."""
        return self._running > 0

    @property
    def depth(self) -> int:
        """Requests waiting or being answered."""
        with self._cond:
            return len(self._pending) + self._running

    def close(self, timeout: Optional[float] = None) -> bool:
        """Take no new requests; wait until every accepted one is answered. True when the worker ended."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- the worker -----------------------------------------------------------------------------------
    def _take(self) -> Optional[list[_Pending[T]]]:
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._pending[0]
            deadline = first.arrived + self.wait_s
            while not self._closing:
                company = sum(1 for p in self._pending if p.key == first.key)
                remaining = deadline - time.monotonic()
                if company >= self.max_batch or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [p for p in self._pending if p.key == first.key][:self.max_batch]
            for pending in batch:
                self._pending.remove(pending)
            self._running = len(batch)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            batch = [p for p in batch if not p.future.cancelled()]  # its client went away while it waited
            if not batch:
                with self._cond:
                    self._running = 0
                continue
            started = time.monotonic()
            try:
                results = self._run([p.item for p in batch])
            finally:
                with self._cond:
                    self._running = 0
            info_run = time.monotonic() - started
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            self.stats.sizes = (self.stats.sizes + [len(batch)])[-1000:]
            for pending, result in zip(batch, results):
                pending.future.batch_info = BatchInfo(size=len(batch), queued_s=started - pending.arrived,
                                                      run_s=info_run)
                if pending.future.set_running_or_notify_cancel():
                    if isinstance(result, BaseException):
                        pending.future.set_exception(result)
                    else:
                        pending.future.set_result(result)

    def _run(self, items: list[T]) -> list[Any]:
        """`run_batch(items)`; if it raises, each item alone (so only a failing item fails)."""
        try:
            results = list(self.run_batch(items))
            if len(results) != len(items):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(items)} requests")
            return results
        except Exception as exc:  # noqa: BLE001 - isolated below; a lone failure is that request's result
            if len(items) == 1:
                return [exc]
            return [self._run([item])[0] for item in items]
