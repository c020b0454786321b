"""The one exception family that library code raises for expected failures.

`artemis_cli.cli.app.main` turns an `ArtemisError` into ``error: ...`` / ``hint: ...`` on stderr and
its exit code; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class ArtemisError(Exception):
    """A failure the user can act on: a message, an optional hint naming the fix, an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class InputError(ArtemisError):
    """An input file (annotations, features, predictions, checkpoint) is missing or malformed."""

    exit_code = 1


class UsageError(ArtemisError):
    """The command was called wrongly: bad option values, an invalid config, conflicting flags."""

    exit_code = 2


class ConfigError(UsageError):
    """A run config failed validation; `problems` holds every ``location: message`` line."""

    def __init__(self, source: str, problems: list[str], hint: str | None = None):
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}", hint)
