"""`artemis_cli.infer` without a model: shards, batching, decoding settings, the seeded sampler, merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from artemis_cli.errors import InputError, UsageError
from artemis_cli.infer.batching import first_batch
from artemis_cli.model.generation import DecodingSettings, request_seed, seeded_sampler, trim_at_eos
from artemis_cli.infer.shards import Shard, merge_predictions, output_paths, resolve_shard
from artemis_cli.data.benchmarks import BenchmarkSample


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ---- shards, paths, batches ------------------------------------------------------------------------------
def test_shards_are_the_published_contiguous_chunks():
    items = list(range(10))
    assert [Shard(3, k).slice(items) for k in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(Shard(4, k).slice(list(range(5)))) for k in range(4)] == [2, 2, 1, 0]
    assert resolve_shard(env={"WORLD_SIZE": "4", "RANK": "2"}) == Shard(4, 2)
    assert resolve_shard(2, 1, env={"WORLD_SIZE": "4", "RANK": "2"}) == Shard(2, 1)
    assert resolve_shard(env={}) == Shard(1, 0)
    with pytest.raises(UsageError, match="outside 0..1"):
        resolve_shard(2, 2, env={})


def test_output_paths():
    paths = output_paths("runs/preds.jsonl")
    assert (paths.output.name, paths.errors.name, paths.manifest.name) == (
        "preds.jsonl", "preds.errors.jsonl", "preds.manifest.json")
    shard = output_paths("runs/preds.jsonl", Shard(4, 1))
    assert (shard.output.name, shard.errors.name, shard.manifest.name) == (
        "preds.shard-1-of-4.jsonl", "preds.shard-1-of-4.errors.jsonl", "preds.shard-1-of-4.manifest.json")
    assert output_paths(shard.output) == shard  # a shard file's siblings, as merge finds them


def test_first_batch_counts_prompts():
    one = BenchmarkSample(id="a", fields={}, order=(), questions=("q",))
    two = BenchmarkSample(id="b", fields={}, order=(), questions=("q1", "q2"))
    assert first_batch([one, one, one], 2) == 2
    assert first_batch([two, two, one], 3) == 1
    assert first_batch([two, one], 1) == 1  # a sample asking more than the batch still runs alone
    assert first_batch([one], 8) == 1 and first_batch([], 8) == 0


# ---- decoding ------------------------------------------------------------------------------------------------
class _GenConfig:
    top_k = None
    top_p = 0.6


def test_decoding_settings_resolve_like_generate():
    assert DecodingSettings(top_k=5).resolved(_GenConfig()).record() == {"mode": "greedy", "max_new_tokens": 1024,
                                                                          "seed": 0}
    sampled = DecodingSettings(sample=True).resolved(_GenConfig())
    assert (sampled.top_k, sampled.top_p, sampled.temperature) == (50, 0.6, 0.2)
    assert DecodingSettings(sample=True, top_p=0.9, top_k=0).resolved(_GenConfig()).record()["top_p"] == 0.9
    assert DecodingSettings(sample=True).resolved(None).top_p == 1.0
    assert request_seed(0, "a") == request_seed(0, "a") != request_seed(1, "a") != request_seed(0, "a", 1)


def test_seeded_sampler_rows_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    logits = torch.randn(5, 40) * 3
    seeds = [request_seed(0, f"s{i}") for i in range(5)]
    batch = seeded_sampler(seeds, 0.7, 50, 1.0)
    picks = [batch(None, logits).argmax(-1).tolist() for _ in range(6)]  # six decoding steps
    for row in range(5):
        alone = seeded_sampler([seeds[row]], 0.7, 50, 1.0)
        assert [alone(None, logits[row:row + 1]).argmax(-1).item() for _ in range(6)] == [step[row] for step in picks]
    out = batch(None, logits)
    assert torch.isfinite(out).sum(-1).tolist() == [1] * 5  # exactly one token left per row


def test_seeded_sampler_draws_from_the_warped_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -8.0]])
    counts = torch.zeros(5)
    for seed in range(4000):
        counts[seeded_sampler([seed], 1.0, 3, 1.0)(None, logits).argmax().item()] += 1
    expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0]), -1) * 4000
    assert counts[3:].sum() == 0  # top-k 3 removed the rest
    assert torch.allclose(counts[:3], expected, atol=4 * expected.sqrt().max())
    greedy_like = seeded_sampler([1], 0.01, None, None)(None, logits)
    assert greedy_like.argmax().item() == 0
    nucleus = seeded_sampler(list(range(200)), 1.0, None, 0.5)(None, logits.expand(200, -1))
    assert set(nucleus.argmax(-1).tolist()) == {0}  # top-p 0.5 keeps only the most likely token


def test_trim_at_eos():
    assert trim_at_eos([5, 6, 2, 0, 0], 2) == [5, 6]
    assert trim_at_eos([5, 6], 2) == [5, 6] and trim_at_eos([2, 5], 2) == []


# ---- merge -------------------------------------------------------------------------------------------------
def fake_shards(tmp_path: Path, ids: list[str], count: int, settings: dict | None = None,
                sources: dict | None = None) -> list[Path]:
    files = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        paths = output_paths(tmp_path / "preds.jsonl", Shard(count, k))
        mine = Shard(count, k).slice(ids)
        paths.output.write_text("".join(json.dumps({"id": i, "pred": f"p{i}"}) + "\n" for i in reversed(mine)))
        write_json(paths.manifest, {"settings": settings or {"decoding": {"mode": "greedy"}}, "input_ids": ids,
                                    "sources": sources or {"model": f"/node{k}/ckpt"},
                                    "shard": {"count": count, "index": k}, "runs": []})
        files.append(paths.output)
    return files


def test_merge_writes_input_order_and_checks_every_id(tmp_path):
    ids = [f"id{i}" for i in range(7)]
    files = fake_shards(tmp_path, ids, 3)
    report = merge_predictions(tmp_path / "merged.jsonl", files)
    assert report.ok and report.wrote and report.written == 7
    assert any("model or input paths differ" in note for note in report.notes)  # other machines: a note only
    lines = [json.loads(line) for line in (tmp_path / "merged.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ids
    manifest = json.loads((tmp_path / "merged.manifest.json").read_text())
    assert manifest["shard"] == {"count": 1, "index": 0} and manifest["input_ids"] == ids

    missing = merge_predictions(tmp_path / "m2.jsonl", files[:2])
    assert not missing.wrote and missing.missing_shards == [2] and missing.missing == ["id6"]
    assert not (tmp_path / "m2.jsonl").exists()
    partial = merge_predictions(tmp_path / "m3.jsonl", files[:2], allow_missing=True)
    assert partial.wrote and partial.written == 6 and not partial.ok

    with files[0].open("a") as handle:
        handle.write(json.dumps({"id": "id5", "pred": "again"}) + "\n" + json.dumps({"id": "zz", "pred": "?"}) + "\n")
        handle.write('{"id": "id')  # a torn line from a kill
    bad = merge_predictions(tmp_path / "m4.jsonl", files, allow_missing=True)
    assert bad.duplicates == ["id5"] and bad.unknown == ["zz"] and not bad.wrote
    assert any("incomplete last line" in note for note in bad.notes)


def test_merge_refuses_mixed_runs_and_files_without_manifest(tmp_path):
    ids = ["a", "b"]
    first = fake_shards(tmp_path / "one", ids, 2)
    other = fake_shards(tmp_path / "two", ids, 2, settings={"decoding": {"mode": "sample"}})
    with pytest.raises(InputError, match=r"not from the same run .* settings differ \(decoding\)"):
        merge_predictions(tmp_path / "m.jsonl", [first[0], other[1]])
    with pytest.raises(UsageError, match=r"shard index\(es\) \[0\] given more than once"):
        merge_predictions(tmp_path / "m.jsonl", [first[0], first[0]])
    bare = tmp_path / "bare.jsonl"
    bare.write_text('{"id": "a"}\n')
    with pytest.raises(InputError, match="no manifest beside it"):
        merge_predictions(tmp_path / "m.jsonl", [bare])
