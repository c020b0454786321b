"""The training datasets: checked records in, `ModelInputs` (or `BadSample`) out, reproducibly random.

Every random choice of a sample (image subset, question template, frame jitter, key frame, k-means
pick) comes from a `random.Random` seeded by (run seed, epoch, index), so a resumed run, a run
under DeepSpeed and a plain run draw the same samples. The sampler passes ``(index, epoch)``
keys; a plain integer index means epoch 0.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence, Union

import torch

from artemis_cli.errors import ArtemisError
from artemis_cli.train.records import ConversationItem, Item, ReferringItem
from artemis_cli.model.inputs import ModelInputs
from artemis_cli.train.samples import BadSample, conversation_sample

Key = Union[int, tuple[int, int]]


class TrainDataset(torch.utils.data.Dataset):
    """Items plus a build function ``(item, rng) -> ModelInputs``; failures become `BadSample`.

    Only expected failures are caught (an `ArtemisError` such as an unreadable feature or a
    tokenisation mismatch, an `OSError` from a corrupt image); anything else is a bug and raises."""

    def __init__(self, items: Sequence[Item], build: Callable[[Item, random.Random], ModelInputs], seed: int):
        self.items = list(items)
        self.build = build
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def rng(self, index: int, epoch: int) -> random.Random:
        return random.Random(f"{self.seed}:{epoch}:{index}")

    def __getitem__(self, key: Key) -> Union[ModelInputs, BadSample]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        item = self.items[index]
        try:
            return self.build(item, self.rng(index, epoch))
        except ArtemisError as exc:
            return BadSample(item.ref, exc.message)
        except OSError as exc:
            return BadSample(item.ref, f"{type(exc).__name__}: {exc}")

    @property
    def modality_lengths(self) -> list[int]:
        """Per item: a length proxy (words), negative for text-only records."""
        return [item.modality_length for item in self.items]


def make_dataset(items: Sequence[Item], *, tokenizer, image_processor, seed: int, template: str,
                 max_images: int = 16, pad_images: bool = True, feature_width=None, num_boxes: int = 4,
                 num_tracked: int = 8, frame_sampling: str = "average", crop_correct: bool = False,
                 exact_boxes: bool = False) -> TrainDataset:
    """The dataset of a stage: conversation records (stages 1-2) or referring records (stage 3)."""
    from artemis_cli.model.inputs import referring_inputs

    def build(item: Item, rng: random.Random) -> ModelInputs:
        if isinstance(item, ConversationItem):
            return conversation_sample(item, tokenizer=tokenizer, image_processor=image_processor, rng=rng,
                                       template=template, max_images=max_images, pad_images=pad_images,
                                       feature_width=feature_width)
        assert isinstance(item, ReferringItem)
        return referring_inputs(item.record, clip=item.clip, frame_dir=item.frame_dir, tokenizer=tokenizer,
                                image_processor=image_processor, rng=rng, train=True, num_boxes=num_boxes,
                                num_tracked=num_tracked, frame_sampling=frame_sampling, crop_correct=crop_correct,
                                template=template, feature_width=feature_width, ref=item.ref, exact_boxes=exact_boxes)

    return TrainDataset(items, build, seed)
