"""Stdout hygiene and library noise, once for every command.

* With ``--json`` stdout carries exactly one JSON document: while the command runs, everything written
  to stdout (DeepSpeed's "Setting accelerator to CPU" logger, compilers, Java tools, a rich table) goes
  to stderr, at the Python and, where stdout is a real file descriptor, at the descriptor level;
  `print_json` writes to the saved stdout.
* Library chatter (transformers' per-file loading and writing bars, its and peft's warnings, libav's
  demuxer messages) stays out of the terminal unless ``artemis --verbose``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import IO, Iterator

_result_stream: IO[str] | None = None
_verbose = False

# Set before the libraries are imported, which read them once.
_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "DS_DISABLE_NINJA_LOG": "1"}
_NOISY_LOGGERS = ("transformers", "peft", "accelerate", "DeepSpeed", "deepspeed", "libav", "torch._dynamo",
                  "torch.utils._pytree",
                  "torchao", "huggingface_hub", "httpx", "openai")
_NOISY_WARNING_MODULES = r"(transformers|peft|accelerate|deepspeed|torchao|torch|torchvision|open_clip|timm)(\.|$)"


def result_stream() -> IO[str]:
    """Where a command's result goes: the real stdout, also while `json_stdout` diverts the rest."""
    return _result_stream if _result_stream is not None else sys.stdout


def is_verbose() -> bool:
    return _verbose


@contextlib.contextmanager
def json_stdout(enabled: bool = True) -> Iterator[None]:
    """Divert stdout to stderr while the block runs; `result_stream()` stays the real stdout.

    Re-entrant: an inner use (a command that also asks for it) is a no-op."""
    global _result_stream
    if not enabled or _result_stream is not None:
        yield
        return
    saved_stream = sys.stdout
    saved_fd = _dup_stdout_fd(saved_stream)
    saved_stream.flush()
    if saved_fd is not None:
        os.dup2(sys.stderr.fileno(), 1)
        _result_stream = os.fdopen(saved_fd, "w", encoding="utf-8", closefd=False)
    else:  # a test runner's in-memory stdout: divert at the Python level only
        _result_stream = saved_stream
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        result = _result_stream
        _result_stream = None
        sys.stdout = saved_stream
        if saved_fd is not None:
            with contextlib.suppress(Exception):
                result.flush()
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def _dup_stdout_fd(stream: IO[str]) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if fd != 1:
        return None
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return os.dup(1)


def quiet_libraries(verbose: bool = False) -> None:
    """Keep third-party progress bars, advisory warnings and log lines out of the terminal.

    Called once per command before anything heavy is imported; `verbose` leaves everything as is."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        if _errors_only not in logger.filters:  # a filter survives the library resetting its level on import
            logger.addFilter(_errors_only)
    warnings.filterwarnings("ignore", module=_NOISY_WARNING_MODULES)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    if "transformers" in sys.modules:  # already imported (a test process): set it directly
        silence_transformers()
    if "av" in sys.modules:
        silence_libav()


def _errors_only(record: logging.LogRecord) -> bool:
    return _verbose or record.levelno >= logging.ERROR


def silence_transformers() -> None:
    """transformers' own verbosity and progress bars (its logger ignores `logging` levels set later)."""
    if _verbose:
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def silence_libav() -> None:
    """PyAV forwards libav's messages ("moov atom not found") to the terminal; errors still raise."""
    if _verbose:
        return
    with contextlib.suppress(Exception):
        import av.logging

        av.logging.set_level(av.logging.PANIC)


@contextlib.contextmanager
def c_stderr_quiet() -> Iterator[None]:
    """Silence what C libraries write straight to file descriptor 2 (decord's bundled FFmpeg prints
    "moov atom not found" / "header damaged" for a broken video; the error itself is still raised and
    reported per video). Only in worker processes: in the main process a live progress bar shares
    the descriptor, and a refresh swallowed here would garble it."""
    import multiprocessing

    if _verbose or multiprocessing.current_process().name == "MainProcess":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
