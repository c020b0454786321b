"""One training sample from one stage 1-2 record: token ids, labels and media tensors.

A record can be text-only, image(s) (at most `max_images`, a random subset in order, as the
reference's `order_pick_k`), a video feature, or both. Media tensors follow the order of their
``<video>``/``<image>`` tokens in the prompt, one per -200 placeholder. A tokenisation mismatch or
a media count that does not fit the prompt is an `InputError` naming the record, never a silently
zeroed sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from artemis_cli.errors import InputError
from artemis_cli.model.config import IMAGE_TOKEN_INDEX
from artemis_cli.model.inputs import ModelInputs, load_video_feature
from artemis_cli.train.records import MEDIA_TOKEN, ConversationItem


@dataclass(frozen=True)
class BadSample:
    """A record that failed to load while training (file unreadable, mismatch...)."""

    ref: str
    problem: str


def expand_to_square(image, background: tuple[int, int, int]):
    """Pad a PIL image to a square with `background`, centred (the reference's ``image_aspect_ratio pad``)."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def load_images(paths: Sequence[Path], image_processor, *, pad: bool) -> torch.Tensor:
    """Open images and run the CLIP processor: [N, 3, S, S]; ``pad`` squares them first."""
    from PIL import Image

    background = tuple(int(x * 255) for x in image_processor.image_mean)
    images = []
    for path in paths:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        images.append(expand_to_square(image, background) if pad else image)
    return image_processor(images, return_tensors="pt")["pixel_values"]


def pick_images(images: Sequence[Path], limit: int, rng: random.Random) -> tuple[list[Path], list[int]]:
    """At most `limit` images, a random subset kept in order; also the kept positions."""
    if len(images) <= limit:
        return list(images), list(range(len(images)))
    keep = sorted(rng.sample(range(len(images)), limit))
    return [images[i] for i in keep], keep


def _drop_image_tokens(text: str, keep: set[int], counter: list[int]) -> str:
    def replace(match) -> str:
        if match.group(0) != "<image>":
            return match.group(0)
        index = counter[0]
        counter[0] += 1
        return match.group(0) if index in keep else ""

    return MEDIA_TOKEN.sub(replace, text)


def conversation_sample(item: ConversationItem, *, tokenizer, image_processor, rng: random.Random,
                        template: str = "vicuna_v1", max_images: int = 16, pad_images: bool = True,
                        feature_width: Optional[int] = None) -> ModelInputs:
    """Token ids, labels and media of a stage 1-2 record (see the module docstring)."""
    from artemis_cli.model.conversation import tokenize_conversation

    images, kept = pick_images(item.images, max_images, rng)
    turns = [{"from": speaker, "value": text} for speaker, text in item.turns]
    if len(kept) != len(item.images):  # drop the <image> tokens of the images left out
        counter, keep = [0], set(kept)
        turns = [{"from": t["from"], "value": _drop_image_tokens(t["value"], keep, counter) if t["from"] == "human"
                  else t["value"]} for t in turns]
    order = MEDIA_TOKEN.findall(" ".join(t["value"] for t in turns if t["from"] == "human"))
    tokenized = tokenize_conversation(turns, tokenizer, template=template)
    if tokenized.mismatch:
        raise InputError(f"{item.ref}: tokenization mismatch (the answer spans do not cover the prompt); "
                         "the reference trained on nothing for such a sample")
    placeholders = tokenized.input_ids.count(IMAGE_TOKEN_INDEX)
    if placeholders != len(order):
        raise InputError(f"{item.ref}: {len(order)} <image>/<video> token(s) but {placeholders} placeholder(s) "
                         "after tokenisation (a media token inside an answer?)")
    pixels = load_images(images, image_processor, pad=pad_images) if images else None
    video = load_video_feature(item.video, feature_width) if item.video is not None else None
    media, next_image = [], 0
    for token in order:
        if token == "<video>":
            media.append(video)
        else:
            media.append(pixels[next_image])  # [3, S, S]
            next_image += 1
    return ModelInputs(ref=item.ref, input_ids=tokenized.input_ids, labels=tokenized.labels, media=media)
