"""Judge prompt templates: what a ``--prompt-file`` holds, how it is filled, read and shown.

A template is a system message (optional) and a user message. Placeholders are ``{name}`` with
the names of the task's placeholders (`judge.tasks`); any other brace text (a JSON example such as
``{"score": 4}``) is left as it is, so the published prompt text can be pasted into a
``--prompt-file`` unchanged. Substitution is a single pass, so a prediction that itself contains
``{answer}`` is never expanded.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from artemis_cli.common.validation import validation_problems
from artemis_cli.errors import UsageError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PromptTemplate(BaseModel):
    """What a ``--prompt-file`` holds (YAML/JSON keys `system`, `user`; a .txt file is the user text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    system: str = ""
    user: str

    def render(self, fields: dict[str, str]) -> list[dict[str, str]]:
        """Chat messages for one item; `fields` maps placeholder names to the item's text."""

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), m.group(0)), text)

        messages = [{"role": "system", "content": fill(self.system)}] if self.system else []
        messages.append({"role": "user", "content": fill(self.user)})
        return messages

    def hash(self) -> str:
        """A stable hash of the template text (part of every cache key)."""
        canonical = json.dumps({"system": self.system, "user": self.user}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def placeholders_in(template: PromptTemplate) -> set[str]:
    """Every ``{name}`` the template's texts use."""
    return set(_PLACEHOLDER.findall(template.system + "\n" + template.user))


def read_template_file(path: Path) -> PromptTemplate:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: prompt file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the prompt file ({type(exc).__name__})") from None
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        if not text.strip():
            raise UsageError(f"{path}: prompt file is empty")
        return PromptTemplate(user=text)
    import yaml

    try:
        data = yaml.safe_load(text)  # JSON is a subset of YAML
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML/JSON: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with keys 'system' (optional) and 'user'")
    try:
        return PromptTemplate.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{path}: " + "; ".join(validation_problems(exc))) from None


def template_as_yaml(template: PromptTemplate) -> str:
    """The template as a YAML `--prompt-file` (literal blocks), for `artemis judge show-prompt`."""
    import yaml

    class _Literal(str):
        pass

    class _Dumper(yaml.SafeDumper):
        pass

    _Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|"))
    data = {"system": _Literal(template.system), "user": _Literal(template.user)}
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
