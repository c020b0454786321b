"""Output-path guards, checked before any work: an output never destroys an input.

`check_output` refuses an output that equals, contains or lies inside one of the command's inputs
(``--overwrite`` included), that sits below a regular file, in a read-only folder, or that is a folder
where a file is expected (and the reverse). `check_owned` is what ``--overwrite`` asks before it
removes a folder: it must look like this command's own earlier output. All refusals are usage errors
(exit 2) naming the user's option and what was found.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal, Mapping, Optional, Union

from artemis_cli.errors import UsageError

PathLike = Union[str, os.PathLike]


def _resolve(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise UsageError(f"{path}: cannot resolve the path ({exc})") from None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def check_output(path: PathLike, *, kind: Literal["file", "dir"], option: str,
                 inputs: Optional[Mapping[str, Optional[PathLike]]] = None) -> Path:
    """Refuse an unusable or input-destroying output path; return it unchanged.

    `kind` is what the command writes at `path`; `option` is how the user named it (``-o``, ``OUT``);
    `inputs` maps each input's option name to its path (None entries are ignored)."""
    path = Path(path)
    where = f"{option} {path}"
    resolved = _resolve(path)
    for name, value in (inputs or {}).items():
        if value is None:
            continue
        source = _resolve(Path(value))
        if resolved == source:
            raise UsageError(f"{where}: is the same path as {name}; writing it would destroy the input",
                             hint=f"choose an output path outside {name}")
        if source in resolved.parents and source.is_dir():
            raise UsageError(f"{where}: lies inside {name} ({value}); refusing to write into an input",
                             hint=f"choose an output path outside {value}")
        if resolved in source.parents:
            raise UsageError(f"{where}: contains {name} ({value}); replacing it could destroy the input",
                             hint=f"choose an output path that does not hold {value}")
    if path.exists():
        if kind == "file" and path.is_dir():
            raise UsageError(f"{where}: is a folder, expected a file path", hint="name a file inside it instead")
        if kind == "dir" and not path.is_dir():
            raise UsageError(f"{where}: is a file, expected a folder", hint="choose a folder path")
    existing = _nearest_existing(path.parent if not path.exists() or kind == "file" else path)
    if existing.exists() and not existing.is_dir():
        raise UsageError(f"{where}: {existing} is a file, so nothing can be written below it",
                         hint="choose a path whose parent folders are folders")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{where}: the folder {existing} is not writable", hint="choose a writable location")
    return path


def check_input_exists(path: PathLike, *, option: str, kind: Literal["file", "dir", "any"] = "any") -> Path:
    """A missing input named on the command line is bad usage (exit 2), with the option named."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{option} {path}: does not exist")
    if kind == "file" and path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, expected a file")
    if kind == "dir" and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, expected a folder")
    return path


def check_owned(folder: PathLike, *, option: str, command: str, markers: Iterable[str],
                allow_empty: bool = True) -> None:
    """Before ``--overwrite`` removes `folder`: it must hold one of `markers` (files this command writes).

    Anything else (a dataset, a model, someone's home folder) is refused, saying what was found."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UsageError(f"{option} {folder}: is a file, expected a folder")
    markers = list(markers)
    if any((folder / marker).exists() for marker in markers):
        return
    entries = sorted(p.name for p in folder.iterdir())
    if not entries and allow_empty:
        return
    shown = ", ".join(entries[:6]) + (f", ... ({len(entries)} entries)" if len(entries) > 6 else "")
    raise UsageError(f"{option} {folder}: --overwrite only replaces the output of `artemis {command}`, and this "
                     f"folder does not look like one (no {' or '.join(markers)}; found: {shown or 'nothing'})",
                     hint="choose another output folder, or remove this one yourself if it really is disposable")
