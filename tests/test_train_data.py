"""Training data: records -> samples (all record kinds), the mixed-batch collator, the grouped sampler."""

from __future__ import annotations

import json
import random

import pytest
import torch

from artemis_cli.errors import InputError
from artemis_cli.model.config import BOX_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from artemis_cli.train.collator import Collator
from artemis_cli.train.datasets import make_dataset
from artemis_cli.train.records import read_records
from artemis_cli.model.inputs import ModelInputs, referring_inputs
from artemis_cli.train.sampler import GroupedSampler, grouped_order
from artemis_cli.train.samples import BadSample

WIDTH = 64


@pytest.fixture(scope="module")
def parts(train_start):
    from transformers import AutoTokenizer

    from artemis_cli.model.tiny import clip_image_processor

    tokenizer = AutoTokenizer.from_pretrained(str(train_start / "tiny" / "vicuna"))
    tokenizer.pad_token = tokenizer.unk_token
    return tokenizer, clip_image_processor()


def stage2_records(sample):
    root = sample.data_root
    return read_records([sample.annotations / "stage2"], "conversation",
                        image_folders=[root / "llava_image_tune", root], video_folders=[root / "videochatgpt_tune", root])


def answer_text(tokenizer, sample: ModelInputs) -> str:
    return tokenizer.decode([t for t, l in zip(sample.input_ids, sample.labels) if l != IGNORE_INDEX])


def test_conversation_samples_of_every_kind(sample, parts):
    tokenizer, processor = parts
    records = stage2_records(sample)
    assert not records.bad and len(records.items) == 6
    dataset = make_dataset(records.items, tokenizer=tokenizer, image_processor=processor, seed=0, template="vicuna_v1",
                           feature_width=WIDTH)
    ids = {}
    for name in ("instruct.json", "text_only.json"):
        path = sample.annotations / "stage2" / name
        ids.update({f"{path}[{index}]": raw["id"] for index, raw in enumerate(json.loads(path.read_text()))})
    by_id = {ids[item.ref]: dataset[n] for n, item in enumerate(records.items)}
    kinds = {name: [tuple(m.shape) for m in s.media] for name, s in by_id.items()}
    assert kinds["tune_img"] == [(3, 224, 224)]
    assert kinds["tune_multi"] == [(3, 224, 224), (3, 224, 224)]
    assert kinds["tune_vid"] == [(356, WIDTH)]
    assert kinds["tune_vid_img"] == [(356, WIDTH), (3, 224, 224)]  # prompt order: <video><image>
    assert kinds["text_0"] == [] and kinds["text_1"] == []
    for name, s in by_id.items():
        assert s.input_ids.count(IMAGE_TOKEN_INDEX) == len(s.media)
        assert s.input_ids[0] == tokenizer.bos_token_id
    # Only the answers (and their </s>) are trained on; two rounds in tune_img.
    assert answer_text(tokenizer, by_id["text_0"]).strip() == "Purple.</s>"
    answers = answer_text(tokenizer, by_id["tune_img"])
    assert answers.count("</s>") == 2 and "smooth colour gradient" in answers and "USER" not in answers
    # Text-only samples have no media; image+video record has the video feature first.
    assert torch.equal(by_id["tune_vid_img"].media[0], by_id["tune_vid"].media[0])


def test_at_most_16_images_a_random_subset_in_order(sample, parts):
    from artemis_cli.train.records import ConversationItem
    from artemis_cli.train.samples import conversation_sample, pick_images

    tokenizer, processor = parts
    images = sorted((sample.data_root / "llava_image").glob("*.jpg"))
    many = tuple(images[i % len(images)] for i in range(20))
    item = ConversationItem(ref="x[0]", turns=(("human", "<image>" * 20 + "\nDescribe."), ("gpt", "Boxes.")),
                            images=many, video=None)
    built = conversation_sample(item, tokenizer=tokenizer, image_processor=processor, rng=random.Random(3))
    assert len(built.media) == 16 and built.input_ids.count(IMAGE_TOKEN_INDEX) == 16
    _, kept = pick_images(many, 16, random.Random(3))
    assert kept == sorted(kept) and len(set(kept)) == 16


def test_referring_sample_nine_frames_five_boxes_templates(sample, parts):
    tokenizer, processor = parts
    root = sample.data_root / "Artemis_data"
    records = read_records([sample.annotations / "stage3"], "referring", video_folders=[root])
    assert not records.bad and len(records.items) == 4
    without_question = next(i for i in records.items if i.record.question is None)
    with_question = next((i for i in records.items if i.record.question is not None), None)
    built = referring_inputs(without_question.record, clip=without_question.clip, frame_dir=without_question.frame_dir,
                             tokenizer=tokenizer, image_processor=processor, rng=random.Random(0), feature_width=WIDTH)
    assert built.input_ids.count(BOX_TOKEN_INDEX) == 5 and built.input_ids.count(IMAGE_TOKEN_INDEX) == 1
    assert tuple(built.roi_frames.shape) == (9, 3, 224, 224) and tuple(built.roi_boxes.shape) == (9, 4)
    assert built.roi_boxes.min() >= 0 and built.roi_boxes.max() <= 1.0 + 1e-6
    assert tuple(built.media[0].shape) == (356, WIDTH) and built.roi_seed is not None
    assert answer_text(tokenizer, built).replace("</s>", "").strip() == without_question.record.caption
    prompt = tokenizer.decode([t for t in built.input_ids if t >= 0])
    from artemis_cli.model.conversation import IN_THE_VIDEO_QUESTIONS

    templates = {q.replace("<bbox>", "").split()[0] for q in IN_THE_VIDEO_QUESTIONS}
    assert any(word in prompt for word in templates) and "tracking list" in prompt
    again = referring_inputs(without_question.record, clip=without_question.clip, frame_dir=without_question.frame_dir,
                             tokenizer=tokenizer, image_processor=processor, rng=random.Random(0), feature_width=WIDTH)
    assert again.input_ids == built.input_ids and torch.equal(again.roi_boxes, built.roi_boxes)
    if with_question is not None:
        asked = referring_inputs(with_question.record, clip=with_question.clip, frame_dir=with_question.frame_dir,
                                 tokenizer=tokenizer, image_processor=processor, rng=random.Random(0), train=False)
        assert asked.labels is None and asked.input_ids.count(BOX_TOKEN_INDEX) == 5
        assert "doing in this video" in tokenizer.decode([t for t in asked.input_ids if t >= 0])


def test_collator_mixes_text_images_video_and_referring(sample, parts):
    tokenizer, processor = parts
    dataset = make_dataset(stage2_records(sample).items, tokenizer=tokenizer, image_processor=processor, seed=0,
                           template="vicuna_v1", feature_width=WIDTH)
    samples = [dataset[i] for i in range(len(dataset))] + [BadSample("f.json[9]", "broken")]
    collate = Collator(pad_token_id=tokenizer.pad_token_id, max_length=2048, image_tokens=256)
    batch = collate(samples)
    lengths = [len(s.input_ids) for s in samples[:-1]]
    assert batch["input_ids"].shape == (6, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for row, s in enumerate(samples[:-1]):
        assert batch["input_ids"][row, :lengths[row]].tolist() == s.input_ids
        assert (batch["labels"][row, lengths[row]:] == IGNORE_INDEX).all()
    assert [len(m) for m in batch["media"]] == [len(s.media) for s in samples[:-1]]
    assert batch["bad_records"] == [{"record": "f.json[9]", "problem": "broken"}]
    assert "roi_frames" not in batch
    expected = sum(len(s.input_ids) - len(s.media) + sum(m.shape[0] if m.dim() == 2 else 256 for m in s.media)
                   for s in samples[:-1])
    assert batch["num_tokens"] == expected
    short = Collator(pad_token_id=tokenizer.pad_token_id, max_length=20)(samples[:2])
    assert short["input_ids"].shape[1] == 20
    assert Collator(0, 10)([BadSample("a[0]", "x")]) == {"bad_records": [{"record": "a[0]", "problem": "x"}],
                                                        "num_tokens": 0}


def test_grouped_sampler_keeps_modalities_apart_and_is_reproducible():
    lengths = [5, 7, -3, 9, -4, 12, 6, -8, 10, 3, -2, 11]  # negative: text-only
    generator = torch.Generator().manual_seed(0)
    order = grouped_order(lengths, 4, "modality", generator)
    assert sorted(order) == list(range(len(lengths)))
    megabatches = [order[i:i + 4] for i in range(0, len(order), 4)]
    pure = [b for b in megabatches if len({lengths[i] >= 0 for i in b}) == 1]
    assert len(pure) >= len(megabatches) - 1  # at most one mixed megabatch of leftovers
    for batch in megabatches:
        assert [abs(lengths[i]) for i in batch] == sorted((abs(lengths[i]) for i in batch), reverse=True)
    sampler = GroupedSampler(lengths, batch_size=2, world_size=2, group_by="modality", seed=7)
    first = list(sampler)
    assert all(epoch == 0 for _, epoch in first) and list(sampler) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert all(epoch == 1 for _, epoch in second) and [i for i, _ in second] != [i for i, _ in first]
    plain = GroupedSampler(lengths, batch_size=2, group_by="none", seed=7)
    assert sorted(i for i, _ in plain) == list(range(len(lengths)))


def test_bad_records_are_reported_with_file_and_index(sample, parts, tmp_path):
    records = json.loads((sample.annotations / "stage2" / "instruct.json").read_text())
    records[1]["image"] = ["coco/tune_000.jpg", "coco/missing.jpg"]
    records[2]["conversations"][0]["from"] = "gpt"
    records.append({"id": "no_turns"})
    path = tmp_path / "instruct.json"
    path.write_text(json.dumps(records))
    root = sample.data_root
    result = read_records([path], "conversation", image_folders=[root / "llava_image_tune"],
                          video_folders=[root / "videochatgpt_tune"])
    bad = {b.ref: b.problem for b in result.bad}
    assert set(bad) == {f"{path}[1]", f"{path}[2]", f"{path}[4]"}
    assert "coco/missing.jpg" in bad[f"{path}[1]"] and "expected 'human'" in bad[f"{path}[2]"]
    assert "conversations: missing required field" in bad[f"{path}[4]"]
    assert len(result.items) == 2 and result.files[str(path)] == {"records": 5, "kept": 2, "bad": 3}


def test_load_failures_become_bad_samples_not_random_replacements(sample, parts, tmp_path, monkeypatch):
    tokenizer, processor = parts
    items = stage2_records(sample).items
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"not a pickle")
    video_item = next(i for i in items if i.video is not None)
    import dataclasses

    items = [dataclasses.replace(video_item, video=broken)] + [i for i in items if i.video is None]
    dataset = make_dataset(items, tokenizer=tokenizer, image_processor=processor, seed=0, template="vicuna_v1",
                           feature_width=WIDTH)
    first = dataset[0]
    assert isinstance(first, BadSample) and first.ref == video_item.ref and "broken.pkl" in first.problem
    from artemis_cli.model.conversation import TokenizedConversation

    monkeypatch.setattr("artemis_cli.model.conversation.tokenize_conversation",
                        lambda *a, **k: TokenizedConversation([1, 5], [IGNORE_INDEX] * 2, "", mismatch=True))
    mismatch = dataset[1]
    assert isinstance(mismatch, BadSample) and "tokenization mismatch" in mismatch.problem
    assert mismatch.ref == items[1].ref
    from artemis_cli.model.inputs import load_video_feature

    with pytest.raises(InputError, match="feature width 64 but the model's tower width is 32"):
        load_video_feature(sample.data_root / "videochatgpt_tune" / "vcg_000.pkl", width=32)
