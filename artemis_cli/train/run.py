"""`train`: one stage of the Artemis recipe, end to end, on the HF Trainer.

The run folder (``train.output_dir``) gets the resolved config (`train_config.yaml`), a manifest
(versions, git SHA, seed, data counts), ``checkpoint-N`` folders every ``save_steps``, TensorBoard
logs (`tensorboard/`), the stage's published output files, `loss.png`, and with ``skip_bad`` the
list of skipped records (`skipped_records.jsonl`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from artemis_cli.errors import InputError, UsageError
from artemis_cli.train.config import TrainConfig
from artemis_cli.train.launch import (compute_dtype, deepspeed_config_path, is_main_process, launch_environment,
                                      resolve_device, world_size)
from artemis_cli.train.checkpoints import (CHECKPOINT_PREFIX, COMPLETE_MARKER, checkpoints,  # noqa: F401
                                           newest_complete, remove_checkpoint)
from artemis_cli.train.records import BadRecord, bad_records_error, read_records
from artemis_cli.train.trainer import SKIPPED_FILE

CONFIG_FILE = "train_config.yaml"
MANIFEST_FILE = "manifest.json"
LOSS_PLOT = "loss.png"


@dataclass
class TrainResult:
    stage: int
    output_dir: Path
    global_step: int
    train_loss: Optional[float]
    last_loss: Optional[float]
    runtime_s: float
    tokens_per_s: Optional[float]
    samples: int
    skipped: int
    trainable_parameters: int
    total_parameters: int
    outputs: list[str] = field(default_factory=list)
    resumed_from: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output_dir"] = str(self.output_dir)
        return data


def prepare_output_dir(out: Path, *, resume: bool, overwrite: bool, stage: int = 3) -> Optional[Path]:
    """Check the run folder against --resume/--overwrite; return the checkpoint to resume from.

    `--resume` takes the newest complete, readable checkpoint (`train.checkpoints`); newer ones a
    killed run left incomplete are named with the reason and removed. Either way the stray temp
    files of an earlier, killed run in the folder and its checkpoints are removed."""
    from artemis_cli.common.console import stderr

    if resume:
        if overwrite:
            raise UsageError("--resume and --overwrite exclude each other")
        complete, skipped = newest_complete(out, stage)
        if complete is None:
            why = "".join(f"\n  skipped {s}" for s in skipped)
            raise UsageError(f"{out}: no complete checkpoint-N folder to resume from{why}",
                             hint="start the run without --resume (save_steps sets how often checkpoints are kept)")
        if is_main_process():
            for s in skipped:
                stderr.print(f"--resume: skipping {s}; removed", soft_wrap=True)
                remove_checkpoint(s.checkpoint)
            _remove_stray_temps(out)
        return complete
    if out.exists() and any(out.iterdir()) and is_main_process():
        if not overwrite:
            raise UsageError(f"{out} already exists and is not empty",
                             hint="pass --resume to continue its last checkpoint, or --overwrite to start over")
        if not (out / CONFIG_FILE).is_file():
            raise UsageError(f"{out} is not an artemis run folder (no {CONFIG_FILE}); refusing to delete it")
        shutil.rmtree(out)
    return None


def _remove_stray_temps(out: Path) -> None:
    from artemis_cli.common.temps import remove_stray_temps
    from artemis_cli.train.outputs import STAGE_FILES

    names = {CONFIG_FILE, MANIFEST_FILE, LOSS_PLOT, SKIPPED_FILE, COMPLETE_MARKER,
             *(name for files in STAGE_FILES.values() for name in files)}
    for folder in (out, *checkpoints(out)):
        remove_stray_temps(folder, names)


def training_arguments(config: TrainConfig, out: Path, device: str, deepspeed: Optional[Path]):
    """`TrainingArguments` from the run config (names that differ across transformers 5.x handled)."""
    import dataclasses as dc

    from transformers import TrainingArguments

    t = config.train
    names = {f.name for f in dc.fields(TrainingArguments)}
    report_to = [r for r in t.report_to if r != "tensorboard" or importlib.util.find_spec("tensorboard")]
    kwargs: dict[str, Any] = dict(
        output_dir=str(out), per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs, max_steps=t.max_steps, learning_rate=t.lr, weight_decay=t.weight_decay,
        lr_scheduler_type=t.scheduler, max_grad_norm=t.max_grad_norm, logging_steps=t.logging_steps,
        save_strategy="steps", save_steps=t.save_steps if t.save_steps < 1 else int(t.save_steps),
        save_total_limit=t.save_total_limit, seed=t.seed, data_seed=t.seed, bf16=t.precision == "bf16",
        fp16=t.precision == "fp16", dataloader_num_workers=config.data.num_workers, remove_unused_columns=False,
        report_to=report_to or "none", disable_tqdm=True, use_cpu=device == "cpu", label_names=["labels"],
        deepspeed=str(deepspeed) if deepspeed else None, ddp_find_unused_parameters=False, optim="adamw_torch",
    )
    if t.tf32 and device.startswith("cuda"):
        kwargs["tf32"] = True
    kwargs["warmup_ratio" if "warmup_ratio" in names else "warmup_steps"] = t.warmup_ratio
    if "logging_dir" in names:
        kwargs["logging_dir"] = str(out / "tensorboard")
    return TrainingArguments(**{k: v for k, v in kwargs.items() if k in names})


def _train_compiled(trainer, checkpoint: Optional[Path], compile_roi: bool):
    """`trainer.train()`; a failed `torch.compile` of the RoI module becomes one clear error."""
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        return trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except BackendCompilerFailed as exc:
        if not compile_roi:
            raise
        cause = getattr(exc, "inner_exception", None) or exc  # the compiler's own error, not the wrapper's
        first = next((line for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        raise UsageError(f"train.compile_roi: torch.compile of the RoI module failed: {first[:300]}",
                         hint="run without it: --set train.compile_roi=false") from None


def _write_skipped(out: Path, bad: list[BadRecord]) -> None:
    """The check-phase list of skipped records; load-phase entries of an earlier (resumed) run are kept."""
    from artemis_cli.common.atomic import atomic_write_text

    path = out / SKIPPED_FILE
    kept = []
    if path.is_file():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("phase") == "load"]
    lines = [json.dumps(b.to_json()) for b in bad] + kept
    if lines:
        atomic_write_text(path, "\n".join(lines) + "\n")


def reset_process_state(created_group: bool) -> None:
    """Leave the process as we found it (library callers and tests run several trainings)."""
    import torch.distributed as dist
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    if created_group and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False, skip_bad: bool = False,
          show_progress: bool = True, config_source: Optional[str] = None) -> TrainResult:
    """Run one stage as `config` says; return a summary. Writes the run folder (module docstring).

    `resume` continues from the last complete checkpoint (optimizer, scheduler, RNG and trained
    weights, LoRA included); `overwrite` deletes an earlier run in the folder first; `skip_bad`
    leaves bad records out (listed) instead of stopping at the first."""
    out = Path(config.train.output_dir).resolve()
    device = resolve_device(config)
    if device.startswith("cuda"):
        import torch

        torch.backends.cudnn.benchmark = True  # the RoI convolutions have fixed shapes: autotune them once
    ds_path = deepspeed_config_path(config.train.deepspeed)
    checkpoint = prepare_output_dir(out, resume=resume, overwrite=overwrite, stage=config.stage)
    with launch_environment(device, ds_path is not None) as env:
        try:
            return _run(config, out, device, ds_path, checkpoint, skip_bad, show_progress, config_source)
        finally:
            reset_process_state(created_group="RANK" in env)


def _run(config: TrainConfig, out: Path, device: str, ds_path: Optional[Path], checkpoint: Optional[Path],
         skip_bad: bool, show_progress: bool, config_source: Optional[str]) -> TrainResult:
    import os

    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from artemis_cli.common.config import dump_config
    from artemis_cli.common.manifest import write_manifest
    from artemis_cli.model.config import MMSettings
    from artemis_cli.train.collator import Collator
    from artemis_cli.train.datasets import make_dataset
    from artemis_cli.train.model_setup import inner_model, build_stage_model
    from artemis_cli.train.progress import RichProgress, plot_losses
    from artemis_cli.train.trainer import ArtemisTrainer

    started = time.perf_counter()
    set_seed(config.train.seed)
    records = read_records(config.data.annotations, config.spec.records,
                           image_folders=config.image_folders(), video_folders=config.video_folders(),
                           check_files=config.data.check_files)
    if records.bad and not skip_bad:
        raise bad_records_error(records.bad)
    if not records.items:
        raise InputError(f"no usable records in {', '.join(map(str, config.data.annotations))}")

    stage_model = build_stage_model(config, device=device, dtype=compute_dtype(config.train.precision),
                                    upcast_trainable=ds_path is None and config.train.precision != "fp32")
    inner = inner_model(stage_model.model)
    mm = MMSettings.of(inner.config)
    dataset = make_dataset(records.items, tokenizer=stage_model.tokenizer, image_processor=stage_model.image_processor,
                           seed=config.train.seed, template=config.model.template, max_images=config.data.max_images,
                           pad_images=config.data.image_aspect_ratio == "pad", feature_width=mm.mm_hidden_size,
                           num_boxes=mm.tracked_roi_tokens(config.data.num_tracked), num_tracked=config.data.num_tracked,
                           frame_sampling=config.data.frame_sampling, crop_correct=config.data.crop_correct_boxes,
                           exact_boxes=config.data.exact_boxes)
    collator = Collator(stage_model.tokenizer.pad_token_id, config.model.max_length, stage_model.image_tokens)
    args = training_arguments(config, out, device, ds_path)
    previous_tb = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")  # transformers 5.x reads it here
    try:
        trainer = ArtemisTrainer(model=stage_model.model, args=args, train_dataset=dataset, data_collator=collator,
                                 processing_class=stage_model.tokenizer, stage=config.stage,
                                 trainable=stage_model.trainable, lengths=dataset.modality_lengths,
                                 group_by=config.data.group_by, skip_bad=skip_bad, run_dir=out)
    finally:
        if previous_tb is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = previous_tb
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(RichProgress(f"stage {config.stage}", enabled=show_progress))

    total = sum(p.numel() for p in stage_model.model.parameters())
    trainable = sum(p.numel() for p in stage_model.model.parameters() if p.requires_grad)
    manifest = dict(stage=config.stage, config_file=config_source, output_dir=str(out), device=device,
                    world_size=world_size(), precision=config.train.precision,
                    deepspeed={"name": config.train.deepspeed, "path": str(ds_path) if ds_path else None},
                    start_checkpoint=config.model.path, resumed_from=str(checkpoint) if checkpoint else None,
                    parameters={"total": total, "trainable": trainable},
                    data={"files": records.files, "samples": len(records.items), "skipped_at_check": len(records.bad)})
    main = is_main_process()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(config, out / CONFIG_FILE)
        _write_skipped(out, records.bad)
        write_manifest(out / MANIFEST_FILE, f"artemis train stage{config.stage}", seed=config.train.seed,
                       status="running", **manifest)

    output = _train_compiled(trainer, checkpoint, config.train.compile_roi)
    if main:
        _remove_stray_temps(out)  # a rerun after a kill between writing and renaming a final file
    trainer.save_model(str(out))
    trainer.save_state()
    from artemis_cli.train.outputs import STAGE_FILES

    outputs = [name for name in STAGE_FILES[config.stage] if (out / name).exists()]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e and "step" in e]
    runtime = time.perf_counter() - started
    if main:
        try:
            if plot_losses(trainer.state.log_history, out / LOSS_PLOT, f"Artemis stage {config.stage}"):
                outputs.append(LOSS_PLOT)
        except ImportError:  # matplotlib is in the `train` extra
            pass
        write_manifest(out / MANIFEST_FILE, f"artemis train stage{config.stage}", seed=config.train.seed,
                       status="finished", global_step=trainer.state.global_step, train_loss=output.training_loss,
                       runtime_s=round(runtime, 2), outputs=outputs, skipped_at_load=len(trainer.skipped), **manifest)
    return TrainResult(stage=config.stage, output_dir=out, global_step=trainer.state.global_step,
                       train_loss=output.training_loss, last_loss=losses[-1] if losses else None, runtime_s=runtime,
                       tokens_per_s=trainer.last_tokens_per_s, samples=len(records.items),
                       skipped=len(records.bad) + len(trainer.skipped), trainable_parameters=trainable,
                       total_parameters=total, outputs=outputs, resumed_from=str(checkpoint) if checkpoint else None)
