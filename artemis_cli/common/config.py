"""Run configs: a YAML file is a serialised pydantic model; ``--set a.b=c`` overrides apply first.

Every problem is reported at once as ``location: message`` lines in one `ConfigError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from artemis_cli.errors import ConfigError, UsageError

M = TypeVar("M", bound=BaseModel)
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


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
    lines = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err["loc"]) or "(root)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (typo?)"
        elif err["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        lines.append(f"{location}: {message}")
    return lines


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found") from None
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
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


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
