"""Append-only JSON Lines output that survives kills: resume by id, repair a torn last line.

Every long-running command that emits one record per item (inference, judging) writes through
`ResumableJsonl`: a rerun reads the file, drops a truncated last line left by a kill, and skips ids
that are already complete, so kill + rerun gives the same set of lines as one clean run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from artemis_cli.errors import InputError


def read_complete_lines(path: Path) -> tuple[list[tuple[int, dict]], int, bool]:
    """Every complete (newline-terminated) line of a JSONL file that a kill may have cut short.

    Returns ``(line number, object)`` pairs, the byte length of the complete lines, and whether an
    unterminated (torn) last line follows them. A complete line that is not a JSON object is an
    `InputError` naming it: only the last line can be torn by a kill.
    """
    raw = path.read_bytes()
    records: list[tuple[int, dict]] = []
    good_end = 0
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            break
        good_end += len(line)
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"{path}:{number}: a complete line is not valid JSON") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    return records, good_end, good_end < len(raw)


class ResumableJsonl:
    """An append-only JSONL file keyed by `id_field`.

    Use as a context manager; `done` holds the ids already written; `write(record)` appends one
    line and flushes it to disk before returning.
    """

    def __init__(self, path: str | os.PathLike, id_field: str = "id", fsync: bool = True):
        self.path = Path(path)
        self.id_field = id_field
        self.fsync = fsync
        self.done: set[str] = set()
        self.repaired = False
        self._handle = None

    def __enter__(self) -> "ResumableJsonl":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._load_and_repair()
        self._handle = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _load_and_repair(self) -> None:
        if not self.path.exists():
            return
        try:
            records, good_end, torn = read_complete_lines(self.path)
        except InputError as exc:
            raise InputError(f"{exc.message}; refusing to append",
                             hint="move the file aside or fix that line, then rerun") from None
        self.done.update(str(record.get(self.id_field)) for _, record in records)
        if torn:
            # A kill during a write left a partial last line: cut it off so the item is redone.
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)
            self.repaired = True

    def write(self, record: dict[str, Any]) -> None:
        assert self._handle is not None, "use ResumableJsonl as a context manager"
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())
        self.done.add(str(record.get(self.id_field)))

    def pending(self, items: Iterable[Any], key: Callable[[Any], Any]) -> list[Any]:
        """The items whose id (as given by `key`) is not yet in the file."""
        return [item for item in items if str(key(item)) not in self.done]
