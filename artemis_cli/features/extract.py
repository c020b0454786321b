"""`extract_features`: one `.pkl` per video with the published CLIP recipe, resumable and sharded."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from artemis_cli.common.devices import DeviceName
from artemis_cli.common.atomic import atomic_write_text
from artemis_cli.errors import InputError, UsageError
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


def resolve_shard(num_shards: int | None, shard_index: int | None, env: dict[str, str] | None = None) -> tuple[int, int]:
    """(index, count): the flags when given, else torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    env = os.environ if env is None else env
    count = num_shards if num_shards is not None else int(env.get("WORLD_SIZE", "1"))
    index = shard_index if shard_index is not None else int(env.get("RANK", "0"))
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"shard {index} of {count}: the index must be in 0..{count - 1}")
    return index, count


def select_shard(sources: list[VideoSource], index: int, count: int) -> list[VideoSource]:
    """Every `count`-th video of the sorted list, starting at `index`: each video in one shard."""
    return sources[index::count]


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


def resolve_dtype(dtype: str, device) -> "Any":
    import torch

    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


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


def _shard_file(stem: str, suffix: str, index: int, count: int) -> str:
    return f"{stem}{suffix}" if count == 1 else f"{stem}.shard-{index:03d}-of-{count:03d}{suffix}"


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
    index, count = resolve_shard(config.num_shards, config.shard_index)
    shard = select_shard(sources, index, count)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # one GPU per torchrun rank; pinned memory follows it
    batch_size = config.batch_size or (256 if device.type == "cuda" else 32)
    workers = config.workers if config.workers is not None else default_workers(device)

    backend = load_backend(config.backend, config.model, device, dtype, config.resize)
    shape = (config.num_frames + backend.patches, backend.width)
    config.output.mkdir(parents=True, exist_ok=True)
    failures_path = config.output / _shard_file("failures", ".jsonl", index, count)
    manifest_path = config.output / _shard_file("manifest", ".json", index, count)
    # Temp files a killed run left for this shard's outputs (never another shard's).
    remove_stray_temps(config.output, {f"{s.name}.{config.format}" for s in shard} | {failures_path.name,
                                                                                       manifest_path.name})
    recipe = {"num_frames": config.num_frames, "frame_sampling": "rounded segment midpoints over total-1",
              "output_shape": list(shape), "output_dtype": "float16", "format": config.format,
              "pooling": "temporal mean over patches (zero-padded) + spatial mean over frames"}
    run_info = dict(model=backend.describe(), recipe=recipe, input=str(config.input), frames=config.frames,
                    shard={"index": index, "count": count}, device=str(device), dtype=str(dtype).replace("torch.", ""),
                    batch_size=batch_size, workers=workers, config=config.model_dump(mode="json"))
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
