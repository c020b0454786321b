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
        raw = self.path.read_bytes()
        good_end = 0
        offset = 0
        for line in raw.splitlines(keepends=True):
            end = offset + len(line)
            complete = line.endswith(b"\n")
            try:
                record = json.loads(line.decode("utf-8")) if line.strip() else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
                if complete:
                    raise InputError(
                        f"{self.path}: a complete line at byte {offset} is not valid JSON; refusing to append",
                        hint="move the file aside or fix that line, then rerun",
                    )
            if record is not None and complete:
                self.done.add(str(record.get(self.id_field)))
                good_end = end
            elif not complete:
                break
            else:
                good_end = end
            offset = end
        if good_end < len(raw):
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
