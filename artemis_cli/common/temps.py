"""Stray temp files of an earlier, killed run: removed by the rerun, and only its own.

`artemis_cli.common.atomic.atomic_open` writes ``.<name>.<8 random chars>.tmp`` beside ``<name>`` and
renames it; a kill between the two leaves the temp file behind. A rerun calls `remove_stray_temps`
on its own output folder with the names it writes (or a predicate over them), so a temp file of
another command, or of a concurrent shard writing other names into the same folder, is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Union

# mkstemp's random part: 8 characters of [a-z0-9_].
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def temp_target(filename: str) -> str | None:
    """The file a temp name belongs to (``.manifest.json.k2j_x9ab.tmp`` -> ``manifest.json``), else None."""
    match = TEMP_NAME.match(filename)
    return match.group("name") if match else None


def remove_stray_temps(folder: Union[str, os.PathLike],
                       names: Union[Iterable[str], Callable[[str], bool]]) -> list[Path]:
    """Remove ``.<name>.XXXXXXXX.tmp`` files in `folder` (not below it) whose `<name>` is one of
    `names` (or satisfies the predicate); return what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    owns = names if callable(names) else set(names).__contains__
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith(".") or not entry.name.endswith(".tmp"):
                continue
            target = temp_target(entry.name)
            if target is None or not owns(target) or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed
