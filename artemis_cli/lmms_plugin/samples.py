"""Our lmms-eval tasks' documents and scores, from the same benchmark readers and scorers as the CLI.

A task's inputs are environment variables named after the benchmark's `artemis infer` inputs
(`input_variable`: ``ARTEMIS_LMMS_VIDEOREFER_Q_ANNOTATIONS``, ``..._VIDEOS``, ``..._FEATURES``...), validated
by `infer`'s own task models and read by `infer.runner.load_samples`; lmms-eval's ``--config`` file can set
them (its ``env:`` section). A document carries the sample's id and the text a generic model would see;
the Artemis model (`models.artemis`) answers the sample itself, through the RoI path. The judged tasks
(videorefer-d, plm-rcap) are judged when lmms-eval aggregates, by `judge.judge` with the model named in
``ARTEMIS_JUDGE_MODEL`` (and ``ARTEMIS_JUDGE_BASE_URL``), failures counted as in `artemis judge gpt`.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

TASKS = {"artemis_videorefbench": "videorefbench", "artemis_videorefer_d": "videorefer-d",
         "artemis_videorefer_q": "videorefer-q", "artemis_plm_rcap": "plm-rcap"}
METRICS = {"videorefbench": "coco", "videorefer-d": "judge", "videorefer-q": "accuracy", "plm-rcap": "judge"}
JUDGE_MODEL, JUDGE_BASE_URL, JUDGE_OUTPUT = "ARTEMIS_JUDGE_MODEL", "ARTEMIS_JUDGE_BASE_URL", "ARTEMIS_LMMS_JUDGE_OUTPUT"


def input_variable(benchmark: str, name: str) -> str:
    """``ARTEMIS_LMMS_<BENCHMARK>_<INPUT>``, e.g. ``ARTEMIS_LMMS_PLM_RCAP_METADATA``."""
    return f"ARTEMIS_LMMS_{benchmark.upper().replace('-', '_')}_{name.upper()}"


@lru_cache(maxsize=None)
def benchmark_samples(benchmark: str) -> dict[str, Any]:
    """The benchmark's samples by id, read once per process from the inputs its variables name."""
    from pydantic import TypeAdapter, ValidationError

    from artemis_cli.common.validation import validation_problems
    from artemis_cli.data.benchmarks import BENCHMARKS, SELECTOR_FIELDS
    from artemis_cli.infer.runner import Task, load_samples

    spec = BENCHMARKS[benchmark]
    task: dict[str, Any] = {"kind": spec.command}
    if spec.command in SELECTOR_FIELDS:
        task[SELECTOR_FIELDS[spec.command]] = benchmark
    for name in spec.inputs:
        value = os.environ.get(input_variable(benchmark, name))
        if value:
            task[name] = value
    try:
        parsed = TypeAdapter(Task).validate_python(task)
    except ValidationError as exc:
        names = ", ".join(input_variable(benchmark, name) for name in spec.inputs)
        raise RuntimeError(f"{spec.title}: its inputs are environment variables ({names}): "
                           + "; ".join(validation_problems(exc))) from None
    return {sample.id: sample for sample in load_samples(parsed)}


def documents(benchmark: str) -> list[dict[str, Any]]:
    """One lmms-eval document per sample: its benchmark, id, problem (a sample that cannot run), the text a
    generic model would be asked, and the prediction line's known fields (reference, options...)."""
    from artemis_cli.model.conversation import BENCH_QUESTION

    docs = []
    for sample in benchmark_samples(benchmark).values():
        record = sample.referring
        question = (record.question if record is not None and record.question else BENCH_QUESTION)
        fields = {key: value for key, value in sample.fields.items() if key != "pred"}
        docs.append({"artemis_benchmark": benchmark, "artemis_id": sample.id, "artemis_problem": sample.problem or "",
                     "prompt": question, **fields})
    return docs


def documents_dataset(benchmark: str):
    import datasets

    return datasets.Dataset.from_list(documents(benchmark))


def sample_of(doc: dict[str, Any]):
    """The `BenchmarkSample` behind one of our documents."""
    return benchmark_samples(doc["artemis_benchmark"])[doc["artemis_id"]]


def prediction_line(doc: dict[str, Any], pred: str) -> dict[str, Any]:
    """The line `artemis infer` would have written for this document."""
    from artemis_cli.data.benchmarks import BENCHMARKS

    fields = BENCHMARKS[doc["artemis_benchmark"]].prediction.fields
    values = {**doc, "id": doc["artemis_id"], "pred": pred}
    return {key: values.get(key) for key in fields} | {"benchmark": doc["artemis_benchmark"]}


def mcq_accuracy(lines: list[dict[str, Any]]) -> float:
    """VideoRefer-Bench-Q accuracy (`metrics.mcq`: the published letter regex, micro average)."""
    from artemis_cli.metrics.mcq import score_mcq

    report = score_mcq([(f"document {line['id']}", line) for line in lines])
    return report.accuracy


def caption_scores(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """VideoRefBench: pycocoevalcap under Artemis' protocol (`metrics.score`), SPICE left out (it needs CoreNLP)."""
    from artemis_cli.metrics.score import ScoreOptions, score

    report = score(lines, ScoreOptions(metrics=["bleu", "meteor", "rouge", "cider"]))
    return {"n_scored": report.n_scored, "n_dropped_length": report.n_dropped_length,
            **{name: value for name, value in report.metrics.items() if value is not None}}


def judged_scores(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The benchmark's judge over the predictions (`judge.judge`), with the model the user named."""
    from artemis_cli.data.benchmarks import BENCHMARKS
    from artemis_cli.judge import JudgeOptions, judge

    benchmark = lines[0]["benchmark"]
    task, = BENCHMARKS[benchmark].judge_tasks
    model = os.environ.get(JUDGE_MODEL)
    if not model:
        raise RuntimeError(f"{BENCHMARKS[benchmark].title} is judged by an LLM: name it in {JUDGE_MODEL} "
                           f"(and its OpenAI-compatible endpoint in {JUDGE_BASE_URL}); there is no default judge")
    folder = Path(os.environ.get(JUDGE_OUTPUT) or tempfile.mkdtemp(prefix="artemis-lmms-judge-")) / task
    summary = judge([{k: v for k, v in line.items() if k != "benchmark"} for line in lines],
                    JudgeOptions(task=task, model=model, base_url=os.environ.get(JUDGE_BASE_URL) or None,
                                 output_dir=folder, overwrite=True, show_progress=False))
    keys = ("mean_score", "mean_score_failures_as_zero", "n_judged", "n_failed", "model", "temperature")
    result = {key: value for key, value in summary.to_json().items() if key in keys}
    result.update(summary.dimension_scores or {})
    result["judgments"] = str(folder)
    return result
