"""Reading JSON and JSON Lines with errors that name the file, line, column (and never `eval`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from artemis_cli.errors import InputError


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a file") from None
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:  # a symlink loop, an I/O error
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None


def load_json(path: str | os.PathLike) -> Any:
    """Parse a whole JSON file; malformed, empty or non-UTF-8 content raises `InputError`."""
    path = Path(path)
    return _parse_json(path, _read_text(path))


def _parse_json(path: Path, text: str) -> Any:
    if not text.strip():
        raise InputError(f"{path}: file is empty, expected JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def iter_jsonl(path: str | os.PathLike, *, skip_bad: bool = False, bad: list | None = None,
               text: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file.

    A malformed line raises `InputError` naming the line, or with `skip_bad` is appended to `bad`
    as ``(line_number, message)`` and skipped. `text` is the file's content when already read.
    """
    path = Path(path)
    text = _read_text(path) if text is None else text
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}"
            if not skip_bad:
                raise InputError(message, hint="pass --skip-bad to skip and count malformed lines") from None
            if bad is not None:
                bad.append((number, message))


def load_records(path: str | os.PathLike, *, skip_bad: bool = False, bad: list | None = None) -> list[tuple[int, Any]]:
    """Read a `.jsonl` file or a `.json` list as ``(line or index, record)`` pairs.

    `.jsonl` records are numbered by line (1-based); a `.json` list by index (0-based). A `.json`
    file whose first non-space character is not ``[`` is read as JSON Lines, since many tools
    write JSON Lines under a `.json` name.
    """
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        return list(enumerate(_parse_json(path, text)))
    return list(iter_jsonl(path, skip_bad=skip_bad, bad=bad, text=text))
