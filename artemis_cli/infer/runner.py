"""`infer`: run a benchmark over a model, batched, resumable, sharded, with failures set aside.

The output is appended one line per finished sample and flushed (`ResumableJsonl`): a rerun skips
the ids already there, repairs a torn last line, and retries earlier failures. A manifest beside
the output records the settings (decoding, seed, prompt options, inputs) and the ordered input ids;
a rerun with other settings refuses to resume into the same file. Samples that cannot run (bad
record, missing feature or frame) go to ``<output>.errors.jsonl`` with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from artemis_cli.common.devices import DeviceName, resolve_device
from artemis_cli.errors import InputError, UsageError
from artemis_cli.model.generation import DecodingSettings
from artemis_cli.model.quantize import Quantize
from artemis_cli.infer.shards import OutputPaths, Shard, output_paths, read_manifest, resolve_shard
from artemis_cli.data.benchmarks import BenchmarkSample, BenchmarkSpec, spec_of
from artemis_cli.infer.tasks import PromptOptions

_STRICT = ConfigDict(extra="forbid")


def _registered(command: str):
    """A field validator: the value must name a registered benchmark of `artemis infer <command>`."""

    def check(value: str) -> str:
        from artemis_cli.data.benchmarks import names

        if value not in names(command):
            raise ValueError(f"{value!r}: expected one of {', '.join(names(command))}")
        return value

    return check


class VideoRefBenchTask(BaseModel):
    model_config = _STRICT
    kind: Literal["videorefbench"] = "videorefbench"
    annotations: Path
    data_root: Path

    @property
    def benchmark(self) -> str:
        return "videorefbench"


class QATask(BaseModel):
    model_config = _STRICT
    kind: Literal["qa"] = "qa"
    dataset: Annotated[str, AfterValidator(_registered("qa"))]
    questions: Path
    answers: Path
    features: Path

    @property
    def benchmark(self) -> str:
        return self.dataset


class VCGTask(BaseModel):
    model_config = _STRICT
    kind: Literal["vcgbench"] = "vcgbench"
    set: Annotated[str, AfterValidator(_registered("vcgbench"))]
    annotations: Path
    features: Path

    @property
    def benchmark(self) -> str:
        return self.set


def _region_names() -> tuple[str, ...]:
    from artemis_cli.data.benchmarks import BENCHMARKS

    return tuple(name for name, spec in BENCHMARKS.items() if spec.command == name and "videos" in spec.inputs)


class RegionTask(BaseModel):
    """A peer benchmark answered through the RoI path (`data.benchmarks.region_benchmark`): its records,
    their videos and the videos' clip features; `metadata` for PLM-VideoBench RCap. Each check names
    its field, so the CLI reports the option."""

    model_config = _STRICT
    kind: Literal[_region_names()]
    annotations: Path
    videos: Path
    features: Path
    metadata: Optional[Path] = Field(None, validate_default=True)
    frame_mode: Literal["multi", "single"] = Field("multi", validate_default=True)
    tracker: Optional[Literal["csrt", "kcf"]] = Field(None, validate_default=True)
    question: Optional[str] = Field(None, validate_default=True)
    answer_by: Literal["generate", "loglikelihood"] = Field("generate", validate_default=True)

    @property
    def benchmark(self) -> str:
        return self.kind

    @field_validator("metadata", "frame_mode", "tracker", "question", "answer_by")
    @classmethod
    def _fits_the_benchmark(cls, value: Any, info: ValidationInfo) -> Any:
        from artemis_cli.common.media import BBOX_TOKEN
        from artemis_cli.data.benchmarks import spec_of

        kind = info.data.get("kind")
        if kind is None:
            return value
        name, inputs = info.field_name, spec_of(kind).inputs
        if name == "metadata" and "metadata" in inputs and value is None:
            raise ValueError(f"{kind} needs its metadata file (the per-frame boxes)")
        if name not in inputs and value not in (None, "multi", "generate"):
            raise ValueError(f"{kind} takes no {name.replace('_', ' ')}")
        if name == "tracker" and value is not None and info.data.get("frame_mode") != "single":
            raise ValueError("only single-frame mode tracks (multi-frame mode has every mask's box)")
        if name == "question" and value is not None and value.count(BBOX_TOKEN) != 1:
            raise ValueError(f"must contain exactly one {BBOX_TOKEN} (the target), found {value.count(BBOX_TOKEN)}")
        return value


Task = Annotated[Union[VideoRefBenchTask, QATask, VCGTask, RegionTask], Field(discriminator="kind")]


class InferConfig(BaseModel):
    """Everything `infer` needs; `batch_size` None = as large as fits; shards None = torchrun env or 1."""

    model_config = _STRICT

    task: Task
    model: str
    model_base: Optional[str] = None
    image_tower: Optional[str] = None
    output: Path
    decoding: DecodingSettings = DecodingSettings()
    batch_size: Optional[int] = Field(None, ge=1)
    template: str = "llava_v1"
    num_tracked: int = Field(8, ge=1)
    crop_correct: bool = False
    exact_boxes: bool = False
    num_shards: Optional[int] = Field(None, ge=1)
    shard_index: Optional[int] = Field(None, ge=0)
    device: DeviceName = "auto"
    dtype: str = "auto"
    quantize: Quantize = "none"
    overwrite: bool = False
    show_progress: bool = True


@dataclass
class InferSummary:
    """What a run did. `total` counts this shard's samples; `skipped` were already in the output."""

    paths: OutputPaths
    shard: Shard
    requested_output: Optional[Path] = None  # --output (the merge target of a sharded run)
    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    batch_size: int = 0
    seconds: float = 0.0
    decoding: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def samples_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.paths.output), "errors": str(self.paths.errors),
                "manifest": str(self.paths.manifest), "shard": {"count": self.shard.count, "index": self.shard.index},
                "total": self.total, "skipped": self.skipped, "done": self.done, "failed": self.failed,
                "batch_size": self.batch_size, "seconds": round(self.seconds, 3),
                "samples_per_s": round(self.samples_per_s, 4), "decoding": self.decoding,
                "repaired_torn_line": self.repaired, "failures": self.failures}


def load_samples(task: Task) -> list[BenchmarkSample]:
    """All input samples of a task, in input order (ids unique), read by its benchmark's spec."""
    spec = benchmark_spec(task)
    inputs = {name: getattr(task, name) for name in spec.inputs}
    if "data_root" in inputs and not task.data_root.is_dir():
        raise InputError(f"{task.data_root}: data root is not a folder")
    if "features" in inputs and not task.features.is_dir():
        raise InputError(f"{task.features}: features folder not found")
    if "videos" in inputs and not task.videos.is_dir():
        raise InputError(f"{task.videos}: videos folder not found")
    return spec.read(benchmark=spec, **inputs)


def benchmark_spec(task: Task) -> BenchmarkSpec:
    return spec_of(task.benchmark, task.kind)


def _settings(config: InferConfig, decoding: DecodingSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, sources): what decides the answers (shards must agree on it) and where the model and
    inputs were read from (a resume must agree on both; shards on other machines may differ)."""
    task = config.task.model_dump()
    settings = {"task": {k: v for k, v in task.items() if not isinstance(v, Path)}, "decoding": decoding.record(),
                "template": config.template, "num_tracked": config.num_tracked, "crop_correct": config.crop_correct}
    if config.exact_boxes:  # other boxes, other answers (absent = the published fp16 rounding)
        settings["exact_boxes"] = True
    if config.quantize != "none":  # quantised answers differ: a resume must not mix them (absent = none)
        settings["quantize"] = config.quantize
    sources = {k: str(v.resolve()) for k, v in task.items() if isinstance(v, Path)}
    sources.update(model=config.model, model_base=config.model_base, image_tower=config.image_tower)
    return settings, sources


def _open_manifest(paths: OutputPaths, config: InferConfig, settings: dict, sources: dict, input_ids: list[str],
                   shard: Shard) -> dict:
    """The manifest to resume under (checked against this run), or a new one; written before any output."""
    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.common.manifest import build_manifest, refuse_other_settings

    if paths.manifest.is_file():
        manifest = read_manifest(paths.manifest)
        also = ["input ids"] if manifest["input_ids"] != input_ids else []
        if manifest.get("shard") != shard.to_json():
            also.append("shard")
        refuse_other_settings(paths.output, {**manifest["settings"], **manifest.get("sources", {})},
                              {**settings, **sources}, also=also,
                              hint="pass --overwrite to start again, or choose another --output")
    elif paths.output.is_file() and paths.output.stat().st_size > 0:
        raise UsageError(f"{paths.output} exists without its manifest ({paths.manifest.name}): cannot tell how it "
                         "was made", hint="pass --overwrite to replace it, or choose another --output")
    else:
        manifest = build_manifest(f"infer {config.task.kind}", seed=config.decoding.seed, settings=settings,
                                  sources=sources, input_ids=input_ids,
                                  shard={"count": shard.count, "index": shard.index}, runs=[])
    atomic_write_json(paths.manifest, manifest)
    return manifest


def infer(config: InferConfig, *, loaded=None) -> InferSummary:
    """Run `config.task` over the model and write/resume the output; return the summary.

    `loaded` (a `LoadedModel`) skips loading `config.model` (tests, benchmarks)."""
    import torch

    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.common.jsonl_writer import ResumableJsonl
    from artemis_cli.common.temps import remove_stray_temps
    from artemis_cli.infer.batching import BatchRunner, ErrorLog

    samples = load_samples(config.task)
    shard = resolve_shard(config.num_shards, config.shard_index)
    paths = output_paths(config.output, shard)
    if config.overwrite:
        for path in (paths.output, paths.errors, paths.manifest):
            path.unlink(missing_ok=True)
    elif paths.manifest.is_file():
        read_manifest(paths.manifest)  # a broken manifest is reported before the model loads
    remove_stray_temps(paths.output.parent, {paths.output.name, paths.errors.name, paths.manifest.name})
    mine = shard.slice(samples)
    if loaded is None:
        from artemis_cli.model.loading import load_model

        loaded = load_model(config.model, config.model_base, device=resolve_device(config.device), dtype=config.dtype,
                            image_tower=config.image_tower, quantize=config.quantize)
    spec = benchmark_spec(config.task)
    if spec.needs_roi and (loaded.model.get_roi_module() is None or loaded.image_processor is None):
        raise UsageError(f"{config.model}: the model has no RoI module / image tower (mm_spi_model is false), "
                         f"so it cannot answer {spec.title}", hint="use a stage-3 Artemis checkpoint")
    decoding = config.decoding.resolved(loaded.model.generation_config)
    settings, sources = _settings(config, decoding)
    manifest = _open_manifest(paths, config, settings, sources, [s.id for s in samples], shard)
    summary = InferSummary(paths=paths, shard=shard, requested_output=config.output, total=len(mine),
                           decoding=decoding.record())
    prompt = PromptOptions(template=config.template, num_tracked=config.num_tracked, crop_correct=config.crop_correct,
                           exact_boxes=config.exact_boxes)
    torch.manual_seed(decoding.seed)
    paths.errors.unlink(missing_ok=True)  # earlier failures are retried below
    with ResumableJsonl(paths.output) as out, ErrorLog(paths.errors) as errors:
        summary.repaired = out.repaired
        todo = out.pending(mine, key=lambda s: s.id)
        summary.skipped = len(mine) - len(todo)
        runner = BatchRunner(loaded, decoding, prompt, out, errors, summary)
        for sample in todo:
            if sample.problem:
                runner.fail(sample, sample.problem, "record")
        runnable = [s for s in todo if not s.problem]
        summary.batch_size = config.batch_size or runner.auto_batch_size(runnable)
        run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": str(loaded.model.device),
               "dtype": str(loaded.model.dtype).replace("torch.", ""), "batch_size": summary.batch_size}
        start = time.perf_counter()
        runner.run(runnable, summary.batch_size, show_progress=config.show_progress, label=spec.label)
        summary.seconds = time.perf_counter() - start
    run.update(batch_size=summary.batch_size, done=summary.done, failed=summary.failed, skipped=summary.skipped, seconds=round(summary.seconds, 3))
    manifest["runs"].append(run)
    atomic_write_json(paths.manifest, manifest)
    return summary

