"""The run config of `artemis train stage1|stage2|stage3`: pydantic models, per-stage defaults, loading.

A YAML file is a serialised `TrainConfig`; keys it leaves out take the published recipe of its stage
(the published 8-GPU scripts, `STAGE_DEFAULTS`), then ``--set a.b=c`` overrides apply, then everything is validated
at once: unknown keys, wrong types and (with ``check_paths``) missing files are all reported in one
`ConfigError`. Relative paths are resolved against the current folder, so the resolved config that
is written into the run folder holds absolute paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from artemis_cli.common.config import load_config
from artemis_cli.common.devices import DeviceName

Stage = Literal[1, 2, 3]
Precision = Literal["fp32", "fp16", "bf16"]
DEEPSPEED_NAMES = ("zero2", "zero2_offload", "zero3", "zero3_offload")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

# The published scripts (scripts/pretrain.sh, finetune.sh, finetune_ref.sh), 8 GPUs. `constant` with
# a warmup ratio is the reference's choice: transformers' constant schedule has no warmup (quirk);
# `constant_with_warmup` is the corrected one.
STAGE_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"data": {"group_by": "none", "image_aspect_ratio": "square", "num_workers": 8},
        "train": {"epochs": 1, "batch_size": 32, "grad_accum": 1, "lr": 1e-3, "scheduler": "cosine",
                  "precision": "bf16", "deepspeed": "zero2", "save_steps": 0.1}},
    2: {"data": {"group_by": "modality", "image_aspect_ratio": "pad", "num_workers": 4},
        "train": {"epochs": 1, "batch_size": 16, "grad_accum": 1, "lr": 2e-5, "scheduler": "cosine",
                  "precision": "bf16", "deepspeed": "zero2_offload", "save_steps": 0.1}},
    3: {"data": {"group_by": "modality", "image_aspect_ratio": "pad", "num_workers": 4},
        "train": {"epochs": 3, "batch_size": 6, "grad_accum": 20, "lr": 4e-5, "scheduler": "constant",
                  "precision": "fp16", "deepspeed": "zero2_offload", "save_steps": 0.1}},
}


@dataclass(frozen=True)
class StageSpec:
    """One training stage of the published recipe: its defaults, its records, what it adds and trains,
    and what it writes. Stage-specific code (`model_setup`, `outputs`, the record reader) reads these
    fields instead of comparing stage numbers."""

    stage: int
    records: Literal["conversation", "referring"]  # the annotation record format it trains on
    trains: Literal["projector", "llm", "lora"]  # projector only; LLM + projector; LoRA + RoI module + projector
    output: Literal["projector", "full", "lora"]  # mm_projector.bin; a full model; adapter + non_lora_trainables.bin
    new_modules: tuple[str, ...] = ()  # state-dict prefixes it creates (missing from its start checkpoint)
    roi: bool = False  # adds the RoI module (and k-means over the tracked RoIs)
    projector_file: bool = False  # may start from a stage-1 mm_projector.bin (model.projector)

    @property
    def defaults(self) -> dict[str, Any]:
        return STAGE_DEFAULTS[self.stage]


STAGES: dict[int, StageSpec] = {
    1: StageSpec(1, "conversation", "projector", "projector", new_modules=("model.mm_projector.",)),
    2: StageSpec(2, "conversation", "llm", "full", projector_file=True),
    3: StageSpec(3, "referring", "lora", "lora", new_modules=("model.spi_model.",), roi=True),
}


def _check_paths(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("check_paths"))


def _local(value: Union[str, Path]) -> Path:
    return Path(value).expanduser().resolve()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoiSettings(_Section):
    """The RoI module created at the start of stage 3 (published: 4 levels, 5 fuse rounds, width 1024)."""

    num_levels: int = Field(4, ge=1, le=4)
    num_fuse: int = Field(5, ge=0)
    query_size: int = Field(1024, ge=1)
    output_size: int = Field(14, ge=1, description="RoIAlign output side (published 14: flatten_linear's fan-in is "
                             "channels x output_size^2)")


class ModelSection(_Section):
    path: str = Field(description="start checkpoint: Vicuna (stages 1-2), the stage-2 model (stage 3); folder or hub id")
    base: Optional[str] = Field(None, description="base model when `path` is a projector-only or LoRA folder")
    projector: Optional[Path] = Field(None, description="stage 2: the stage-1 mm_projector.bin (pretrain_mm_mlp_adapter)")
    image_tower: Optional[str] = Field(None, description="CLIP ViT-L/14 folder or hub id; default: the checkpoint's")
    template: Literal["vicuna_v1", "v1", "llava_v1"] = "vicuna_v1"
    max_length: int = Field(2048, ge=16, description="text tokens kept per sample (model_max_length)")
    tokenizer_model_max_length: int = Field(3072, ge=16, description="sequence cut after media are spliced in")
    k_means: bool = True
    kmeans_n_clusters: int = Field(4, ge=1)
    roi: RoiSettings = Field(default_factory=RoiSettings)

    @field_validator("path", "base", "image_tower")
    @classmethod
    def _checkpoint(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is None or not _check_paths(info):
            return value
        local = _local(value)
        if local.exists():
            if not local.is_dir():
                raise ValueError(f"{value}: expected a checkpoint folder, got a file")
            return str(local)
        if info.field_name == "image_tower":
            from artemis_cli.model.config import canonical_tower_name

            if canonical_tower_name(value):
                return value
        if _HUB_ID.match(value) and not value.startswith(("/", ".", "~")):
            return value
        raise ValueError(f"{value}: no such folder (and not a hub id like org/name)")

    @field_validator("projector")
    @classmethod
    def _projector(cls, value: Optional[Path], info: ValidationInfo) -> Optional[Path]:
        if value is None or not _check_paths(info):
            return value
        if not _local(value).is_file():
            raise ValueError(f"{value}: file not found")
        return _local(value)


class DataSection(_Section):
    root: Path = Field(description="DATA_ROOT")
    annotations: list[Path] = Field(min_length=1, description="JSON files, or folders of JSON files")
    image_folders: Optional[list[Path]] = Field(None, description="where `image` paths resolve; default per stage")
    video_folders: Optional[list[Path]] = Field(None, description="where `video_clip` paths resolve; default per stage")
    max_images: int = Field(16, ge=1)
    image_aspect_ratio: Literal["square", "pad"] = "pad"
    num_tracked: int = Field(8, ge=1, description="stage 3: tracked frames per sample (plus the key frame)")
    frame_sampling: Literal["average", "random"] = "average"
    crop_correct_boxes: bool = Field(False, description="map boxes into CLIP's centre crop (the reference did not: quirk)")
    exact_boxes: bool = Field(False, description="divide pixel boxes exactly (the published code divides integer "
                                                 "boxes in fp16: quirk)")
    group_by: Literal["none", "length", "modality"] = "modality"
    num_workers: int = Field(4, ge=0)
    check_files: bool = Field(True, description="check every referenced file exists before training")

    @field_validator("root")
    @classmethod
    def _root(cls, value: Path, info: ValidationInfo) -> Path:
        if not _check_paths(info):
            return value
        if not _local(value).is_dir():
            raise ValueError(f"{value}: DATA_ROOT folder not found")
        return _local(value)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        if not _check_paths(info):
            return value
        missing = [str(p) for p in value if not _local(p).exists()]
        if missing:
            raise ValueError(f"not found: {', '.join(missing)}")
        return [_local(p) for p in value]

    @field_validator("image_folders", "video_folders")
    @classmethod
    def _folders(cls, value: Optional[list[Path]], info: ValidationInfo) -> Optional[list[Path]]:
        if value is None or not _check_paths(info):
            return value
        missing = [str(p) for p in value if not _local(p).is_dir()]
        if missing:
            raise ValueError(f"folder(s) not found: {', '.join(missing)}")
        return [_local(p) for p in value]


class TrainSection(_Section):
    output_dir: Path
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="> 0: stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(1, ge=1, description="per device")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-5, gt=0)
    scheduler: Literal["cosine", "constant", "constant_with_warmup", "linear"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    precision: Precision = "bf16"
    gradient_checkpointing: bool = True
    compile_roi: bool = Field(False, description="stage 3: torch.compile the RoI module (fused GroupNorm/ReLU/"
                                                 "resizes around the convolutions; compiles at the first step)")
    tf32: bool = True
    deepspeed: Optional[str] = Field(None, description=f"{', '.join(DEEPSPEED_NAMES)}, a JSON file, or null")
    save_steps: float = Field(0.1, gt=0, description=">= 1: every N steps; < 1: a fraction of the run")
    save_total_limit: Optional[int] = Field(2, ge=1)
    logging_steps: int = Field(1, ge=1)
    seed: int = 42
    device: DeviceName = "auto"
    report_to: list[Literal["tensorboard"]] = Field(default_factory=lambda: ["tensorboard"])

    @field_validator("output_dir")
    @classmethod
    def _output(cls, value: Path, info: ValidationInfo) -> Path:
        return _local(value) if _check_paths(info) else value

    @field_validator("save_steps")
    @classmethod
    def _save_steps(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError("a step count (>= 1) must be a whole number; a fraction of the run is < 1")
        return value

    @field_validator("deepspeed")
    @classmethod
    def _deepspeed(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is None or value in DEEPSPEED_NAMES:
            return value
        if value.lower() in ("none", "off", "null", ""):
            return None
        if not value.endswith(".json"):
            raise ValueError(f"{value!r}: expected one of {', '.join(DEEPSPEED_NAMES)} or a .json file")
        if _check_paths(info):
            if not _local(value).is_file():
                raise ValueError(f"{value}: DeepSpeed config file not found")
            return str(_local(value))
        return value


class LoraSection(_Section):
    """Stage 3 LoRA on the LLM's q/k/v/o/gate/up/down projections (published: r 16, alpha 16, dropout 0.05)."""

    r: int = Field(16, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    bias: Literal["none"] = "none"


class TrainConfig(_Section):
    """One training run. Stage defaults fill what the YAML leaves out (see `STAGE_DEFAULTS`)."""

    stage: Stage
    model: ModelSection
    data: DataSection
    train: TrainSection
    lora: Optional[LoraSection] = Field(None, description="stage 3 only (default: the published settings)")

    @model_validator(mode="before")
    @classmethod
    def _stage_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("stage") not in STAGE_DEFAULTS:
            return data
        merged = dict(data)
        for section, values in STAGES[data["stage"]].defaults.items():
            if isinstance(merged.get(section), dict):
                merged[section] = {**values, **merged[section]}
        if STAGES[data["stage"]].trains == "lora" and merged.get("lora") is None:
            merged["lora"] = {}
        return merged

    @model_validator(mode="after")
    def _cross_checks(self) -> "TrainConfig":
        problems = []
        spec = self.spec
        if spec.trains != "lora" and self.lora is not None:
            problems.append("lora: only stage 3 trains LoRA adapters; remove the section")
        if spec.projector_file and self.model.projector is not None and self.model.base is not None:
            problems.append("model.projector and model.base: give the stage-1 projector one way, not both")
        if not spec.projector_file and self.model.projector is not None:
            problems.append("model.projector: only stage 2 starts from a stage-1 projector file")
        if not spec.roi and self.train.compile_roi:
            problems.append("train.compile_roi: only stage 3 has an RoI module")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def spec(self) -> StageSpec:
        return STAGES[self.stage]

    def image_folders(self) -> list[Path]:
        if self.data.image_folders is not None:
            return list(self.data.image_folders)
        from artemis_cli.data.layout import reference_folders

        return reference_folders(self.data.root, self.stage)[0]

    def video_folders(self) -> list[Path]:
        if self.data.video_folders is not None:
            return list(self.data.video_folders)
        from artemis_cli.data.layout import reference_folders

        return reference_folders(self.data.root, self.stage)[1]


def load_train_config(stage: int, path: Optional[Path] = None, overrides: Optional[list[str]] = None, *,
                      check_paths: bool = True) -> TrainConfig:
    """The run config of `stage` from a YAML file (optional) and ``--set`` overrides.

    A file written for another stage is a usage error; with `check_paths` every referenced file
    and folder must exist (reported together with all other problems)."""
    from artemis_cli.common.config import read_yaml
    from artemis_cli.errors import ConfigError

    if path is not None:
        declared = read_yaml(path).get("stage")
        if declared is not None and declared != stage:
            raise ConfigError(str(path), [f"stage: the file is for stage {declared!r} but the command is stage{stage}"],
                              hint=f"run `artemis train stage{declared}` or fix the file's `stage:`")
    config = load_config(TrainConfig, path, overrides, base={"stage": stage, "model": {}, "data": {}, "train": {}},
                         context={"check_paths": check_paths})
    if config.stage != stage:
        raise ConfigError("config", [f"stage: {config.stage} does not match the command stage{stage}"])
    return config
