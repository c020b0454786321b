"""`artemis demo`: every step of the pipeline on the sample data with tiny random models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from artemis_cli.cli.options import Device, JsonFlag


def demo_cmd(
    out: Annotated[Optional[Path], typer.Option("--output", "-o", file_okay=False, metavar="DIR", help="Folder for the demo's data, models, "
                                                "predictions and report.md (kept). Default: a temporary folder, "
                                                "removed at the end unless --keep. Rerunning into the same folder "
                                                "reuses the steps that finished.")] = None,
    out_alias: Annotated[Optional[Path], typer.Option("--out", file_okay=False, hidden=True, help="Old spelling of --output.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary folder (and its report.md).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Redo every step, even those an earlier run into --output finished.")] = False,
    judge_base_url: Annotated[Optional[str], typer.Option("--judge-base-url", help="OpenAI-compatible server for the "
                                                          "judge step (without it the step needs OPENAI_API_KEY, "
                                                          "else it is skipped).")] = None,
    judge_model: Annotated[Optional[str], typer.Option("--judge-model", envvar="ARTEMIS_JUDGE_MODEL",
                                                       help="Judge model of the judge step (no default: hosted "
                                                       "judges retire; without one the step is skipped).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, max=1024, help="Tokens generated per answer.")] = 32,
    device: Device = "auto",
    json_out: JsonFlag = False,
) -> None:
    """Run the pipeline end to end on the sample data with tiny random models: make-sample, verify-layout,
    features extract (videos and frame folders), train stage1-3, merge-lora, infer videorefbench/qa/vcgbench,
    score, and judge (with --judge-model and OPENAI_API_KEY or --judge-base-url). Writes report.md; exit 1 if a step fails.

    Example: artemis demo --output demo-run"""
    from pydantic import ValidationError

    from artemis_cli.cli.train import stdout_to_stderr
    from artemis_cli.common.config import format_validation_error
    from artemis_cli.common.console import print_json, stderr, stdout
    from artemis_cli.demo import DemoOptions, run_demo
    from artemis_cli.cli.demo_report import print_summary
    from artemis_cli.errors import ConfigError

    from artemis_cli.errors import UsageError

    if out is not None and out_alias is not None and out != out_alias:
        raise UsageError("--output and --out (its old spelling) name different folders")
    out = out or out_alias
    try:
        options = DemoOptions(out=out, keep=keep, fresh=fresh, judge_base_url=judge_base_url, judge_model=judge_model,
                              max_new_tokens=max_new_tokens, device=device, show_progress=True)  # on stderr, --json or not
    except ValidationError as exc:
        raise ConfigError("demo options", format_validation_error(exc)) from None
    with stdout_to_stderr(json_out):  # DeepSpeed and the Java tools print on stdout
        result = run_demo(options)
    if json_out:
        print_json(result.to_json())
    print_summary(result, stderr if json_out else stdout)
    if not result.ok:
        raise result.error()
