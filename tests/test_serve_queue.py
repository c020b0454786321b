"""`serve.batching.BatchQueue` with a fake batch function: batching, keys, waiting, failure isolation, drain."""

from __future__ import annotations

import threading
import time

import pytest

from artemis_cli.serve.batching import BatchQueue, QueueClosed


class Recorder:
    """A batch function that records each batch, answers `item * 10`, and fails on chosen items."""

    def __init__(self, delay: float = 0.0, fail_on=(), lone_error_for=()):
        self.batches: list[list] = []
        self.delay = delay
        self.fail_on = set(fail_on)  # a batch holding one of these raises (the whole call fails)
        self.lone_error_for = set(lone_error_for)  # these get an exception in their own slot
        self.lock = threading.Lock()

    def __call__(self, items):
        with self.lock:
            self.batches.append(list(items))
        time.sleep(self.delay)
        if self.fail_on & set(items):
            raise RuntimeError(f"boom on {sorted(self.fail_on & set(items))}")
        return [ValueError(f"bad {i}") if i in self.lone_error_for else i * 10 for i in items]


def test_concurrent_items_share_a_batch_up_to_max_batch():
    fn = Recorder()
    queue = BatchQueue(fn, max_batch=4, wait_s=0.5)
    futures = [queue.submit_future(i) for i in range(6)]
    assert [f.result(timeout=10) for f in futures] == [0, 10, 20, 30, 40, 50]
    assert fn.batches == [[0, 1, 2, 3], [4, 5]]  # the first four at once (full), the rest after waiting
    assert [f.batch_info.size for f in futures] == [4, 4, 4, 4, 2, 2]
    assert queue.stats.batches == 2 and queue.stats.items == 6 and queue.stats.largest_batch == 4
    assert queue.close(timeout=5)


def test_a_lone_item_waits_at_most_wait_s_for_company():
    fn = Recorder()
    queue = BatchQueue(fn, max_batch=8, wait_s=0.15)
    start = time.monotonic()
    assert queue.submit_future(7).result(timeout=10) == 70
    waited = time.monotonic() - start
    assert 0.14 <= waited < 2.0
    queue.close()


def test_items_with_different_keys_never_share_a_batch():
    fn = Recorder()
    queue = BatchQueue(fn, max_batch=8, wait_s=0.3, key=lambda item: item % 2)
    futures = [queue.submit_future(i) for i in range(6)]
    assert [f.result(timeout=10) for f in futures] == [0, 10, 20, 30, 40, 50]
    assert sorted(fn.batches) == [[0, 2, 4], [1, 3, 5]]
    queue.close()


def test_a_failing_batch_is_rerun_one_by_one_so_only_the_bad_item_fails():
    fn = Recorder(fail_on={2}, lone_error_for={4})
    queue = BatchQueue(fn, max_batch=8, wait_s=0.3)
    futures = [queue.submit_future(i) for i in range(5)]
    results = []
    for future in futures:
        try:
            results.append(future.result(timeout=10))
        except Exception as exc:  # noqa: BLE001
            results.append(f"{type(exc).__name__}: {exc}")
    assert results == [0, 10, "RuntimeError: boom on [2]", 30, "ValueError: bad 4"]
    assert fn.batches[0] == [0, 1, 2, 3, 4] and fn.batches[1:] == [[0], [1], [2], [3], [4]]
    queue.close()


def test_close_answers_everything_accepted_then_refuses_new_items():
    fn = Recorder(delay=0.2)
    queue = BatchQueue(fn, max_batch=2, wait_s=0.0)
    futures = [queue.submit_future(i) for i in range(5)]
    assert queue.close(timeout=10)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [0, 10, 20, 30, 40]
    with pytest.raises(QueueClosed):
        queue.submit_future(9)


def test_submit_from_an_event_loop():
    import asyncio

    fn = Recorder()
    queue = BatchQueue(fn, max_batch=8, wait_s=0.2)

    async def main():
        return await asyncio.gather(*(queue.submit(i) for i in range(3)))

    assert asyncio.run(main()) == [0, 10, 20]
    assert fn.batches == [[0, 1, 2]]
    queue.close()
