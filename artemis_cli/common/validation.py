"""One formatter from a pydantic `ValidationError` to ``location: message`` lines, for every input.

Configs, annotation records, prediction lines and prompt files all report a bad value the same way:
the dotted location (``train.lr``, ``conversations.0.from``) or `root` for the whole object, then
pydantic's message, with "unknown key (typo?)" for a key a strict model does not know.
"""

from __future__ import annotations

from typing import Any, Optional


def error_location(loc: tuple, *, brackets: bool = False, root: str = "(root)") -> str:
    """``a.b.0`` (or ``a.b[0]`` with `brackets`), `root` for an empty location."""
    if not brackets:
        return ".".join(str(part) for part in loc) or root
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or root


def error_message(err: dict[str, Any], *, missing: Optional[str] = None) -> str:
    """pydantic's message for one error, worded for a user (`missing` replaces "Field required")."""
    if err["type"] == "missing" and missing is not None:
        return missing
    if err["type"] == "extra_forbidden":
        return "unknown key (typo?)"
    if err["type"] == "value_error":
        return err["msg"].removeprefix("Value error, ")
    return err["msg"]


def validation_problems(exc, *, root: str = "(root)", brackets: bool = False,
                        missing: Optional[str] = None) -> list[str]:
    """One ``location: message`` line per error of `exc` (a pydantic `ValidationError`)."""
    return [f"{error_location(err['loc'], brackets=brackets, root=root)}: {error_message(err, missing=missing)}"
            for err in exc.errors()]
