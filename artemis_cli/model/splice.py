"""Token splicing: put media features at -200 and RoI tokens at -500, mask their labels, pad, truncate.

Pure tensor code shared by training (`forward`, right padding) and generation (left padding). The
placeholders are replaced by the features of the same sample in order; a count that does not match
is an error naming the sample, not a silent misalignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from artemis_cli.errors import InputError
from artemis_cli.model.config import BOX_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX


@dataclass
class SplicedInputs:
    """What the LLM consumes: `inputs_embeds` [B, L', H], `attention_mask` [B, L'] (long),
    `position_ids` [B, L'] (0 on padding), `labels` [B, L'] or None (-100 on media, boxes, padding)."""

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: Optional[torch.Tensor]

    @property
    def lengths(self) -> list[int]:
        return self.attention_mask.sum(1).tolist()


def _sample_segments(ids: torch.Tensor, text_embeds: torch.Tensor, labels: torch.Tensor,
                     media: Sequence[torch.Tensor], rois: Optional[torch.Tensor], sample: int):
    """One unpadded sample -> (embeds [n', H], labels [n']), placeholders replaced in order."""
    special = torch.nonzero(ids < 0).flatten().tolist()
    kinds = ids[special].tolist() if special else []
    num_media = kinds.count(IMAGE_TOKEN_INDEX)
    num_boxes = kinds.count(BOX_TOKEN_INDEX)
    unknown = sorted(set(kinds) - {IMAGE_TOKEN_INDEX, BOX_TOKEN_INDEX})
    if unknown:
        raise InputError(f"sample {sample}: unknown negative token ids {unknown} (only -200 and -500 are placeholders)")
    if num_media != len(media):
        raise InputError(f"sample {sample}: {num_media} <image>/<video> placeholder(s) but {len(media)} media input(s)")
    have_boxes = 0 if rois is None else rois.shape[0]
    if num_boxes != have_boxes:
        # The published splice silently used the first RoI tokens here; a mismatch is an error instead.
        raise InputError(f"sample {sample}: {num_boxes} <bbox> placeholder(s) but {have_boxes} RoI token(s)",
                         hint=f"the prompt needs one <bbox> for the key frame plus one per tracked RoI kept: with "
                              f"k-means off every tracked frame is kept, so pass --num-tracked {max(num_boxes - 1, 1)} "
                              f"(train: data.num_tracked) or turn k-means on (config k_means: true, K = "
                              f"{max(num_boxes - 1, 1)})")
    embeds, targets = [], []
    start, media_index, box_index = 0, 0, 0
    for position, kind in zip(special, kinds):
        embeds.append(text_embeds[start:position])
        targets.append(labels[start:position])
        if kind == IMAGE_TOKEN_INDEX:
            feature = media[media_index]
            media_index += 1
        else:
            feature = rois[box_index:box_index + 1]
            box_index += 1
        embeds.append(feature.to(text_embeds.dtype))
        targets.append(torch.full((feature.shape[0],), IGNORE_INDEX, dtype=labels.dtype, device=labels.device))
        start = position + 1
    embeds.append(text_embeds[start:])
    targets.append(labels[start:])
    return torch.cat(embeds), torch.cat(targets)


def splice(input_ids: torch.Tensor, text_embeds: torch.Tensor, attention_mask: Optional[torch.Tensor],
           labels: Optional[torch.Tensor], media: Sequence[Sequence[torch.Tensor]],
           rois: Sequence[Optional[torch.Tensor]], *, padding_side: str = "right",
           max_length: Optional[int] = None) -> SplicedInputs:
    """Build `SplicedInputs` from padded ids [B, L] and their token embeddings [B, L, H].

    `media[b]` holds sample b's projected features ([T, H] each, one per -200, in order);
    `rois[b]` its RoI tokens [R, H] (one per -500) or None. Padding (attention_mask 0) is dropped
    first, so either padding side works on the way in; `padding_side` is the way out. Each
    sequence is cut to `max_length` after splicing (the reference's `tokenizer_model_max_length`).
    """
    batch = input_ids.shape[0]
    if len(media) != batch or len(rois) != batch:
        raise InputError(f"batch of {batch} but {len(media)} media lists and {len(rois)} RoI entries")
    keep = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
    if labels is None:
        sample_labels = torch.full_like(input_ids, IGNORE_INDEX)
    else:
        sample_labels = labels
    sequences, targets = [], []
    for b in range(batch):
        mask = keep[b]
        embeds, target = _sample_segments(input_ids[b][mask], text_embeds[b][mask], sample_labels[b][mask],
                                          media[b], rois[b], b)
        if max_length is not None:
            embeds, target = embeds[:max_length], target[:max_length]
        sequences.append(embeds)
        targets.append(target)
    return pad_sequences(sequences, targets if labels is not None else None, padding_side=padding_side)


def pad_sequences(sequences: Sequence[torch.Tensor], targets: Optional[Sequence[torch.Tensor]], *,
                  padding_side: str = "right") -> SplicedInputs:
    """Stack [n_b, H] sequences into [B, L, H] with zeros, mask, positions and -100 labels on padding."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    batch, width = len(sequences), max(seq.shape[0] for seq in sequences)
    first = sequences[0]
    embeds = first.new_zeros(batch, width, first.shape[-1])
    mask = torch.zeros(batch, width, dtype=torch.long, device=first.device)
    positions = torch.zeros(batch, width, dtype=torch.long, device=first.device)
    padded_labels = None
    if targets is not None:
        padded_labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long, device=first.device)
    for b, seq in enumerate(sequences):
        n = seq.shape[0]
        span = slice(width - n, width) if padding_side == "left" else slice(0, n)
        embeds[b, span] = seq
        mask[b, span] = 1
        positions[b, span] = torch.arange(n, device=first.device)
        if padded_labels is not None:
            padded_labels[b, span] = targets[b]
    return SplicedInputs(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, labels=padded_labels)
