"""Templates, referring prompts, the <image>/<bbox> tokeniser and label masking."""

from __future__ import annotations

import random

import pytest

from artemis_cli.errors import InputError
from artemis_cli.model.config import BOX_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from artemis_cli.model.conversation import (TRACKING_LIST_NOTES, chat_prompt, get_template, referring_question,
                                            tokenize_conversation, tokenize_prompt)


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))


def published_encode(text, tok):
    """The published slow Llama tokenizer (transformers 4.31, SentencePiece): a text without special
    tokens is BOS + SentencePiece's own encoding (its dummy prefix "▁" always added, so a leading
    space gives a second "▁"). Texts with "</s>" go through `tok`, whose legacy setting decides the
    same way the slow one did (checked against transformers 4.57's slow tokenizer)."""
    import sentencepiece as spm

    if "</s>" in text:
        return tok(text).input_ids
    sp = spm.SentencePieceProcessor(model_file=tok.vocab_file)
    return [tok.bos_token_id] + sp.encode(text)


def reference_tokenize(prompt, tok):
    """What the published `tokenizer_image_token` computes, restated: every piece between placeholders
    is tokenised on its own (so each starts with a BOS); the very first piece is kept whole, every later
    piece loses its BOS; -200 goes between <image> pieces and -500 between <bbox> pieces."""
    ids = []
    for i, image_piece in enumerate(prompt.split("<image>")):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        for j, box_piece in enumerate(image_piece.split("<bbox>")):
            if j:
                ids.append(BOX_TOKEN_INDEX)
            piece = published_encode(box_piece, tok)
            ids.extend(piece if (i, j) == (0, 0) else piece[1:])
    return ids


def reference_labels(prompt, tok):
    """The published `preprocess_v1` masking, restated: the prompt split at "</s>" gives the rounds;
    a round tokenised on its own advances the position by its length (its BOS stands for the "</s>");
    inside a round the tokens of "... ASSISTANT: " except its BOS and last token are masked; the BOS
    and everything after the last complete round are masked."""
    ids = reference_tokenize(prompt, tok)
    labels = list(ids)
    labels[0] = IGNORE_INDEX
    position = 1
    for round_text in prompt.split("</s>"):
        head, found, _ = round_text.partition(" ASSISTANT: ")
        if not round_text or not found or " ASSISTANT: " in _:
            break
        masked = len(reference_tokenize(head + " ASSISTANT: ", tok)) - 2
        labels[position:position + masked] = [IGNORE_INDEX] * masked
        position += len(reference_tokenize(round_text, tok))
    labels[position:] = [IGNORE_INDEX] * (len(labels) - position)
    return ids, labels


PROMPTS = [
    "plain text without media",
    "<image>\nWhat is in the picture?",
    "USER: <image>\nWhat is the <bbox> doing in this video? This is the region's video tracking list: <bbox><bbox><bbox><bbox> ASSISTANT:",
    "<image><image>\nCompare <bbox> and <bbox>.",
    "<bbox>",
]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_tokenize_prompt_equals_reference(prompt, tokenizer):
    ids = tokenize_prompt(prompt, tokenizer)
    assert ids == reference_tokenize(prompt, tokenizer)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert ids.count(IMAGE_TOKEN_INDEX) == prompt.count("<image>")
    assert ids.count(BOX_TOKEN_INDEX) == prompt.count("<bbox>")


def test_pieces_that_start_with_a_space_keep_sentencepieces_two_prefix_marks(tokenizer):
    """The VideoRefBench prompt has two pieces that start with a space (" doing in this video? ..." after
    the first <bbox>, " ASSISTANT:" after the last): SentencePiece gives each "▁" + "▁word", the
    tokenizers-library Llama tokenizer (transformers 5) only "▁word"; we follow SentencePiece."""
    prompt = chat_prompt(referring_question(4))
    pieces = prompt.split("<image>")[1].split("<bbox>")
    assert pieces[1].startswith(" doing") and pieces[-1] == " ASSISTANT:"
    space = tokenizer.convert_tokens_to_ids("▁")
    tail = tokenize_prompt(prompt, tokenizer)[-(len(published_encode(" ASSISTANT:", tokenizer)) - 1):]
    assert tail[:2] == [space, space] or tokenizer.convert_ids_to_tokens(tail[:1]) == ["▁▁"]
    assert tokenize_prompt(prompt, tokenizer) == reference_tokenize(prompt, tokenizer)


def test_video_token_counts_as_one_image(tokenizer):
    assert tokenize_prompt("<video>\nhi", tokenizer) == tokenize_prompt("<image>\nhi", tokenizer)


def test_single_turn_labels_equal_reference(tokenizer):
    turns = [{"from": "human", "value": referring_question(4, train=True, rng=random.Random(1))},
             {"from": "gpt", "value": "The red box moves to the right."}]
    out = tokenize_conversation(turns, tokenizer)
    ids, labels = reference_labels(out.prompt.replace("<video>", "<image>"), tokenizer)
    assert out.input_ids == ids
    assert out.labels == labels
    assert not out.mismatch
    trained = [t for t in out.labels if t != IGNORE_INDEX]
    assert trained[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(trained[:-1]).strip() == "The red box moves to the right."
    assert out.prompt.startswith(get_template("vicuna_v1").system + " USER: <image>\n")


def test_multi_turn_trains_every_answer(tokenizer):
    turns = [{"from": "human", "value": "<image>\nWhat colour do you get by mixing red and blue?"},
             {"from": "gpt", "value": "Purple."},
             {"from": "human", "value": "Name a shape with four equal sides."},
             {"from": "gpt", "value": "A square."}]
    out = tokenize_conversation(turns, tokenizer)
    assert out.input_ids == tokenize_prompt(out.prompt, tokenizer)
    assert len(out.labels) == len(out.input_ids)
    spans, current = [], []
    for token in out.labels:
        if token == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            current.append(token)
    if current:
        spans.append(current)
    assert [tokenizer.decode(span[:-1]).strip() for span in spans] == ["Purple.", "A square."]
    assert all(span[-1] == tokenizer.eos_token_id for span in spans)
    assert IMAGE_TOKEN_INDEX in out.input_ids and IMAGE_TOKEN_INDEX not in out.labels


def test_conversation_errors(tokenizer):
    with pytest.raises(InputError, match="expected from='gpt'"):
        tokenize_conversation([{"from": "human", "value": "a"}, {"from": "human", "value": "b"}], tokenizer)
    with pytest.raises(InputError, match="unknown conversation template"):
        tokenize_conversation([{"from": "human", "value": "a"}], tokenizer, template="chatml")
    # a first gpt turn is dropped, as the reference does
    out = tokenize_conversation([{"from": "gpt", "value": "x"}, {"from": "human", "value": "a"},
                                 {"from": "gpt", "value": "b"}], tokenizer)
    assert "ASSISTANT: x" not in out.prompt


def test_prompts_match_the_published_strings():
    system = ("A chat between a curious human and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the human's questions.")
    assert chat_prompt(referring_question(4)) == (
        system + " USER: <image>\nWhat is the <bbox> doing in this video? "
        "This is the region's video tracking list: <bbox><bbox><bbox><bbox> ASSISTANT:")
    train = referring_question(4, train=True, rng=random.Random(0))
    assert train.startswith("<video>\n") and train.endswith("<bbox><bbox><bbox><bbox>.")
    assert train.count("<bbox>") == 5 and any(note in train for note in TRACKING_LIST_NOTES)
    own = referring_question(4, question="Where does the <bbox>go?", train=True, rng=random.Random(0))
    assert own.startswith("<video>\nWhere does the <bbox>go? ")
    assert referring_question(0, train=True, rng=random.Random(0)).count("<bbox>") == 1
    with pytest.raises(InputError, match="exactly one <bbox>"):
        referring_question(4, question="no box here", train=True)
