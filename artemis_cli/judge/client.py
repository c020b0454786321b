"""One judge call per item, with our own retry loop around the openai v1 client.

The SDK's own retries are switched off (``max_retries=0``) so that every attempt is counted here:
`max_attempts` caps the calls per item, whatever went wrong (429, 5xx, timeout, connection error,
an unparseable or out-of-range reply). Waits grow exponentially with jitter, honour ``Retry-After``
(``retry-after-ms`` too), and are capped, so a run always ends.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from artemis_cli.errors import ArtemisError, UsageError
from artemis_cli.judge.parsing import ReplyError, parse_reply

PLACEHOLDER_KEY = "not-needed"  # sent to a --base-url server when OPENAI_API_KEY is unset (vLLM, local)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Delay before the next attempt after `failures` failed ones: base * 2^(n-1), jittered 50-100%."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(failures - 1, 30))
        return ceiling * (0.5 + 0.5 * rng.random())


class JudgeAbort(ArtemisError):
    """A failure that no retry can fix (bad key, unknown model, no permission): the run stops."""


@dataclass
class Outcome:
    """What happened to one item: a verdict, or an error with the last raw reply."""

    verdict: dict[str, Any] | None
    attempts: int
    served_model: str | None = None
    raw_reply: str | None = None
    error: str | None = None
    usage: dict[str, int] | None = None
    errors: list[str] = field(default_factory=list)


def redact(text: str | None, secrets: tuple[str, ...]) -> str | None:
    """`text` with every secret (API key) replaced by ``***``."""
    if text is None:
        return None
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def api_key_from_env(base_url: str | None) -> str:
    key = os.environ.get("OPENAI_API_KEY", "")
    if key:
        return key
    if base_url:
        return PLACEHOLDER_KEY
    raise UsageError("OPENAI_API_KEY is not set",
                     hint="export OPENAI_API_KEY=..., or pass --base-url for a server that needs no key; "
                          "--dry-run needs no key")


def make_client(base_url: str | None, timeout: float, api_key: str) -> Any:
    """An openai v1 client with the SDK's retries off (`call_judge` does the retrying)."""
    from openai import OpenAI

    return OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if any."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value) if name == "retry-after" else None
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _classify(exc: Exception) -> tuple[str, float | None]:
    """("retry" | "item" | "abort", Retry-After seconds) for an exception from the client."""
    import openai

    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)):
        return "abort", None
    if isinstance(exc, openai.APIStatusError):
        after = retry_after_seconds(exc.response.headers)
        if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
            return "retry", after
        return "item", None
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return "retry", None
    return "raise", None


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    return f"{name} ({status}): {message}" if status else f"{name}: {message}"


def safe_url(url: str | None) -> str | None:
    """The base URL without any user:password part (for manifests and messages)."""
    from urllib.parse import urlsplit, urlunsplit

    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _model_gone(exc: Exception, model: str) -> bool:
    """Whether a 404 says the model does not exist (OpenAI's ``model_not_found``; vLLM and Ollama name it)."""
    message = str(getattr(exc, "message", "") or exc)
    return getattr(exc, "code", None) == "model_not_found" or bool(model and model in message)


def call_judge(client: Any, model: str, messages: list[dict[str, str]], task: str, policy: RetryPolicy,
               stop: threading.Event, rng: random.Random, secrets: tuple[str, ...] = (),
               on_verdict: Callable[[Outcome], None] | None = None, params: dict[str, Any] | None = None) -> Outcome:
    """Judge one item: call, parse, retry on transient faults and bad replies, at most `max_attempts` calls.

    `params` are extra request parameters (temperature, top_p, max_tokens). `on_verdict` runs as soon
    as a reply parses (the runner caches it there). Raises `JudgeAbort` on 401/403/404 (a model that is
    not served is named, with what to do); returns an `Outcome` with `error` set when the item failed.
    """
    import openai

    from artemis_cli.judge.models import CHOOSE_HINT, model_gone_message

    extra = dict(params or {})
    outcome = Outcome(verdict=None, attempts=0)
    for attempt in range(1, policy.max_attempts + 1):
        if stop.is_set():
            outcome.error = outcome.error or "run interrupted"
            return outcome
        outcome.attempts = attempt
        retry_after: float | None = None
        try:
            completion = client.chat.completions.create(model=model, messages=messages, **extra)
        except Exception as exc:  # classified below; anything unknown is re-raised as a bug
            kind, retry_after = _classify(exc)
            message = redact(_describe(exc), secrets)
            if kind == "raise":
                raise
            if kind == "abort" and isinstance(exc, openai.NotFoundError) and _model_gone(exc, model):
                endpoint = (safe_url(str(getattr(client, "base_url", "") or "")) or "the OpenAI API").rstrip("/")
                raise JudgeAbort(model_gone_message(model, endpoint, message), hint=CHOOSE_HINT) from None
            if kind == "abort":
                raise JudgeAbort(f"the judge API refused the request: {message}",
                                 hint="check OPENAI_API_KEY, --base-url and --model") from None
            outcome.errors.append(message)
            outcome.error = message
            if kind == "item":
                return outcome
        else:
            outcome.served_model = getattr(completion, "model", None)
            for name, count in _usage(completion).items():  # summed over attempts: every call is paid
                outcome.usage = outcome.usage or {}
                outcome.usage[name] = outcome.usage.get(name, 0) + count
            content = _content(completion)
            outcome.raw_reply = redact(content, secrets)
            try:
                outcome.verdict = parse_reply(content, task)
            except ReplyError as exc:
                outcome.error = f"unusable reply: {exc}"
                outcome.errors.append(outcome.error)
            else:
                outcome.error = None
                if on_verdict is not None:
                    on_verdict(outcome)
                return outcome
        if attempt < policy.max_attempts:
            delay = policy.backoff(attempt, rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, policy.max_delay))
            stop.wait(delay)
    return outcome


def _content(completion: Any) -> str | None:
    choices = getattr(completion, "choices", None) or []
    if not choices:
        return None
    message = getattr(choices[0], "message", None)
    return getattr(message, "content", None)


def _usage(completion: Any) -> dict[str, int]:
    usage = getattr(completion, "usage", None)
    if usage is None:
        return {}
    return {name: int(getattr(usage, name, 0) or 0) for name in ("prompt_tokens", "completion_tokens")}
