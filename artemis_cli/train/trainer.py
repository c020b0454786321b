"""`ArtemisTrainer`: the HF `Trainer` with the few hooks the stages need (no hand-written loop).

- `_get_train_sampler`: the (modality-)grouped sampler with per-epoch keys;
- `compute_loss`: takes the collator's ``bad_records`` (stop, or log them with ``skip_bad``) and
  ``num_tokens`` (for tokens/s) out of the batch before the model sees it;
- `_save` / `_load_from_checkpoint`: checkpoints hold the stage's published files, and resuming
  reads them back (LoRA, RoI module and projector included, which a plain peft save would drop);
- `log`: adds ``tokens_per_s`` (all processes) to each logged step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from transformers import Trainer

from artemis_cli.errors import InputError
from artemis_cli.train.outputs import load_stage_state, save_stage_output
from artemis_cli.train.sampler import GroupedSampler

SKIPPED_FILE = "skipped_records.jsonl"


class ArtemisTrainer(Trainer):
    def __init__(self, *args, stage: int, trainable: Sequence[str], lengths: Sequence[int], group_by: str,
                 skip_bad: bool, run_dir: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage = stage
        self.trainable = list(trainable)
        self.lengths = list(lengths)
        self.group_by = group_by
        self.skip_bad = skip_bad
        self.run_dir = Path(run_dir)
        self.skipped: dict[str, str] = {}
        self.tokens_since_log = 0
        self.tokens_total = 0
        self.last_log_time: Optional[float] = None
        self.last_tokens_per_s: Optional[float] = None

    # ---- data ----------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        return GroupedSampler(self.lengths, self.args.per_device_train_batch_size, self.args.world_size,
                              self.group_by, self.args.seed)

    def _note_bad(self, bad: list[dict]) -> None:
        if not bad:
            return
        if not self.skip_bad:
            lines = "\n  ".join(f"{b['record']}: {b['problem']}" for b in bad)
            raise InputError(f"{len(bad)} record(s) failed to load\n  {lines}",
                             hint="fix the records, or pass --skip-bad to skip them (listed in the run folder)")
        fresh = [b for b in bad if b["record"] not in self.skipped]
        if not fresh:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / SKIPPED_FILE, "a", encoding="utf-8") as handle:
            for b in fresh:
                self.skipped[b["record"]] = b["problem"]
                handle.write(json.dumps({"record": b["record"], "phase": "load", "problem": b["problem"],
                                         "step": self.state.global_step}) + "\n")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._note_bad(inputs.pop("bad_records", []))
        tokens = int(inputs.pop("num_tokens", 0))
        self.tokens_since_log += tokens
        self.tokens_total += tokens
        if self.last_log_time is None:
            self.last_log_time = time.perf_counter()
        if "input_ids" not in inputs:  # every sample of this batch was skipped: a zero step
            params = [p for p in model.parameters() if p.requires_grad]
            loss = sum((p.flatten()[:1] * 0.0).sum() for p in params)
            return (loss, None) if return_outputs else loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    # ---- logging -------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        if "loss" in logs and self.last_log_time is not None:
            now = time.perf_counter()
            tokens = torch.tensor(float(self.tokens_since_log), device=self.args.device)
            if self.args.world_size > 1:
                tokens = self.accelerator.reduce(tokens, reduction="sum")
            self.last_tokens_per_s = tokens.item() / max(now - self.last_log_time, 1e-9)
            logs["tokens_per_s"] = round(self.last_tokens_per_s, 1)
            self.tokens_since_log = 0
            self.last_log_time = now
        super().log(logs, start_time)

    # ---- checkpoints ---------------------------------------------------------------------------
    def _save(self, output_dir: Optional[str] = None, state_dict: Optional[dict] = None) -> None:
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        if not self.args.should_save:
            return
        save_stage_output(self.model, self.stage, output_dir, tokenizer=self.processing_class, state_dict=state_dict,
                          trainable=self.trainable)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """The Trainer's checkpoint, then the completion marker, then our rotation (`train.checkpoints`):
        the Trainer's own rotation sorts by mtime and counts half-deleted folders."""
        from artemis_cli.train.checkpoints import CHECKPOINT_PREFIX, mark_complete, rotate

        limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        run_dir = Path(self._get_output_dir(trial=trial))
        folder = run_dir / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
        if self.args.world_size > 1:
            self.accelerator.wait_for_everyone()  # every rank's optimizer shard is on disk
        if self.args.should_save:
            mark_complete(folder, self.state.global_step)
            rotate(run_dir, limit, folder, self.stage)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        load_stage_state(model if model is not None else self.model, self.stage, Path(resume_from_checkpoint),
                         self.trainable)
