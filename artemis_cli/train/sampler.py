"""Training order: random, length-grouped or modality-grouped (the published stage 2-3 runs).

`GroupedSampler` yields ``(index, epoch)`` keys (see `datasets`), one permutation per epoch from
(seed, epoch), so a resumed run sees the same order. With grouping, the data are cut into
"megabatches" of ``world_size * batch_size`` items, each sorted by length (longest first) so one
device batch holds similar lengths; ``modality`` grouping also keeps multimodal and text-only
records (negative lengths) in separate megabatches, with one mixed megabatch of leftovers.
"""

from __future__ import annotations

from typing import Iterator, Literal, Sequence

import torch

GroupBy = Literal["none", "length", "modality"]


def _megabatches(indices: list[int], lengths: Sequence[int], size: int) -> list[list[int]]:
    """Consecutive chunks of `size`, each sorted by |length|, longest first."""
    chunks = [indices[i:i + size] for i in range(0, len(indices), size)]
    return [sorted(chunk, key=lambda i: abs(lengths[i]), reverse=True) for chunk in chunks]


def grouped_order(lengths: Sequence[int], megabatch: int, group_by: GroupBy, generator: torch.Generator) -> list[int]:
    """One epoch's order of `range(len(lengths))` under the grouping rule."""
    count = len(lengths)
    if group_by == "none" or count == 0:
        return torch.randperm(count, generator=generator).tolist()
    if group_by == "length" or all(l >= 0 for l in lengths) or all(l < 0 for l in lengths):
        order = torch.randperm(count, generator=generator).tolist()
        batches = _megabatches(order, lengths, megabatch)
    else:
        multimodal = [i for i in range(count) if lengths[i] >= 0]
        text = [i for i in range(count) if lengths[i] < 0]
        mm_order = [multimodal[i] for i in torch.randperm(len(multimodal), generator=generator).tolist()]
        text_order = [text[i] for i in torch.randperm(len(text), generator=generator).tolist()]
        mm_batches = _megabatches(mm_order, lengths, megabatch)
        text_batches = _megabatches(text_order, lengths, megabatch)
        leftovers = []
        if mm_batches and len(mm_batches[-1]) < megabatch:
            leftovers += mm_batches.pop()
        if text_batches and len(text_batches[-1]) < megabatch:
            leftovers += text_batches.pop()
        full = mm_batches + text_batches
        full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        batches = full + ([sorted(leftovers, key=lambda i: abs(lengths[i]), reverse=True)] if leftovers else [])
    return [index for batch in batches for index in batch]


class GroupedSampler(torch.utils.data.Sampler):
    """Yields ``(index, epoch)``; `set_epoch` (called by the Trainer) picks the permutation."""

    def __init__(self, lengths: Sequence[int], batch_size: int, world_size: int = 1, group_by: GroupBy = "none",
                 seed: int = 0):
        self.lengths = list(lengths)
        self.megabatch = batch_size * max(1, world_size)
        self.group_by = group_by
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        for index in grouped_order(self.lengths, self.megabatch, self.group_by, generator):
            yield index, self.epoch
