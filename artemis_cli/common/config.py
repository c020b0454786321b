"""Run configs: a YAML file is a serialised pydantic model; ``--set a.b=c`` overrides apply first.

Every problem is reported at once as ``location: message`` lines in one `ConfigError`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, TypeVar

from pydantic import BaseModel, ValidationError

from artemis_cli.common.validation import validation_problems
from artemis_cli.errors import ConfigError, UsageError

M = TypeVar("M", bound=BaseModel)
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_NON_FINITE = re.compile(r"[-+]?\.?(inf|infinity|nan)", re.IGNORECASE)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=1e-4`` -> (["train", "lr"], 0.0001); the value is parsed as a YAML scalar/list."""
    import yaml

    if "=" not in text:
        raise UsageError(f"--set {text!r}: expected KEY=VALUE, for example train.lr=1e-4")
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise UsageError(f"--set {text!r}: empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # PyYAML (YAML 1.1) reads 1e-4 as a string; a number is what the user means.
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def format_validation_error(exc: ValidationError) -> list[str]:
    """``location: message`` lines (`common.validation.validation_problems`), for a `ConfigError`."""
    return validation_problems(exc)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, expected a YAML config file") from None
    except PermissionError:
        raise UsageError(f"{path}: config file is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: config file is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise UsageError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def load_config(model: type[M], path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> M:
    """Build `model` from `base` (defaults from CLI flags), then the YAML file, then ``--set`` overrides.

    `context` is pydantic's validation context (validators read it, e.g. to check paths exist)."""
    data: dict[str, Any] = dict(base or {})
    source = "config"
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
        source = str(path)
    data = apply_overrides(data, list(overrides or []))
    # inf/nan/absurd numbers crash validators (int(inf)) or start runs that fail much later: they are
    # reported as problems of their own and left out, so every other problem is still reported.
    numeric = list(_bad_numbers(data, ()))
    for location, _ in numeric:
        _drop(data, location)
    problems = [f"{'.'.join(map(str, location))}: {message}" for location, message in numeric]
    try:
        validated = model.model_validate(data, context=context)
    except ValidationError as exc:
        dropped = {tuple(location) for location, _ in numeric}
        problems += [line for err, line in zip(exc.errors(), format_validation_error(exc))
                     if tuple(err["loc"]) not in dropped and not (err["type"] == "missing"
                                                                  and tuple(err["loc"]) in dropped)]
    except (OverflowError, ArithmeticError) as exc:  # a validator doing arithmetic on a huge value
        problems.append(f"(root): {exc}")
    if problems:
        raise ConfigError(source, problems)
    return validated


MAX_CONFIG_NUMBER = 1e15  # far above any step count, size or rate; catches 1e308 and "999...9"


def _bad_numbers(node: Any, location: tuple) -> Iterator[tuple[tuple, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _bad_numbers(value, (*location, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _bad_numbers(value, (*location, index))
    elif isinstance(node, bool):
        return
    elif isinstance(node, str) and (_NON_FINITE.fullmatch(node.strip()) or _FLOAT.fullmatch(node.strip())):
        text = node.strip()
        number = math.nan if _NON_FINITE.fullmatch(text) else float(text)  # YAML's ".inf" read as a string
        if not math.isfinite(number):
            yield location, f"must be a finite number, got {node.strip()}"
        elif abs(number) > MAX_CONFIG_NUMBER:
            yield location, f"{number:.3g} is out of range (at most {MAX_CONFIG_NUMBER:.0e} in magnitude)"
    elif isinstance(node, float) and not math.isfinite(node):
        yield location, f"must be a finite number, got {node}"
    elif isinstance(node, (int, float)) and abs(node) > MAX_CONFIG_NUMBER:
        yield location, f"{node:.3g} is out of range (at most {MAX_CONFIG_NUMBER:.0e} in magnitude)"


def _drop(data: Any, location: tuple) -> None:
    node = data
    for part in location[:-1]:
        node = node[part]
    if isinstance(node, dict):
        node.pop(location[-1], None)
    else:
        node[location[-1]] = 0


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_config(config: BaseModel, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically), so the run folder describes itself."""
    import yaml

    from artemis_cli.common.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
