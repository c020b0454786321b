"""Stop signals for the long-running servers (`web`, `serve`), whatever the process inherited.

A process started with SIGINT ignored (`nohup cmd &`, a shell script's background job, some CI runners)
passes SIG_IGN on to its children, and Python then installs no KeyboardInterrupt handler: such a server
would never stop on Ctrl-C. `stop_signals` installs the handlers explicitly and restores the previous
ones when it ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def stop_signals(*, sigterm: bool = True) -> Iterator[None]:
    """Within the block SIGINT raises `KeyboardInterrupt` and (with `sigterm`) SIGTERM raises
    `SystemExit(143)`, so `finally` clauses run either way. Off the main thread (where signals cannot
    be handled) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signal.SIGINT: signal.default_int_handler}
    if sigterm:
        handlers[signal.SIGTERM] = _exit_on_sigterm
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
