"""`artemis judge ...`: GPT-assisted evaluation of predictions (video QA, Video-ChatGPT dimensions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from artemis_cli.cli.options import JsonFlag, Overwrite
from artemis_cli.judge.tasks import JUDGE_TASKS, placeholder_help

app = typer.Typer(help="LLM-judged evaluation (any OpenAI-compatible model you name): video QA, the five "
                       "Video-ChatGPT dimensions, VideoRefer-Bench-D and PLM-VideoBench RCap; compare two judges.",
                  no_args_is_help=True)

_TASK_HELP = "; ".join(f"{name}: {task.about}" for name, task in JUDGE_TASKS.items()) + "."
_PROMPT_HELP = ("Replace the prompt: a .yaml/.json file with 'system' and 'user' texts, or any other text file "
                "used as the user message. Placeholders: " + placeholder_help() + ". Other braces are kept, so "
                "the published prompt text works unchanged. See `artemis judge show-prompt`.")


@app.command("gpt")
def gpt_cmd(
    predictions: Annotated[Path, typer.Argument(metavar="PREDICTIONS", exists=True, dir_okay=False, readable=True,
                                                help="Predictions (.jsonl or .json list). QA: id, question, answer, "
                                                     "pred; Video-ChatGPT: video_name, Q, A, pred (consistency: "
                                                     "Q1, Q2, A, pred1, pred2); videorefer-d / plm-rcap: id, "
                                                     "caption, pred.")],
    task: Annotated[str, typer.Option("--task", help=_TASK_HELP)],
    model: Annotated[Optional[str], typer.Option("--model", envvar="ARTEMIS_JUDGE_MODEL", show_envvar=True,
                                                 help="Judge model (required: there is no default, since hosted "
                                                      "judges retire; the paper's gpt-3.5-turbo left the API on "
                                                      "2026-10-23). A dated snapshot, or an open-weight model "
                                                      "behind --base-url. Recorded in every output.")] = None,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible endpoint (Azure, vLLM, "
                                                    "llama.cpp, Ollama, a local server). Key: OPENAI_API_KEY "
                                                    "(a local server needs none).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight at once.")] = 8,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, max=100,
                                              help="Calls per item at most (API faults and unusable replies "
                                                   "alike); then the item is failed.")] = 6,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds per request.")] = 60.0,
    retry_base_delay: Annotated[float, typer.Option("--retry-base-delay", min=0.0,
                                                    help="First backoff in seconds; doubles per failure, "
                                                         "jittered; Retry-After is honoured.")] = 1.0,
    retry_max_delay: Annotated[float, typer.Option("--retry-max-delay", min=0.0,
                                                   help="Longest wait between attempts (caps Retry-After too).")] = 60.0,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help="Sampling temperature (default: "
                                                         "the task's protocol: 0.7 for videorefer-d, 0 for plm-rcap, "
                                                         "the server's for the others, as published). Recorded.")
                           ] = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", metavar="DIR", help="Cache folder (default "
                                                  "$ARTEMIS_CACHE/judge or ~/.cache/artemis/judge).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="DIR", help="Output folder (default: "
                                                   "beside PREDICTIONS, <stem>.judge-<task>-<model>).")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option("--prompt-file", help=_PROMPT_HELP)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the calls needed (after cache hits) "
                                                             "and estimate tokens; needs no key.")] = False,
    overwrite: Overwrite = False,
    json_out: JsonFlag = False,
) -> None:
    """Judge predictions with an OpenAI-compatible chat model; cached, resumable. Exit 1 when any item failed.

    Example: artemis judge gpt preds/msvd.jsonl --task qa --model gpt-4.1-2025-04-14 --dry-run"""
    from artemis_cli.cli.judge_report import print_dry_run, print_summary
    from artemis_cli.common.console import print_json, stderr
    from artemis_cli.errors import UsageError
    from artemis_cli.judge import JudgeOptions, judge, pin_warning
    from artemis_cli.common.paths import check_output
    from artemis_cli.judge.cache import default_cache_dir
    from artemis_cli.judge.models import CHOOSE_HINT
    from artemis_cli.judge.tasks import check_task

    check_output(cache if cache is not None else default_cache_dir(), kind="dir", option="--cache",
                 inputs={"PREDICTIONS": predictions})
    if output is not None:
        check_output(output, kind="dir", option="--output", inputs={"PREDICTIONS": predictions, "--cache": cache,
                                                                   "--prompt-file": prompt_file})
    if not model:
        raise UsageError("no judge model: pass --model (there is no default; hosted judges retire)", hint=CHOOSE_HINT)
    options = JudgeOptions(
        task=check_task(task), model=model, base_url=base_url, concurrency=concurrency, max_attempts=max_attempts,
        timeout=timeout, retry_base_delay=retry_base_delay, retry_max_delay=retry_max_delay,
        temperature=temperature, cache_dir=cache, output_dir=output, prompt_file=prompt_file, dry_run=dry_run,
        overwrite=overwrite, show_progress=not json_out,
    )
    warning = pin_warning(model)
    if warning:
        stderr.print(f"warning: {warning}", soft_wrap=True)
    summary = judge(predictions, options)
    if dry_run:
        if json_out:
            print_json(summary.dry_run_json())
        else:
            print_dry_run(summary)
        return
    if json_out:
        print_json(summary.to_json())
    else:
        print_summary(summary)
    raise typer.Exit(0 if summary.ok else 1)


@app.command("show-prompt")
def show_prompt_cmd(
    task: Annotated[str, typer.Option("--task", help=_TASK_HELP)],
    prompt_file: Annotated[Optional[Path], typer.Option("--prompt-file", help="Check and show this file instead.")] = None,
) -> None:
    """Print a task's prompt as a YAML --prompt-file (edit it and pass it back with --prompt-file).

    Example: artemis judge show-prompt --task qa > qa_prompt.yaml"""
    import sys

    from artemis_cli.judge.prompts import template_as_yaml
    from artemis_cli.judge.tasks import load_template

    sys.stdout.write(template_as_yaml(load_template(task, prompt_file)))


@app.command("compare")
def compare_cmd(
    first: Annotated[Path, typer.Argument(metavar="A", exists=True, file_okay=False,
                                          help="Output folder of one judge (`artemis judge gpt -o A ...`).")],
    second: Annotated[Path, typer.Argument(metavar="B", exists=True, file_okay=False,
                                           help="Output folder of another judge on the same predictions and task.")],
    json_out: JsonFlag = False,
) -> None:
    """How much swapping judge A for judge B moves the numbers: score correlation (Pearson, Spearman), mean
    shift, exact agreement and Cohen's kappa; yes/no agreement and kappa for qa; per dimension for
    videorefer-d. Reads both folders' verdicts; calls nothing.

    Example: artemis judge compare preds/msvd.judge-qa-gpt-4o-2024-11-20 preds/msvd.judge-qa-llama3.3-70b"""
    from artemis_cli.cli.judge_report import print_comparison
    from artemis_cli.common.console import print_json
    from artemis_cli.judge.compare import compare_judges

    report = compare_judges(first, second)
    if json_out:
        print_json(report.to_json())
    print_comparison(report, to_stderr=json_out)
