"""`extract_features`: one `.pkl` per video with the published CLIP recipe, resumable and sharded."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from artemis_cli.common.atomic import atomic_write_text
from artemis_cli.common.devices import DeviceName
from artemis_cli.common.dtypes import resolve_dtype
from artemis_cli.common.sharding import Shard, resolve_shard
from artemis_cli.errors import InputError
from artemis_cli.features.decoding import VideoSource, list_sources

FORMATS = ("pkl", "npy", "safetensors")


class ExtractConfig(BaseModel):
    """Everything `extract_features` needs; the CLI builds one from its flags."""

    model_config = ConfigDict(extra="forbid")

    input: Path
    output: Path
    frames: bool = False
    model: Optional[str] = None  # default: openai/clip-vit-large-patch14 (hf), ViT-L-14-quickgelu:openai (open_clip)
    backend: Literal["hf", "open_clip"] = "hf"
    num_frames: int = Field(100, ge=1)
    resize: Literal["nearest", "center-crop"] = "nearest"
    batch_size: Optional[int] = Field(None, ge=1)  # default 256 on CUDA, 32 on CPU
    workers: Optional[int] = Field(None, ge=0)  # default: see `default_workers`
    device: DeviceName = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    format: Literal["pkl", "npy", "safetensors"] = "pkl"
    num_shards: Optional[int] = Field(None, ge=1)
    shard_index: Optional[int] = Field(None, ge=0)
    list_file: Optional[Path] = None
    overwrite: bool = False



@dataclass
class ExtractSummary:
    """What a run did; `failures` lists ``{name, path, reason}``."""

    output: str
    shard_index: int
    num_shards: int
    total: int
    written: int
    skipped: int
    failed: int
    frames: int
    seconds: float
    device: str
    dtype: str
    model: dict[str, Any]
    readers: dict[str, int] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok,
                "videos_per_s": self.written / self.seconds if self.seconds else None,
                "frames_per_s": self.frames / self.seconds if self.seconds else None}


def resolve_device(device: str, env: dict[str, str] | None = None):
    """The `torch.device` to extract on (see `artemis_cli.common.devices.resolve_device`)."""
    import torch

    from artemis_cli.common.devices import resolve_device as resolve_name

    return torch.device(resolve_name(device, env=env))


def default_workers(device) -> int:
    """Decode workers: CUDA wants the CPUs decoding; a CPU tower needs the same cores itself.

    Measured on 2 cores: one worker plus a one-thread tower ran 1.5x slower than decoding in the
    main process between batches with a two-thread tower.
    """
    from artemis_cli.features.pipeline import available_cpus

    cpus = available_cpus()
    return min(12, max(1, cpus - 1)) if device.type == "cuda" else cpus // 4


def _read_list(path: Path, sources: list[VideoSource]) -> list[VideoSource]:
    by_name = {}
    for source in sources:
        by_name[source.path.name] = source
        by_name[source.name] = source
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the video list ({exc})") from None
    wanted = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise InputError(f"{path}: {len(missing)} listed video(s) not in the input folder: {', '.join(missing[:5])}")
    chosen = {by_name[name].name: by_name[name] for name in wanted}
    return sorted(chosen.values(), key=lambda s: s.name)


def _check_earlier_run(config: ExtractConfig, shard: Shard, run_info: dict[str, Any]) -> None:
    """Refuse to add to features an earlier run of this shard made with another model or recipe (its
    manifest under today's name or the zero-padded one earlier versions wrote), unless `overwrite`."""
    from artemis_cli.common.jsonio import load_json
    from artemis_cli.common.manifest import refuse_other_settings

    if config.overwrite:
        return
    for name in dict.fromkeys((shard.file_name("manifest", ".json"), shard.legacy_file_name("manifest", ".json"))):
        path = config.output / name
        if path.is_file():
            earlier = load_json(path)
            if isinstance(earlier, dict) and "recipe" in earlier:
                refuse_other_settings(config.output, {k: earlier.get(k) for k in ("model", "recipe")},
                                      {k: run_info[k] for k in ("model", "recipe")},
                                      hint="pass --overwrite to redo every video, or choose another OUTPUT")
            return


def _write_failures(path: Path, failures: list[dict]) -> None:
    import json

    atomic_write_text(path, "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures))


def extract_features(config: ExtractConfig, show_progress: bool = True) -> ExtractSummary:
    """Write ``OUTPUT/<name>.<format>`` for every video of this shard, plus failures.jsonl and manifest.json.

    Existing valid outputs are skipped (unless `overwrite`), broken ones redone. A video that cannot
    be decoded is listed in the failures file and the rest continue. Returns counts and timings.
    """
    import torch

    from artemis_cli.common.manifest import write_manifest
    from artemis_cli.common.temps import remove_stray_temps
    from artemis_cli.features.backends import load_backend
    from artemis_cli.features.pipeline import Job, run_loop
    from artemis_cli.features.progress import ExtractProgress

    sources = list_sources(config.input, frames=config.frames)
    if config.list_file is not None:
        sources = _read_list(config.list_file, sources)
    if not sources:
        kind = "frame folders" if config.frames else "videos (.mp4 .mkv .webm .avi .mov)"
        raise InputError(f"{config.input}: no {kind} found",
                         hint="pass --frames for a folder of frame folders" if not config.frames else None)
    if config.output.exists() and not config.output.is_dir():
        raise InputError(f"{config.output}: OUTPUT exists and is not a folder")
    shard_of = resolve_shard(config.num_shards, config.shard_index)
    index, count = shard_of.index, shard_of.count
    shard = shard_of.slice(sources)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # one GPU per torchrun rank; pinned memory follows it
    batch_size = config.batch_size or (256 if device.type == "cuda" else 32)
    workers = config.workers if config.workers is not None else default_workers(device)

    backend = load_backend(config.backend, config.model, device, dtype, config.resize)
    shape = (config.num_frames + backend.patches, backend.width)
    config.output.mkdir(parents=True, exist_ok=True)
    failures_path = config.output / shard_of.file_name("failures", ".jsonl")
    manifest_path = config.output / shard_of.file_name("manifest", ".json")
    # Temp files a killed run left for this shard's outputs (never another shard's).
    remove_stray_temps(config.output, {f"{s.name}.{config.format}" for s in shard} | {failures_path.name,
                                                                                       manifest_path.name})
    recipe = {"num_frames": config.num_frames, "frame_sampling": "rounded segment midpoints over total-1",
              "output_shape": list(shape), "output_dtype": "float16", "format": config.format,
              "pooling": "temporal mean over patches (zero-padded) + spatial mean over frames"}
    run_info = dict(model=backend.describe(), recipe=recipe, input=str(config.input), frames=config.frames,
                    shard={"index": index, "count": count}, device=str(device), dtype=str(dtype).replace("torch.", ""),
                    batch_size=batch_size, workers=workers, config=config.model_dump(mode="json"))
    _check_earlier_run(config, shard_of, run_info)
    write_manifest(manifest_path, "artemis features extract", status="running", **run_info)

    failures: list[dict] = []

    def on_failure(failure: dict) -> None:
        failures.append(failure)
        _write_failures(failures_path, failures)

    job = Job(tuple(shard), config.output, config.format, config.num_frames, shape, backend.preprocess.size,
              shrink_in_worker=config.resize == "nearest", overwrite=config.overwrite)
    started = time.perf_counter()
    with ExtractProgress(len(shard), enabled=show_progress) as progress:
        stats = run_loop(job, backend, device, dtype, batch_size, workers, progress.advance, on_failure)
    _write_failures(failures_path, failures)
    summary = ExtractSummary(
        output=str(config.output), shard_index=index, num_shards=count, total=len(shard), written=stats.written,
        skipped=stats.skipped, failed=len(failures), frames=stats.frames, seconds=stats.seconds,
        device=str(device), dtype=run_info["dtype"], model=backend.describe(), readers=stats.readers,
        failures=failures)
    counts = {k: getattr(summary, k) for k in ("total", "written", "skipped", "failed", "frames")}
    write_manifest(manifest_path, "artemis features extract", status="complete", counts=counts,
                   seconds=round(time.perf_counter() - started, 3), **run_info)
    return summary
