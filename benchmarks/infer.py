"""Inference speed: our batched greedy `infer` vs the published batch-1 sampling loop (VideoRefBench, video QA).

    python benchmarks/infer.py --threads 1 --task videorefbench,qa            # CPU: tiny random Artemis
    python benchmarks/infer.py --device cuda --task videorefbench,qa --max-new-tokens 128 --out infer_gpu.json

Both paths answer the same synthetic records (VideoRefBench: a [356, C] clip feature and 24 non-square
JPEG frames with a track; QA: the feature and a question; written to a temp folder) with the same model
in one process (one build for all `--task`s):
- ours: `artemis_cli.infer.infer` as the CLI runs it (record loading, frames, RoIs, left-padded batches,
  greedy, resumable output with a flushed line per sample), batch size as large as fits unless
  `--batch-size`;
- published: one record at a time as `run_inference_artemis_bench.py` (`run_inference_video_qa.py`)
  does it (pickle feature, 9 frames preprocessed one by one, `generate(do_sample=True, temperature=0.2, use_cache=True)` with the
  decoding `KeywordsStoppingCriteria` on ``</s>``, output line written per sample).
The baseline runs on the first `--baseline-samples` records (capped by `--baseline-budget-s`),
ours on all `--samples`; both are capped at `--max-new-tokens` and report samples/s and mean new
tokens per sample. On CUDA the model is a random-init Artemis of the real shape (Llama 4096 x 32
layers, vocab 32000, CLIP ViT-L/14 tower, RoI module with 5 fuse rounds, k-means 4) in fp16 with a
32000-word tokenizer built in memory: nothing is downloaded. On CPU it is the tiny Artemis.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artemis_cli.data.feature_files import load_feature, save_feature  # noqa: E402
from artemis_cli.model.conversation import chat_prompt, referring_question, tokenize_prompt  # noqa: E402
from artemis_cli.model.loading import LoadedModel  # noqa: E402
from artemis_cli.model.sampling import sample_roi_frames  # noqa: E402

VIDEO_TOKENS = 356
FRAMES, WIDTH, HEIGHT = 24, 320, 240


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- data ---------------------------------------------------------------------------------------------
def make_records(folder: Path, count: int, width: int, videos: int = 4, seed: int = 0) -> Path:
    """Write `videos` clips (feature + frames) under folder/Artemis_data and `count` records; return the file."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    clips = []
    for v in range(videos):
        name = f"bench_{v:03d}"
        save_feature(folder / "Artemis_data" / "HC-STVG" / "clip_feature" / f"{name}.pkl",
                     rng.standard_normal((VIDEO_TOKENS, width)).astype(np.float16), "pkl")
        frame_dir = folder / "Artemis_data" / "HC-STVG" / "frames" / name
        frame_dir.mkdir(parents=True, exist_ok=True)
        names = [f"{i:05d}.jpg" for i in range(FRAMES)]
        base = rng.integers(0, 255, size=3)
        for i, frame in enumerate(names):
            pixels = np.full((HEIGHT, WIDTH, 3), base, dtype=np.uint8)
            pixels[40 + 3 * i:100 + 3 * i, 30 + 5 * i:110 + 5 * i] = 255 - base
            Image.fromarray(pixels).save(frame_dir / frame, quality=90)
        clips.append((name, names))
    records = []
    for k in range(count):
        name, names = clips[k % videos]
        track = [[] if i % 7 == 3 else [30.0 + 5 * i, 40.0 + 3 * i, 110.0 + 5 * i, 100.0 + 3 * i] for i in range(FRAMES)]
        key = 5 + k % 10
        records.append({"clip_path": f"HC-STVG/clip_feature/{name}.pkl", "caption": "The box moves to the right.",
                        "frame_path": f"HC-STVG/frames/{name}", "frame_id": names, "track_list": track,
                        "key_frame_id": names[key] if k % 2 == 0 else "", "key_frame_box": track[key] if k % 2 == 0 else [],
                        "video_name": f"{name}_{k}"})
    path = folder / "bench.json"
    path.write_text(json.dumps(records))
    questions = [{"video_name": record["clip_path"].split("/")[-1][:-4], "question": f"What happens in the video {k}?",
                  "question_id": f"q{k}"} for k, record in enumerate(records)]
    (folder / "qa_q.json").write_text(json.dumps(questions))
    (folder / "qa_a.json").write_text(json.dumps([{"answer": "a box moves"}] * len(questions)))
    return path


def task_for(kind: str, annotations: Path) -> dict:
    """The `InferConfig.task` of the records in `annotations`' folder."""
    folder = annotations.parent
    if kind == "qa":
        return {"kind": "qa", "dataset": "msvd", "questions": folder / "qa_q.json", "answers": folder / "qa_a.json",
                "features": folder / "Artemis_data" / "HC-STVG" / "clip_feature"}
    return {"kind": "videorefbench", "annotations": annotations, "data_root": folder}


# ---- models -------------------------------------------------------------------------------------------
def word_tokenizer(vocab_size: int = 32000):
    """A Llama-sized word-level tokenizer (unk 0, bos 1, eos 2) built in memory: any id decodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from artemis_cli.model.conversation import IN_THE_VIDEO_QUESTIONS, TRACKING_LIST_NOTES, get_template

    text = " ".join([get_template("llava_v1").system, "USER ASSISTANT", *IN_THE_VIDEO_QUESTIONS, *TRACKING_LIST_NOTES])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for word in pre_tokenizers.Whitespace().pre_tokenize_str(text):
        vocab.setdefault(word[0], len(vocab))
    while len(vocab) < vocab_size:
        vocab[f"w{len(vocab)}"] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def build_7b(device: str, dtype: torch.dtype) -> LoadedModel:
    """Random-init Artemis of the published shape, built directly on `device` in `dtype`."""
    from transformers import LlamaConfig

    from artemis_cli.model.config import build_config
    from artemis_cli.model.llava import ArtemisForCausalLM
    from artemis_cli.model.tiny import clip_image_processor

    llama = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    config = build_config(llama, image_tower="openai/clip-vit-large-patch14", mm_hidden_size=1024,
                          tokenizer_model_max_length=3072)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = ArtemisForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return LoadedModel(model=model.eval(), tokenizer=word_tokenizer(), image_processor=clip_image_processor(),
                       kind="merged", source=Path("random-init-7b"))


def build_tiny(folder: Path, roi_fuse: int) -> LoadedModel:
    from artemis_cli.model.tiny import build_tiny_artemis, save_tiny_clip, save_tiny_tokenizer

    model, tokenizer, processor = build_tiny_artemis(save_tiny_tokenizer(folder / "tok"), save_tiny_clip(folder / "clip"),
                                                     roi_num_fuse=roi_fuse)
    return LoadedModel(model=model, tokenizer=tokenizer, image_processor=processor, kind="merged",
                       source=Path("random-init-tiny"))


# ---- the published loop ----------------------------------------------------------------------------------
def keywords_stop(keywords: list[str], tokenizer):
    """The published `KeywordsStoppingCriteria` (LLaVA mm_utils): per step, compare the last ids with each
    keyword's ids, then decode the tail and look for the keyword (a sync and a decode per step)."""
    from transformers import StoppingCriteria

    class KeywordsStop(StoppingCriteria):
        def __init__(self) -> None:
            self.keyword_ids = []
            for keyword in keywords:
                ids = tokenizer(keyword).input_ids
                if ids and ids[0] == tokenizer.bos_token_id:
                    ids = ids[1:]
                self.keyword_ids.append(torch.tensor(ids))
            self.max_len = max(len(ids) for ids in self.keyword_ids)

        def __call__(self, output_ids, scores, **kwargs):
            done = torch.zeros(output_ids.shape[0], dtype=torch.bool, device=output_ids.device)
            for ids in self.keyword_ids:
                ids = ids.to(output_ids.device)
                if output_ids.shape[1] >= len(ids) and bool((output_ids[0, -len(ids):] == ids).all()):
                    return done | True
            offset = min(output_ids.shape[1], self.max_len)
            text = tokenizer.batch_decode(output_ids[:, -offset:], skip_special_tokens=True)[0]
            return done | any(keyword in text for keyword in keywords)

    return KeywordsStop()


def published_inputs(kind: str, record: dict, loaded: LoadedModel, root: Path, rng: random.Random) -> dict:
    """One record's generate() inputs as the published scripts build them (batch of one)."""
    from PIL import Image

    model, tokenizer, processor = loaded.model, loaded.tokenizer, loaded.image_processor
    device, dtype = model.device, model.dtype
    if kind == "qa":
        feature = root / "HC-STVG" / "clip_feature" / f"{record['video_name']}.pkl"
        video = torch.tensor(load_feature(feature)).to(device=device, dtype=dtype)
        ids = tokenize_prompt(chat_prompt("<image>\n" + record["question"], "llava_v1"), tokenizer)
        return {"input_ids": torch.tensor([ids], device=device), "media": [[video]]}
    video = torch.tensor(load_feature(root / record["clip_path"])).to(device=device, dtype=dtype)
    ids = tokenize_prompt(chat_prompt(referring_question(model.mm.tracked_roi_tokens(8)), "llava_v1"), tokenizer)
    pick = sample_roi_frames(record["track_list"], record["frame_id"], key_frame_id=record["key_frame_id"],
                             key_frame_box=record["key_frame_box"], rng=rng)
    images = [Image.open(root / record["frame_path"] / f).convert("RGB") for f in pick.frame_ids]
    pixels = torch.stack([processor.preprocess(im, return_tensors="pt")["pixel_values"][0] for im in images])
    w, h = images[0].size
    boxes = torch.tensor(pick.boxes) / torch.tensor([w, h, w, h], dtype=torch.float32)
    return {"input_ids": torch.tensor([ids], device=device), "media": [[video]],
            "roi_frames": [pixels.to(device, dtype)], "roi_boxes": [boxes.to(device)]}


def published_loop(kind: str, loaded: LoadedModel, records: list[dict], root: Path, max_new_tokens: int, out: Path,
                   budget_s: float) -> dict:
    from transformers import StoppingCriteriaList

    model, tokenizer = loaded.model, loaded.tokenizer
    unseeded = random.Random()  # the published script used the global `random`, unseeded
    new_tokens, done = [], 0
    sync(str(model.device))
    start = time.perf_counter()
    with out.open("w") as answers:
        for record in records:
            inputs = published_inputs(kind, record, loaded, root, unseeded)
            stop = StoppingCriteriaList([keywords_stop(["</s>"], tokenizer)])
            output = model.generate(**inputs, do_sample=True, temperature=0.2, max_new_tokens=max_new_tokens,
                                    use_cache=True, stopping_criteria=stop)
            text = tokenizer.batch_decode(output, skip_special_tokens=True)[0].strip()
            answers.write(json.dumps({**record, "pred": text.removesuffix("</s>").strip()}) + "\n")
            new_tokens.append(output.shape[1])
            done += 1
            if time.perf_counter() - start > budget_s:
                break
    sync(str(model.device))
    seconds = time.perf_counter() - start
    return {"samples": done, "seconds": seconds, "samples_per_s": done / seconds,
            "mean_new_tokens": statistics.mean(new_tokens), "new_tokens_per_s": sum(new_tokens) / seconds}


# ---- ours ------------------------------------------------------------------------------------------------
def ours(kind: str, loaded: LoadedModel, annotations: Path, max_new_tokens: int, out: Path,
         batch_size: int | None) -> dict:
    from artemis_cli.infer import InferConfig, infer
    from artemis_cli.model import generation

    counts: list[int] = []
    real = generation.generate_tokens

    def counting(*args, **kwargs):
        rows = real(*args, **kwargs)
        counts.extend(len(row) for row in rows)
        return rows

    config = InferConfig(task=task_for(kind, annotations),
                         model=str(loaded.source), output=out, decoding={"max_new_tokens": max_new_tokens},
                         batch_size=batch_size, overwrite=True, show_progress=False)
    generation.generate_tokens = counting
    try:
        sync(str(loaded.model.device))
        start = time.perf_counter()
        summary = infer(config, loaded=loaded)
        sync(str(loaded.model.device))
        seconds = time.perf_counter() - start
    finally:
        generation.generate_tokens = real
    if summary.failed:
        raise RuntimeError(f"our path failed on {summary.failed} samples: {summary.failures[:3]}")
    return {"samples": summary.done, "seconds": seconds, "samples_per_s": summary.done / seconds,
            "batch_size": summary.batch_size, "mean_new_tokens": statistics.mean(counts) if counts else 0.0,
            "new_tokens_per_s": sum(counts) / seconds}


def run_task(kind: str, loaded: LoadedModel, tmp: Path, args, samples: int, baseline_samples: int) -> dict:
    """Warm both paths up on 2 other records, then time ours on `samples` and the published loop on the first
    `baseline_samples` of the same records."""
    width = loaded.model.mm.mm_hidden_size
    annotations = make_records(tmp / kind / "data", samples, width)
    warm = make_records(tmp / kind / "warm", 2, width)
    name = "qa_q.json" if kind == "qa" else "bench.json"
    ours(kind, loaded, warm, 2, tmp / kind / "warm.jsonl", None)  # CUDA/cuBLAS/cudnn start-up, untimed
    published_loop(kind, loaded, json.loads((warm.parent / name).read_text())[:1], warm.parent / "Artemis_data", 2,
                   tmp / kind / "warm-published.jsonl", 1e9)
    cuda = str(loaded.model.device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    mine = ours(kind, loaded, annotations, args.max_new_tokens, tmp / kind / "ours.jsonl", args.batch_size)
    records = json.loads((annotations.parent / name).read_text())[:baseline_samples]
    base = published_loop(kind, loaded, records, annotations.parent / "Artemis_data", args.max_new_tokens,
                          tmp / kind / "published.jsonl", args.baseline_budget_s)
    return {"task": kind, "ours": mine, "published": base, "speedup": mine["samples_per_s"] / base["samples_per_s"],
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--task", default="videorefbench", help="videorefbench (feature + 9 RoI frames per record), "
                        "qa (feature + question), or both comma-separated (one model build)")
    parser.add_argument("--tiny", action="store_true", help="the tiny model even on CUDA (default on CPU)")
    parser.add_argument("--dtype", default=None, help="default float16 on CUDA (as the reference ran), float32 on CPU")
    parser.add_argument("--samples", type=int, default=None, help="records for our path (default 64 CUDA, 16 CPU)")
    parser.add_argument("--baseline-samples", type=int, default=None, help="records for the published loop "
                        "(the first ones; default 6 CUDA, 8 CPU)")
    parser.add_argument("--baseline-budget-s", type=float, default=None, help="stop the published loop after the "
                        "sample that passes this many seconds (default 20 on CUDA, 120 on CPU)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=None, help="ours (default: as large as fits)")
    parser.add_argument("--roi-fuse", type=int, default=5, help="tiny model's RoI fuse rounds (published: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    if not tasks or set(tasks) - {"videorefbench", "qa"}:
        parser.error(f"--task: expected videorefbench and/or qa, got {args.task!r}")
    cuda = args.device.startswith("cuda")
    tiny = args.tiny or not cuda
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = args.samples or (64 if cuda else 16)
    baseline_samples = min(samples, args.baseline_samples or (6 if cuda else 8))
    if args.baseline_budget_s is None:
        args.baseline_budget_s = 20.0 if cuda else 120.0
    dtype = getattr(torch, args.dtype or ("float16" if cuda else "float32"))
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory(prefix="artemis-bench-infer-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        loaded = build_tiny(tmp / "model", args.roi_fuse) if tiny else build_7b(args.device, dtype)
        if tiny:
            loaded.model.to(args.device, dtype)
        build_s = time.perf_counter() - start
        results = [run_task(kind, loaded, tmp, args, samples, baseline_samples) for kind in tasks]
    device_name = torch.cuda.get_device_name(torch.device(args.device)) if cuda else platform.processor() or platform.machine()
    report = {"device": device_name, "model": "tiny" if tiny else "7B random init", "dtype": str(dtype).replace("torch.", ""),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "max_new_tokens": args.max_new_tokens,
              "build_s": round(build_s, 1), "results": results}
    print(json.dumps(report, indent=2))
    print(f"\n{device_name}, {report['model']} ({report['dtype']}), max {args.max_new_tokens} new tokens")
    print(f"{'task':14s} {'path':34s} {'samples':>8s} {'seconds':>8s} {'samples/s':>10s} {'new tok/sample':>15s} "
          f"{'new tok/s':>10s}")
    for result in results:
        mine, base = result["ours"], result["published"]
        for label, row in ((f"ours, batched greedy (batch {mine['batch_size']})", mine),
                           ("published, batch 1 sampling", base)):
            print(f"{result['task']:14s} {label:34s} {row['samples']:8d} {row['seconds']:8.1f} "
                  f"{row['samples_per_s']:10.3f} {row['mean_new_tokens']:15.1f} {row['new_tokens_per_s']:10.1f}")
        print(f"{result['task']:14s} speed-up (samples/s): {result['speedup']:.1f}x")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
