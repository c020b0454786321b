"""`judge`: LLM-judged evaluation of video QA, the five Video-ChatGPT dimensions and the peers' description
benchmarks (`judge.tasks`), with any OpenAI-compatible chat model the user names.

Items already in the output folder or in the cache cost nothing; the rest are judged by a bounded
thread pool, one call (plus retries) per distinct item text. Every item ends "judged" or "failed";
failed items are listed with their last raw reply and never enter the aggregates.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Annotated, Any, Iterable, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from artemis_cli.data.benchmarks import recorded_input_ids
from artemis_cli.judge.cache import CachedVerdict, JudgeCache, default_cache_dir
from artemis_cli.judge.client import Outcome, RetryPolicy, api_key_from_env, call_judge, make_client, safe_url
from artemis_cli.judge.items import JudgeItem, load_items
from artemis_cli.judge.output import (JUDGMENTS, JudgeSummary, aggregate, check_run_file, default_output_dir,
                                      failed_record, judged_record, load_judged, predictions_hash, write_results)
from artemis_cli.judge.prompts import PromptTemplate
from artemis_cli.judge.tasks import JUDGE_TASKS, judge_task, load_template

_SNAPSHOT = re.compile(r"(-\d{4}(-\d{2}-\d{2})?|-\d{8}|@\d{8})$")


def _registered_task(value: str) -> str:
    if value not in JUDGE_TASKS:
        raise ValueError(f"{value!r}: expected one of {', '.join(JUDGE_TASKS)}")
    return value


Task = Annotated[str, AfterValidator(_registered_task)]


class JudgeOptions(BaseModel):
    """Settings of one judge run (the CLI flags of `artemis judge gpt`)."""

    model_config = ConfigDict(extra="forbid")
    task: Task
    model: str = Field(min_length=1)  # no default: a retired default fails everyone at once (judge.models)
    base_url: Optional[str] = None
    concurrency: int = Field(8, ge=1, le=256)
    max_attempts: int = Field(6, ge=1, le=100)
    timeout: float = Field(60.0, gt=0)
    retry_base_delay: float = Field(1.0, ge=0)
    retry_max_delay: float = Field(60.0, ge=0)
    temperature: Optional[float] = Field(None, ge=0, le=2)  # None: the task's protocol value, else the server's
    cache_dir: Optional[Path] = None
    output_dir: Optional[Path] = None
    prompt_file: Optional[Path] = None
    dry_run: bool = False
    overwrite: bool = False
    show_progress: bool = True


def pin_warning(model: str) -> str | None:
    """A warning when `model` is an alias (not a dated snapshot) whose judgments drift over time, or a
    model known to be retired (or retiring within 90 days)."""
    from artemis_cli.judge.models import retirement

    retired = retirement(model)
    if retired:
        return (f"judge model {model!r} {retired} (OpenAI's deprecations, by secondary sources): its scores "
                "cannot be reproduced after that; measure a replacement with `artemis judge compare`")
    if _SNAPSHOT.search(model):
        return None
    return (f"model {model!r} is an unpinned alias: the model behind it changes and judge scores drift "
            "(re-judging has moved published accuracy by several points); pass a dated snapshot (or an "
            "open-weight judge behind --base-url) for results comparable over time")


def request_params(task: str, temperature: float | None) -> dict[str, Any]:
    """The request parameters of a run: `temperature` (None: the task's protocol value), the task's top_p and
    max_tokens; only those that are set (None leaves the server's default)."""
    spec = judge_task(task)
    values = {"temperature": temperature if temperature is not None else spec.temperature,
              "top_p": spec.top_p, "max_tokens": spec.max_tokens}
    return {name: value for name, value in values.items() if value is not None}


def prompt_hash(task: str, template: PromptTemplate, temperature: float | None, **params: Any) -> str:
    """Hash of everything besides model and item text that shapes the reply (part of the cache key);
    `params` (top_p, max_tokens) enter only when set, so earlier caches keep their keys."""
    shape = {"task": task, "template": template.hash(), "temperature": temperature}
    shape.update({name: value for name, value in params.items() if value is not None})
    text = json.dumps(shape, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def judge(predictions: Union[str, os.PathLike, Iterable[dict[str, Any]]], options: JudgeOptions,
          client: Any = None) -> JudgeSummary:
    """Judge every prediction record with an OpenAI-compatible chat model; write and return the summary.

    `predictions` is a `.jsonl`/`.json` file or a list of records (then `options.output_dir` is
    required). `client` is anything with ``chat.completions.create(model=, messages=)`` returning
    an openai ``ChatCompletion``; by default an openai v1 client for `options.base_url` with the key
    from ``OPENAI_API_KEY``. Writes `judgments.jsonl`, `summary.json`, `manifest.json` and `run.json`
    into the output folder (nothing with `dry_run`). Raises `JudgeAbort` on 401/403/404.
    """
    from artemis_cli.errors import UsageError

    template = load_template(options.task, options.prompt_file)
    items = load_items(options.task, predictions)
    if options.output_dir is not None:
        out = Path(options.output_dir)
    elif isinstance(predictions, (str, os.PathLike)):
        out = default_output_dir(Path(predictions), options.task, options.model)
    else:
        raise UsageError("output_dir is required when predictions are given as records")
    params = request_params(options.task, options.temperature)
    phash = prompt_hash(options.task, template, params.get("temperature"), top_p=params.get("top_p"),
                        max_tokens=params.get("max_tokens"))
    summary = JudgeSummary(task=options.task, model=options.model, n_items=len(items), output_dir=out,
                           dry_run=options.dry_run, base_url=safe_url(options.base_url),
                           temperature=params.get("temperature"), prompt_hash=phash)
    warning = pin_warning(options.model)
    if warning:
        summary.warnings.append(warning)
    cache_dir = Path(options.cache_dir) if options.cache_dir is not None else default_cache_dir()
    identity = {"task": options.task, "model": options.model, "prompt_hash": phash,
                "predictions_hash": predictions_hash(items)}
    if options.dry_run:
        return _dry_run(summary, items, template, cache_dir, out, identity, options)

    secrets: tuple[str, ...] = ()
    if client is None:
        key = api_key_from_env(options.base_url)
        secrets = (key,)
        client = make_client(options.base_url, options.timeout, key)
    elif os.environ.get("OPENAI_API_KEY"):
        secrets = (os.environ["OPENAI_API_KEY"],)
    check_run_file(out, identity, options.overwrite)
    from artemis_cli.common.temps import remove_stray_temps
    from artemis_cli.judge.output import RUN_FILE, SUMMARY

    remove_stray_temps(out, {JUDGMENTS, RUN_FILE, SUMMARY, "manifest.json"})  # a killed run's, never others'
    records: dict[str, dict[str, Any]] = dict(load_judged(out / JUDGMENTS))
    with JudgeCache(cache_dir) as cache:
        _run(items, records, out, cache, client, template, phash, params, options, summary, secrets)
    expected = recorded_input_ids(Path(predictions)) if isinstance(predictions, (str, os.PathLike)) else None
    aggregate(summary, items, records, expected)
    write_results(out, summary, {
        "task": options.task, "model": options.model, "base_url": safe_url(options.base_url),
        "prompt_hash": phash, "prompt_file": str(options.prompt_file) if options.prompt_file else None,
        "template": template.model_dump(), "temperature": params.get("temperature"), "request_params": params,
        "protocol": judge_task(options.task).protocol or None, "cache": str(cache.path),
        "concurrency": options.concurrency, "max_attempts": options.max_attempts, "timeout": options.timeout,
    })
    return summary


def _run(items: list[JudgeItem], records: dict[str, dict[str, Any]], out: Path, cache: JudgeCache, client: Any,
         template: PromptTemplate, phash: str, params: dict[str, Any], options: JudgeOptions, summary: JudgeSummary,
         secrets: tuple[str, ...]) -> None:
    from artemis_cli.common.jsonl_writer import ResumableJsonl

    done = [item for item in items if item.id in records]
    pending = [item for item in items if item.id not in records]
    summary.n_cached = len(done)
    hits = cache.get_many(options.model, phash, [item.content_hash for item in pending])
    groups: dict[str, list[JudgeItem]] = {}
    for item in pending:
        groups.setdefault(item.content_hash, []).append(item)
    progress = _progress(options.show_progress)
    policy = RetryPolicy(options.max_attempts, options.retry_base_delay, options.retry_max_delay)
    stop = threading.Event()
    with ResumableJsonl(out / JUDGMENTS) as writer, progress:
        task_id = progress.add_task(f"judge {options.task}", total=len(items), completed=len(done))

        def record(group: list[JudgeItem], outcome: Outcome, cached: bool) -> None:
            for position, item in enumerate(group):
                if outcome.verdict is None:
                    rec = failed_record(item, outcome)
                else:
                    rec = judged_record(item, outcome, cached=cached or position > 0)
                    summary.n_cached += int(cached or position > 0)
                writer.write(rec)
                records[item.id] = rec
                progress.advance(task_id)

        for content_hash, group in list(groups.items()):
            hit = hits.get(content_hash)
            if hit is not None:
                record(group, Outcome(hit.verdict, hit.attempts, hit.served_model, hit.raw_reply, usage=hit.usage),
                       cached=True)
                del groups[content_hash]

        def save(content_hash: str, outcome: Outcome) -> None:
            cache.put(options.model, phash, content_hash,
                      CachedVerdict(outcome.verdict or {}, outcome.served_model, outcome.raw_reply,
                                    outcome.attempts, outcome.usage))

        def work(content_hash: str, item: JudgeItem) -> Outcome:
            return call_judge(client, options.model, template.render(item.fields), options.task, policy, stop,
                              random.Random(), secrets, on_verdict=lambda o: save(content_hash, o),
                              params=params)

        pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="judge")
        futures: dict[Future, str] = {}
        try:
            futures = {pool.submit(work, h, group[0]): h for h, group in groups.items()}
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in finished:
                    outcome = future.result()
                    summary.n_calls += outcome.attempts
                    for name, count in (outcome.usage or {}).items():
                        summary.usage[name] = summary.usage.get(name, 0) + count
                    record(groups[futures[future]], outcome, cached=False)
        finally:
            stop.set()  # on an abort or Ctrl-C, workers stop before their next attempt
            pool.shutdown(wait=True, cancel_futures=True)


def _dry_run(summary: JudgeSummary, items: list[JudgeItem], template: PromptTemplate, cache_dir: Path, out: Path,
             identity: dict[str, str], options: JudgeOptions) -> JudgeSummary:
    """Count the calls a real run would make (after output and cache hits) and estimate tokens."""
    from artemis_cli.common.jsonio import iter_jsonl, load_json
    from artemis_cli.judge.cache import CACHE_FILE

    done: set[str] = set()
    run_file = out / "run.json"
    if not options.overwrite and run_file.exists() and load_json(run_file) == identity and (out / JUDGMENTS).exists():
        done = {str(r.get("id")) for _, r in iter_jsonl(out / JUDGMENTS, skip_bad=True)
                if isinstance(r, dict) and r.get("status") == "judged"}
    pending = [item for item in items if item.id not in done]
    hits: set[str] = set()
    if (cache_dir / CACHE_FILE).exists():
        with JudgeCache(cache_dir) as cache:
            hits = set(cache.get_many(options.model, identity["prompt_hash"], [i.content_hash for i in pending]))
    to_call: dict[str, JudgeItem] = {}
    for item in pending:
        if item.content_hash not in hits:
            to_call.setdefault(item.content_hash, item)
    summary.n_cached = len(items) - len(to_call)
    summary.calls_needed = len(to_call)
    summary.est_prompt_tokens = sum(_estimate_tokens(template.render(i.fields)) for i in to_call.values())
    summary.est_completion_tokens = len(to_call) * judge_task(options.task).completion_tokens
    return summary


def _estimate_tokens(messages: list[dict[str, str]]) -> int:
    """About 4 characters per token plus a few tokens of chat framing per message (an estimate)."""
    return sum(math.ceil(len(m["content"]) / 4) + 4 for m in messages) + 3


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        return None


def _progress(show: bool) -> Any:
    if not show:
        return _NoProgress()
    from artemis_cli.common.console import make_progress

    return make_progress()
