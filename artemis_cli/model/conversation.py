"""Conversation templates, the published referring prompts, and the prompt tokeniser.

`tokenize_prompt` reproduces the published `tokenizer_image_token`: the prompt is split on
``<image>`` and each piece on ``<bbox>``, every piece is tokenised on its own (so each starts with a
BOS, which is dropped except at the very start) and the pieces are joined with -200 / -500.
`tokenize_conversation` renders a training conversation and masks everything but the assistant
answers (and their ``</s>``) with -100.
"""

from __future__ import annotations

import random
import weakref
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from artemis_cli.common.media import BBOX_TOKEN, BOX_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX, VIDEO_TOKEN
from artemis_cli.errors import InputError

MAX_IMAGE_TOKENS = 16

IN_THE_VIDEO_QUESTIONS = (
    "How would you characterize the <bbox>in this video?",
    "What action is the <bbox>performing in this video?",
    "Throughout this video, what is the behavior of this object <bbox>?",
    "How is the <bbox>acting in this video?",
    "What is the motion of the object in this zone <bbox>in this video?",
    "What is the <bbox>doing in this video?",
    "As this video plays, what is this object <bbox>doing?",
    "In what way is the <bbox>behaving in this video?",
    "While this video is running, what is this object <bbox>doing?",
    "What are the characteristics of the <bbox>in this video?",
    "How does the <bbox>move in this video?",
    "During this video, what is this object <bbox>accomplishing?",
    "What is the activity of the object in this area <bbox>in this video?",
    "What is this object <bbox>doing throughout this video?",
    "What is the <bbox>doing in this video?",
    "How is the object in this part <bbox>behaving in this video?",
    "What is the behavior of this object <bbox>in this video?",
    "How does the object in this section <bbox>act in this video?",
    "What is the action of this object <bbox>in this video?",
    "How is the object in this segment <bbox>moving in this video?",
    "What is the movement of this object <bbox>in this video?",
    "What is the <bbox>engaged in in this video?",
    "How does the object in this zone <bbox>operate in this video?",
    "What is the operation of this object <bbox>in this video?",
)
TRACKING_LIST_NOTES = (
    "This is the region's video tracking list:",
    "There is the region's video tracking list:",
    "You are provided the region's video tracking list:",
)
BENCH_QUESTION = "What is the <bbox> doing in this video?"


@dataclass(frozen=True)
class Template:
    """A ``SeparatorStyle.TWO`` template: ``system sep ROLE: msg sep ROLE: msg sep2 ...``."""

    name: str
    system: str
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    sep: str = " "
    sep2: str = "</s>"

    def render(self, messages: Sequence[tuple[str, Optional[str]]]) -> str:
        """Messages as (role, text); a last ``None`` text leaves ``ROLE:`` open for generation."""
        return "".join(self._parts(messages))

    def _parts(self, messages: Sequence[tuple[str, Optional[str]]]) -> list[str]:
        parts = [self.system + self.sep]
        for index, (role, text) in enumerate(messages):
            if text:
                parts.append(f"{role}: {text}" + (self.sep, self.sep2)[index % 2])
            else:
                parts.append(f"{role}:")
        return parts


_VICUNA = Template("vicuna_v1", "A chat between a curious user and an artificial intelligence assistant. "
                                "The assistant gives helpful, detailed, and polite answers to the user's questions.")
_LLAVA = Template("llava_v1", "A chat between a curious human and an artificial intelligence assistant. "
                              "The assistant gives helpful, detailed, and polite answers to the human's questions.")
# Training (`--version v1`) used vicuna_v1; the published inference scripts use llava_v1.
TEMPLATES = {"vicuna_v1": _VICUNA, "v1": _VICUNA, "llava_v1": _LLAVA}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise InputError(f"unknown conversation template {name!r}; expected one of {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def _join(chunks: list[list[int]], separator: int, bos_id: Optional[int]) -> list[int]:
    offset = 1 if chunks and chunks[0] and chunks[0][0] == bos_id else 0
    ids = [chunks[0][0]] if offset else []
    for index, chunk in enumerate(chunks):
        if index:
            ids.append(separator)
        ids.extend(chunk[offset:])
    return ids


_SWALLOWS_LEADING_SPACE: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def swallows_leading_space(tokenizer) -> bool:
    """Whether `tokenizer` gives ``" a"`` the ids of ``"a"``.

    SentencePiece (the published slow Llama tokenizer, transformers 4.31) always adds its dummy-prefix
    ``▁``, so a piece that starts with a space gets two (``" doing"`` -> ``▁ ▁doing``). The
    tokenizers-library conversion (every Llama tokenizer in transformers 5, the fast one in 4.x)
    adds the prefix only when the text does not already start with a space, one ``▁`` fewer."""
    if tokenizer not in _SWALLOWS_LEADING_SPACE:
        _SWALLOWS_LEADING_SPACE[tokenizer] = (tokenizer(" a", add_special_tokens=False).input_ids
                                              == tokenizer("a", add_special_tokens=False).input_ids)
    return _SWALLOWS_LEADING_SPACE[tokenizer]


def tokenize_prompt(prompt: str, tokenizer) -> list[int]:
    """Token ids of a prompt with ``<image>`` -> -200 and ``<bbox>`` -> -500 (one BOS at the start).

    A ``<video>`` counts as one ``<image>`` (the reference replaced it before tokenising). Pieces are
    tokenised as the published SentencePiece tokenizer did, also where the loaded tokenizer would
    drop the prefix ``▁`` of a piece that starts with a space (``" doing in this video?"`` after a
    ``<bbox>``, ``" ASSISTANT:"``; see `swallows_leading_space`)."""
    prompt = prompt.replace(VIDEO_TOKEN, IMAGE_TOKEN)
    restore_space = swallows_leading_space(tokenizer)

    def encode(text: str) -> list[int]:
        if restore_space and text.startswith(" "):
            text = " " + text  # the extra space becomes the "▁" SentencePiece's dummy prefix gave
        return list(tokenizer(text).input_ids)

    bos = tokenizer.bos_token_id
    chunks = []
    for piece in prompt.split(IMAGE_TOKEN):
        if BBOX_TOKEN in piece:
            chunks.append(_join([encode(part) for part in piece.split(BBOX_TOKEN)], BOX_TOKEN_INDEX, bos))
        else:
            chunks.append(encode(piece))
    return _join(chunks, IMAGE_TOKEN_INDEX, bos)


@dataclass(frozen=True)
class TokenizedConversation:
    input_ids: list[int]
    labels: list[int]  # -100 except on assistant answers and their </s>
    prompt: str
    mismatch: bool = False  # the reference's "tokenization mismatch": all labels were masked


def _normalise_media(value: str, num_frames: int) -> str:
    if value.startswith(IMAGE_TOKEN) or value.startswith(VIDEO_TOKEN):
        count = value.count(IMAGE_TOKEN)
        if count > MAX_IMAGE_TOKENS:
            value = value.replace(IMAGE_TOKEN * count, IMAGE_TOKEN * MAX_IMAGE_TOKENS).strip()
        if value.count(VIDEO_TOKEN) > 1:
            raise InputError(f"a turn has {value.count(VIDEO_TOKEN)} {VIDEO_TOKEN} tokens; at most 1 is supported")
    return value.replace(VIDEO_TOKEN, IMAGE_TOKEN * num_frames)


def tokenize_conversation(turns: Sequence[Mapping[str, Any]], tokenizer, template: str = "vicuna_v1",
                          num_frames: int = 1) -> TokenizedConversation:
    """Render LLaVA-format turns (``{"from": "human"|"gpt", "value": ...}``) and tokenise with labels.

    As the reference's `preprocess_multimodal` + `preprocess_v1`: ``<video>`` becomes ``<image>``
    (`num_frames` times), a first turn from gpt is dropped, only assistant tokens are trained on (the
    first answer token after ``"ASSISTANT: "`` included, and each ``</s>``). Answer spans are found by
    tokenising the prompt up to each boundary, which equals the reference's per-round counting for
    legacy SentencePiece tokenizers and stays right for non-legacy ones, where the reference's
    count drifted and it masked the whole sample.
    """
    tmpl = get_template(template)
    if turns and turns[0].get("from") != "human":
        turns = turns[1:]
    messages: list[tuple[str, Optional[str]]] = []
    for index, turn in enumerate(turns):
        speaker = turn.get("from")
        expected = ("human", "gpt")[index % 2]
        if speaker != expected:
            raise InputError(f"turn {index}: expected from={expected!r}, got {speaker!r} (turns alternate human/gpt)")
        messages.append((tmpl.roles[index % 2], _normalise_media(str(turn.get("value", "")), num_frames)))
    parts = tmpl._parts(messages)
    prompt = "".join(parts)
    input_ids = tokenize_prompt(prompt, tokenizer)
    labels = [IGNORE_INDEX] * len(input_ids)
    text_so_far = parts[0]
    end = 1
    for index in range(1, len(parts)):
        role_text = parts[index]
        if index % 2 == 0:  # an assistant turn: "ASSISTANT: answer</s>"
            head = f"{tmpl.roles[1]}: "
            start = len(tokenize_prompt(text_so_far + head, tokenizer)) - 1  # the trailing "▁" merges into the answer
            end = len(tokenize_prompt(text_so_far + role_text, tokenizer))
            labels[start:end] = input_ids[start:end]
        text_so_far += role_text
    mismatch = end != len(input_ids) and len(messages) % 2 == 0
    if mismatch:
        labels = [IGNORE_INDEX] * len(input_ids)
    return TokenizedConversation(input_ids=input_ids, labels=labels, prompt=prompt, mismatch=mismatch)


def chat_prompt(question: str, template: str = "llava_v1") -> str:
    """One user turn and an open assistant turn, for generation (``... USER: question ASSISTANT:``)."""
    tmpl = get_template(template)
    return tmpl.render([(tmpl.roles[0], question), (tmpl.roles[1], None)])


def referring_question(num_boxes: int = 4, *, question: Optional[str] = None, train: bool = False,
                       rng: Optional[random.Random] = None) -> str:
    """The stage-3 human turn with ``1 + num_boxes`` ``<bbox>`` (one per RoI token: the key frame and the tracked frames).

    Training: ``<video>\\n`` + question (the record's, else one of 24 templates) + ``" "`` + one of 3
    tracking-list sentences + ``<bbox>`` x n + ``"."``. Inference (the published VideoRefBench
    script): ``<image>\\n`` + the fixed question, ``"This is the region's video tracking list: "`` and
    the boxes, no ``"."``.
    """
    if train:
        rng = rng or random.Random(0)
        text = question if question is not None else rng.sample(IN_THE_VIDEO_QUESTIONS, 1)[0]
        if text.count(BBOX_TOKEN) != 1:
            raise InputError(f"question must contain exactly one {BBOX_TOKEN}: {text!r}")
        if num_boxes > 0:
            text += " " + rng.sample(TRACKING_LIST_NOTES, 1)[0] + BBOX_TOKEN * num_boxes + "."
    else:
        text = question if question is not None else BENCH_QUESTION
        if num_boxes > 0:
            text += " " + TRACKING_LIST_NOTES[0] + " " + BBOX_TOKEN * num_boxes
    return (VIDEO_TOKEN if train else IMAGE_TOKEN) + "\n" + text
