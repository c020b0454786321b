"""Batching samples of any mix (text-only, images, video, referring) for `ArtemisForCausalLM.forward`.

Text is right-padded (ids with the pad id, labels with -100, an attention mask from the real
lengths) and cut to `max_length` text tokens (the reference's `model_max_length`; the model cuts
again after splicing media). Media stay per-sample lists. RoI frames/boxes are stacked when every
sample has the same number of frames, else passed as per-sample lists (None for samples without).
Two extra keys go to the trainer, not the model: ``bad_records`` (samples that failed to load) and
``num_tokens`` (LLM tokens of the batch after splicing, for tokens/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch

from artemis_cli.model.config import IGNORE_INDEX
from artemis_cli.model.inputs import ModelInputs
from artemis_cli.train.samples import BadSample


@dataclass
class Collator:
    pad_token_id: int
    max_length: int
    image_tokens: int = 256  # LLM tokens per image: (image_size / patch_size) ** 2

    def __call__(self, samples: Sequence[Union[ModelInputs, BadSample]]) -> dict[str, Any]:
        good = [s for s in samples if isinstance(s, ModelInputs)]
        bad = [{"record": s.ref, "problem": s.problem} for s in samples if isinstance(s, BadSample)]
        batch: dict[str, Any] = {"bad_records": bad, "num_tokens": sum(s.num_tokens(self.image_tokens) for s in good)}
        if not good:
            return batch
        lengths = [min(len(s.input_ids), self.max_length) for s in good]
        width = max(lengths)
        input_ids = torch.full((len(good), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(good), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(good), width), dtype=torch.long)
        for row, (sample, length) in enumerate(zip(good, lengths)):
            input_ids[row, :length] = torch.tensor(sample.input_ids[:length])
            if sample.labels is not None:
                labels[row, :length] = torch.tensor(sample.labels[:length])
            attention_mask[row, :length] = 1
        batch.update(input_ids=input_ids, labels=labels, attention_mask=attention_mask,
                     media=[s.media for s in good])
        if any(s.roi_frames is not None for s in good):
            frames = [s.roi_frames for s in good]
            boxes = [s.roi_boxes for s in good]
            if all(f is not None for f in frames) and len({tuple(f.shape) for f in frames}) == 1:
                batch["roi_frames"] = torch.stack(frames)  # [B, F, 3, S, S]
                batch["roi_boxes"] = torch.stack(boxes)  # [B, F, 4]
            else:
                batch["roi_frames"], batch["roi_boxes"] = frames, boxes
            batch["roi_seeds"] = [s.roi_seed for s in good]
        return batch
