"""`run_demo`: the whole pipeline on the sample data with tiny random models, step by step.

Rerunning into the same folder resumes: steps an earlier run finished (recorded in
``demo-state.json``, their output still there, same settings) are reused; the first step that did not
finish and every step after it run again, each clearing its own outputs first. ``fresh`` redoes
everything. A folder that is not empty and holds no ``demo-state.json`` is refused (never cleared).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Optional

from artemis_cli.common.manifest import changed_settings
from artemis_cli.demo.results import DemoResult, StepRecord
from artemis_cli.demo.steps import STEPS, DemoContext, Step
from artemis_cli.demo.workspace import DemoOptions, Workspace
from artemis_cli.errors import ArtemisError, UsageError

STATE_VERSION = 1


def prepare_folder(options: DemoOptions) -> tuple[Workspace, bool]:
    """The demo folder (a new temp folder when `options.out` is None) and whether it is temporary."""
    if options.out is None:
        return Workspace(Path(tempfile.mkdtemp(prefix="artemis-demo-"))), True
    root = options.out.expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise UsageError(f"-o {root}: exists and is not a folder")
    ws = Workspace(root)
    if root.is_dir() and any(root.iterdir()) and not ws.state.is_file():
        raise UsageError(f"-o {root}: the folder is not empty and holds no earlier demo (no {ws.state.name})",
                         hint="pass a new or empty folder; the demo never clears a folder it did not make")
    root.mkdir(parents=True, exist_ok=True)
    return ws, False


def load_earlier(ws: Workspace, options: DemoOptions) -> dict[str, dict]:
    """Finished steps of an earlier run into this folder, if its settings match (else nothing)."""
    if options.fresh or not ws.state.is_file():
        return {}
    try:
        state = json.loads(ws.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    changed = changed_settings(state.get("settings") or {}, options.fingerprint()) if isinstance(state, dict) else []
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or changed:
        if options.show_progress:
            from artemis_cli.common.console import stderr

            what = f" ({', '.join(changed)})" if changed else ""
            stderr.print(f"{ws.root} holds a demo made with other settings{what} (or another artemis): redoing every step")
        return {}
    return {key: entry for key, entry in state.get("steps", {}).items() if isinstance(entry, dict)}


def _save_state(ws: Workspace, options: DemoOptions, records: list[StepRecord]) -> None:
    from artemis_cli.common.atomic import atomic_write_json

    atomic_write_json(ws.state, {"version": STATE_VERSION, "settings": options.fingerprint(),
                                 "steps": {r.key: asdict(r) for r in records}})


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Keep the display to our progress bars: no per-file loading bars, deprecation chatter or info logs."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()


def _reusable(entry: Optional[dict], root: Path) -> bool:
    if not entry or entry.get("status") not in ("ok", "reused") or not entry.get("output"):
        return False
    return (root / entry["output"]).exists()


def _run_step(step: Step, ctx: DemoContext, record: StepRecord, number: str) -> None:
    from artemis_cli.common.console import stderr

    reason = step.skip_reason(ctx)
    if reason:
        record.status, record.detail = "skipped", reason
        return
    show = ctx.options.show_progress
    status = stderr.status(f"{number} {step.title}") if show and not step.own_progress else contextlib.nullcontext()
    if show and step.own_progress:
        stderr.print(f"[bold cyan]{number}[/] [bold]{step.title}[/]")
    started = time.perf_counter()
    try:
        with status:
            output = step.run(ctx)
    except Exception as exc:  # any failure stops the demo; it is reported with the step's name
        record.status, record.seconds = "failed", time.perf_counter() - started
        if isinstance(exc, ArtemisError):
            record.error, record.hint = exc.message, exc.hint
        else:
            record.error = f"{type(exc).__name__}: {exc}"
        if os.environ.get("ARTEMIS_DEBUG") == "1":
            raise
        return
    record.status, record.seconds = "ok", time.perf_counter() - started
    record.output = os.path.relpath(output.output, ctx.ws.root)
    record.detail, record.data = output.detail, output.data


def _show(record: StepRecord, number: str) -> None:
    from rich.markup import escape

    from artemis_cli.common.console import stderr

    style = {"ok": "green", "reused": "cyan", "skipped": "yellow", "failed": "red"}[record.status]
    text = escape(record.error if record.status == "failed" else record.detail)
    stderr.print(f"[{style}]{record.status:>7}[/] {number} {escape(record.title)} "
                 f"[dim]{record.seconds:.1f} s[/] {text}", soft_wrap=True)


def _kept_folder() -> Path:
    """Where the report of a demo whose temporary folder goes is kept: ``$ARTEMIS_CACHE/demo/report-<time>/``
    (default ``~/.cache/artemis``), never anything in the current folder."""
    import datetime as dt

    base = Path(os.environ["ARTEMIS_CACHE"]) if os.environ.get("ARTEMIS_CACHE") else Path.home() / ".cache" / "artemis"
    return base / "demo" / f"report-{dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"


def run_demo(options: DemoOptions) -> DemoResult:
    """Run every step (`STEPS`) into the demo folder, write ``report.md`` there and return what happened.

    Stops at the first failing step (the rest are "not run"); the result's `error()` names it. A
    temporary folder is removed at the end unless `options.keep` or a step failed.
    """
    from artemis_cli.demo.report import write_report

    started = time.perf_counter()
    ws, temporary = prepare_folder(options)
    earlier = load_earlier(ws, options)
    ctx = DemoContext(ws=ws, options=options)
    records = [StepRecord(step.key, step.title) for step in STEPS]
    resuming = True
    with quiet_libraries():
        for index, (step, record) in enumerate(zip(STEPS, records), start=1):
            number = f"[{index}/{len(STEPS)}]"
            entry = earlier.get(step.key)
            if resuming and _reusable(entry, ws.root):
                record.status = "reused"
                record.seconds, record.output = entry.get("seconds", 0.0), entry["output"]
                record.detail, record.data = entry.get("detail", ""), entry.get("data", {})
            else:
                resuming = False
                try:
                    _run_step(step, ctx, record, number)
                finally:
                    _save_state(ws, options, records)
            if options.show_progress:
                _show(record, number)
            if record.status == "failed":
                break
    result = DemoResult(out=ws.root, steps=records, seconds=time.perf_counter() - started, temporary=temporary,
                        resumed=any(r.status == "reused" for r in records))
    if temporary and not options.keep and result.ok:
        # the report (with its loss plots) outlives the folder; it links nothing inside it
        try:
            result.kept_report = write_report(ws, options, result, kept=_kept_folder())
        except OSError:  # a read-only cache: the summary still says what ran
            result.kept_report = None
        shutil.rmtree(ws.root, ignore_errors=True)
        result.removed = True
    else:
        write_report(ws, options, result)
    return result
