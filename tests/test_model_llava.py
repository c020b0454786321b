"""The tiny Artemis end to end: forward + backward + generate with RoIs, mixed batches, splicing."""

from __future__ import annotations

import random

import pytest
import torch

from artemis_cli.errors import InputError
from artemis_cli.model.config import BOX_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from artemis_cli.model.conversation import chat_prompt, referring_question, tokenize_conversation, tokenize_prompt
from artemis_cli.model.splice import splice

FRAMES = 9  # key frame + 8 tracked; k-means keeps 4 -> 5 <bbox> per prompt
VIDEO_TOKENS, WIDTH = 356, 64


def right_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return ids, mask


def referring_sample(tokenizer, seed: int, answer: str = "The red box moves to the right."):
    generator = torch.Generator().manual_seed(seed)
    turns = [{"from": "human", "value": referring_question(4, train=True, rng=random.Random(seed))},
             {"from": "gpt", "value": answer}]
    tokens = tokenize_conversation(turns, tokenizer)
    frames = torch.randn(FRAMES, 3, 224, 224, generator=generator)
    corner = torch.rand(FRAMES, 2, generator=generator) * 0.5
    boxes = torch.cat([corner, corner + 0.3 + 0.2 * torch.rand(FRAMES, 2, generator=generator)], dim=1)
    video = torch.randn(VIDEO_TOKENS, WIDTH, generator=generator)
    return tokens, video, frames, boxes


@pytest.mark.slow
def test_forward_backward_generate_with_rois(tiny_artemis):
    model, tokenizer, _ = tiny_artemis
    samples = [referring_sample(tokenizer, seed) for seed in (0, 1)]
    ids, mask = right_pad([s[0].input_ids for s in samples], tokenizer.unk_token_id)
    labels, _ = right_pad([s[0].labels for s in samples], IGNORE_INDEX)
    labels[mask == 0] = IGNORE_INDEX
    media = [[s[1]] for s in samples]
    frames = torch.stack([s[2] for s in samples])  # [2, 9, 3, 224, 224]
    boxes = torch.stack([s[3] for s in samples])  # [2, 9, 4]
    model.zero_grad(set_to_none=True)
    model.train()
    try:
        out = model(input_ids=ids, attention_mask=mask, labels=labels, media=media, roi_frames=frames,
                    roi_boxes=boxes, roi_seeds=[0, 1])
        assert torch.isfinite(out.loss) and out.loss.item() > 0
        # placeholders became 356 video tokens and 5 RoI tokens per sample
        assert out.logits.shape[1] == max(len(s[0].input_ids) for s in samples) - 6 + VIDEO_TOKENS + 5
        out.loss.backward()
    finally:
        model.eval()
    named = dict(model.named_parameters())
    for name in ("model.spi_model.roi_align.flatten_linear.weight", "model.spi_model.mlvl_fuse.fuse_convs.0.conv.weight",
                 "model.mm_projector.0.weight", "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"):
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for n, p in named.items() if n.startswith("model.image_tower."))
    model.zero_grad(set_to_none=True)

    prompt_ids, prompt_mask = right_pad([tokenize_prompt(chat_prompt(referring_question(4)), tokenizer)] * 2,
                                        tokenizer.unk_token_id)
    new = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, media=media, roi_frames=frames,
                         roi_boxes=boxes, roi_seeds=[0, 1], max_new_tokens=3, do_sample=False)
    assert new.shape[0] == 2 and 1 <= new.shape[1] <= 3
    assert (new >= 0).all() and (new < model.config.vocab_size).all()


@pytest.mark.slow
def test_mixed_batch_equals_each_sample_alone(tiny_artemis):
    """Video + RoIs, an image (through the tower), and text only, right-padded in one batch."""
    model, tokenizer, _ = tiny_artemis
    ref_tokens, video, frames, boxes = referring_sample(tokenizer, 3)
    image_tokens = tokenize_conversation([{"from": "human", "value": "<image>\nWhat is in the picture?"},
                                          {"from": "gpt", "value": "Two boxes."}], tokenizer)
    text_tokens = tokenize_conversation([{"from": "human", "value": "Name a shape with four equal sides."},
                                         {"from": "gpt", "value": "A square."}], tokenizer)
    image = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(9))
    rows = [ref_tokens, image_tokens, text_tokens]
    ids, mask = right_pad([r.input_ids for r in rows], tokenizer.unk_token_id)
    labels, _ = right_pad([r.labels for r in rows], IGNORE_INDEX)
    media = [[video], [image], []]
    with torch.no_grad():
        spliced = model.prepare_multimodal_inputs(ids, mask, labels, media, [frames, None, None], [boxes, None, None],
                                                  roi_seeds=[5, None, None])
        batch_logits = model(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask,
                             position_ids=spliced.position_ids).logits
        patches = (224 // 14) ** 2
        expected = [len(ref_tokens.input_ids) - 6 + VIDEO_TOKENS + 5, len(image_tokens.input_ids) - 1 + patches,
                    len(text_tokens.input_ids)]
        assert spliced.lengths == expected
        for b, row in enumerate(rows):  # labels survive splicing, placeholders are masked
            assert (spliced.labels[b] != IGNORE_INDEX).sum().item() == sum(t != IGNORE_INDEX for t in row.labels)
        for b, row in enumerate(rows):
            alone_ids = torch.tensor([row.input_ids])
            alone = model(input_ids=alone_ids, attention_mask=torch.ones_like(alone_ids), media=[media[b]],
                          roi_frames=[[frames, None, None][b]], roi_boxes=[[boxes, None, None][b]],
                          roi_seeds=[[5, None, None][b]]).logits[0]
            n = expected[b]
            torch.testing.assert_close(batch_logits[b, :n], alone, rtol=1e-4, atol=1e-4)


def test_splice_counts_truncation_and_padding():
    hidden = 8
    ids = torch.tensor([[1, 5, IMAGE_TOKEN_INDEX, 6, BOX_TOKEN_INDEX, 7],
                        [1, 8, 9, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    labels = torch.tensor([[IGNORE_INDEX, 5, IGNORE_INDEX, 6, IGNORE_INDEX, 7], [IGNORE_INDEX, 8, 9, -100, -100, -100]])
    embeds = torch.randn(2, 6, hidden)
    media = [[torch.ones(3, hidden)], []]
    rois = [torch.full((1, hidden), 2.0), None]
    out = splice(ids, embeds, mask, labels, media, rois)
    assert out.lengths == [8, 3]
    assert torch.equal(out.inputs_embeds[0, 2:5], torch.ones(3, hidden))
    assert torch.equal(out.inputs_embeds[0, 6], torch.full((hidden,), 2.0))
    assert out.labels[0].tolist() == [IGNORE_INDEX, 5, -100, -100, -100, 6, -100, 7]
    assert out.position_ids[1].tolist() == [0, 1, 2, 0, 0, 0, 0, 0]
    left = splice(ids, embeds, mask, None, media, rois, padding_side="left", max_length=5)
    assert left.labels is None and left.lengths == [5, 3]
    assert left.attention_mask[1].tolist() == [0, 0, 1, 1, 1]
    assert left.position_ids[1].tolist() == [0, 0, 0, 1, 2]
    torch.testing.assert_close(left.inputs_embeds[1, 2:], embeds[1, :3])
    with pytest.raises(InputError, match=r"sample 0: 1 <image>/<video> placeholder\(s\) but 0 media"):
        splice(ids, embeds, mask, labels, [[], []], rois)
    with pytest.raises(InputError, match=r"sample 0: 1 <bbox> placeholder\(s\) but 0 RoI token"):
        splice(ids, embeds, mask, labels, media, [None, None])


def test_batched_greedy_generation_equals_batch_of_one(tiny_artemis):
    model, tokenizer, _ = tiny_artemis
    questions = ["<image>\nDescribe the video in detail.", "<image>\nWhat happens?",
                 referring_question(4)]
    prompts = [tokenize_prompt(chat_prompt(q), tokenizer) for q in questions]
    ref_tokens, video, frames, boxes = referring_sample(tokenizer, 4)
    media = [[torch.randn(VIDEO_TOKENS, WIDTH, generator=torch.Generator().manual_seed(i))] for i in range(2)] + [[video]]
    roi_frames, roi_boxes, seeds = [None, None, frames], [None, None, boxes], [None, None, 11]
    ids, mask = right_pad(prompts, tokenizer.unk_token_id)
    batched = model.generate(input_ids=ids, attention_mask=mask, media=media, roi_frames=roi_frames,
                             roi_boxes=roi_boxes, roi_seeds=seeds, max_new_tokens=6, do_sample=False)
    for b, prompt in enumerate(prompts):
        single = model.generate(input_ids=torch.tensor([prompt]), media=[media[b]], roi_frames=[roi_frames[b]],
                                roi_boxes=[roi_boxes[b]], roi_seeds=[seeds[b]], max_new_tokens=6, do_sample=False)
        n = single.shape[1]
        assert batched[b, :n].tolist() == single[0].tolist()


def test_errors_name_the_problem(tiny_artemis):
    model, tokenizer, _ = tiny_artemis
    ids = torch.tensor([tokenize_prompt("<image>\nhi <bbox>", tokenizer)])
    with pytest.raises(InputError, match=r"roi_boxes must be \[9, 4\]"):
        model.prepare_multimodal_inputs(ids, None, None, [[torch.randn(4, WIDTH)]], [torch.randn(9, 3, 224, 224)],
                                        [torch.rand(8, 4)])
    with pytest.raises(InputError, match=r"media must be \[T, C\] features or \[3, H, W\] images"):
        model.prepare_multimodal_inputs(ids, None, None, [[torch.randn(4)]])
