"""`serve.preparing.Preparer`: preparation keeps to a quarter of its pace while answers are generated, and
stops at its next step when its client goes away, past its time limit, or when the server stops."""

from __future__ import annotations

import threading
import time

import pytest

from artemis_cli.serve.preparing import Preparer, WorkStopped


def stepper(steps: int, step_s: float):
    """A fake `Referrer.prepare`: `steps` steps of `step_s` seconds of work, `check` between them."""
    def prepare(target, *, progress=None, limits=None, check=None):
        for frame in range(steps):
            end = time.perf_counter() + step_s
            while time.perf_counter() < end:  # busy work, as decoding and tracking are
                pass
            check(frame)
        return target
    return prepare


def test_while_answers_are_generated_preparation_keeps_to_a_quarter_of_its_pace():
    generating = threading.Event()
    preparer = Preparer(stepper(20, 0.01), busy=generating.is_set, timeout_s=60)
    try:
        start = time.perf_counter()
        assert preparer.submit("idle").result(30) == "idle"
        idle = time.perf_counter() - start
        generating.set()
        start = time.perf_counter()
        assert preparer.submit("busy").result(30) == "busy"
        busy = time.perf_counter() - start
        assert busy > 2.5 * idle, (idle, busy)  # 4x in theory; a loaded machine stretches the steps
    finally:
        preparer.close()


@pytest.mark.parametrize("how", ["cancelled", "timeout", "stopped"])
def test_a_preparation_stops_at_its_next_step(how):
    cancelled = threading.Event()
    preparer = Preparer(stepper(10_000, 0.001), timeout_s=0.5 if how == "timeout" else 60)
    try:
        future = preparer.submit("long", cancelled=cancelled)
        time.sleep(0.2)
        if how == "cancelled":
            cancelled.set()
        elif how == "stopped":
            preparer.close(wait=False)
        with pytest.raises(WorkStopped) as info:
            future.result(10)
        assert info.value.code == {"cancelled": "cancelled", "timeout": "prepare_timeout",
                                   "stopped": "shutting_down"}[how]
        assert preparer.pending == 0
    finally:
        preparer.close()
