"""How fast can a tiny Llama learn the toy's motion from RoI-like tokens? A stand-in for stage 3 (issue 25).

    python benchmarks/learn_proxy.py [--seeds 3] [--steps 3000] [--lm] [--colour 1.0] [--batch 4] [--lr 1e-3]
                                     [--width 64] [--layers 2] [--heads 4] [--tracked 4] [--video 0]
                                     [--from-model RUN/runs/stage2] [--json FILE]

Each sample is the part of a stage-3 prompt the motion depends on: a fixed text prefix (one of a few templates),
optionally `--video` per-sample random tokens standing in for the clip feature, the key-frame token and `--tracked`
tracked tokens in frame order, and a fixed text suffix. A token is what the RoI module gives at its initial weights
for a box with no content: `updims(pos_embedd(box))` of the package's own `MultiLevelRoIExtractor` (frozen), plus
`--colour` times one of four random colour vectors (the target's content; the box embedding's norm is ~5, a colour
vector's ~8 at width 64, so `--colour 1` makes the content a little larger than the box). The boxes follow the
toy sample's motion classes (`data make-sample --motion classes`: nine motions, a moving axis travels 45-90% of
the room the frame leaves). Fresh samples every step (no memorising).

The model is a tiny Llama (`transformers.LlamaForCausalLM`, random or `--from-model`'s stage-2 layers), fully
trained with AdamW. Without `--lm` a linear head on the last token names the motion (one 9-way decision); with
`--lm` the model writes the motion phrase as stage 3 does ("to the right and upwards across", teacher-forced,
one word per token) and a sample counts when every word is right. Every 100 steps 400 held samples are scored; a
run stops at 90%. Prints, per seed, the step it reached 90% (or its accuracy after `--steps`).

Results: benchmarks/RESULTS.md, "learn".
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

MOTIONS = [("to the left", -1, 0), ("to the right", 1, 0), ("upwards", 0, -1), ("downwards", 0, 1),
           ("to the left and upwards", -1, -1), ("to the left and downwards", -1, 1),
           ("to the right and upwards", 1, -1), ("to the right and downwards", 1, 1), ("around in place", 0, 0)]
WORDS = "to the left right and upwards downwards around in place across".split()
VOCAB = 64
TEMPLATES = 10  # prefix templates (the stage-3 prompt has 24 questions x 3 tracking sentences)
TARGET = 0.9
EVERY = 100


def run(args: argparse.Namespace, seed: int) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    from artemis_cli.model.roi import MultiLevelRoIExtractor
    from artemis_cli.data.synthetic_video import CLASS_TRAVEL

    torch.manual_seed(seed)
    rng = random.Random(seed)
    extractor = MultiLevelRoIExtractor(8, 1, args.width, output_size=1, query_size=128).requires_grad_(False)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=args.width, intermediate_size=2 * args.width,
                                       num_hidden_layers=args.layers, num_attention_heads=args.heads,
                                       num_key_value_heads=args.heads, max_position_embeddings=1024))
    if args.from_model:
        from safetensors.torch import load_file

        state = {}
        for path in sorted(Path(args.from_model).glob("*.safetensors")):
            state.update({k: v for k, v in load_file(path).items() if k.startswith(("model.layers.", "model.norm."))})
        missing = [k for k in llm.load_state_dict(state, strict=False).missing_keys if "layers" in k]
        if missing or not state:
            raise SystemExit(f"{args.from_model}: no matching Llama layers ({missing[:3]})")
    embed = llm.get_input_embeddings()
    colours = torch.randn(4, args.width)
    head = torch.nn.Linear(args.width, len(MOTIONS))
    word_ids = {word: 3 + i for i, word in enumerate(WORDS)}
    phrases = [torch.tensor([word_ids[w] for w in (name + " across").split()]) for name, _, _ in MOTIONS]
    templates = [torch.randint(3 + len(WORDS), VOCAB, (40 + k,), generator=torch.Generator().manual_seed(k))
                 for k in range(TEMPLATES)]
    suffix = torch.randint(3 + len(WORDS), VOCAB, (12,), generator=torch.Generator().manual_seed(99))

    def span(direction: int, size: float) -> tuple[float, float]:
        if direction == 0:
            start = rng.uniform(0, 1 - size)
            return start, start + rng.uniform(-0.03, 0.03)
        travel = rng.uniform(*CLASS_TRAVEL) * (1 - size)
        start = rng.uniform(0, 1 - size - travel)
        return (start, start + travel) if direction > 0 else (start + travel, start)

    def sample() -> dict:
        motion = rng.randrange(len(MOTIONS))
        _, dx, dy = MOTIONS[motion]
        w, h = rng.uniform(0.15, 0.25), rng.uniform(0.2, 0.33)
        (x0, x1), (y0, y1) = span(dx, w), span(dy, h)
        times = [0.5] + [0.1 + 0.8 * t for t in sorted(rng.random() for _ in range(args.tracked))]
        boxes = torch.tensor([[x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, x0 + (x1 - x0) * t + w, y0 + (y1 - y0) * t + h]
                              for t in times]).clamp(0, 1)
        video = torch.randn(args.video, args.width) * (4.0 / args.width ** 0.5) if args.video else None
        return {"motion": motion, "boxes": boxes, "colour": rng.randrange(4), "video": video,
                "template": templates[rng.randrange(TEMPLATES)]}

    def batch(items: list[dict]):
        rows, targets = [], []
        for item in items:
            tokens = extractor.updims(extractor.pos_embedd(item["boxes"])) + args.colour * colours[item["colour"]]
            parts = [embed(item["template"][:5])] + ([item["video"]] if item["video"] is not None else [])
            parts += [embed(item["template"][5:]), tokens, embed(suffix)]
            target = None
            if args.lm:
                phrase = phrases[item["motion"]]
                parts.append(embed(phrase))
                length = sum(len(p) for p in parts)
                target = torch.full((length,), -100)
                target[length - len(phrase) - 1:length - 1] = phrase  # each position predicts the next word
            rows.append(torch.cat(parts))
            targets.append(target)
        longest = max(len(r) for r in rows)
        x = torch.zeros(len(rows), longest, args.width)
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        labels = torch.full((len(rows), longest), -100)
        for i, (row, target) in enumerate(zip(rows, targets)):
            x[i, :len(row)], mask[i, :len(row)] = row, 1
            if target is not None:
                labels[i, :len(row)] = target
        return x, mask, labels, torch.tensor([item["motion"] for item in items])

    def outputs(items: list[dict]):
        x, mask, labels, motions = batch(items)
        if args.lm:
            logits = llm(inputs_embeds=x, attention_mask=mask).logits
            return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100), \
                ((logits.argmax(-1) == labels) | (labels == -100)).all(1)
        hidden = llm.model(inputs_embeds=x, attention_mask=mask).last_hidden_state
        logits = head(hidden[torch.arange(len(items)), mask.sum(1) - 1])
        return F.cross_entropy(logits, motions), logits.argmax(1) == motions

    held = [sample() for _ in range(400)]
    params = [p for p in list(llm.parameters()) + list(head.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    started, accuracy = time.perf_counter(), 0.0
    for step in range(1, args.steps + 1):
        loss, _ = outputs([sample() for _ in range(args.batch)])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % EVERY == 0:
            with torch.no_grad():
                accuracy = outputs(held)[1].float().mean().item()
            if accuracy >= TARGET:
                break
    return {"seed": seed, "reached": accuracy >= TARGET, "step": step, "accuracy": round(accuracy, 3),
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lm", action="store_true",
                        help="write the motion phrase (stage 3's loss) instead of a 9-way head")
    parser.add_argument("--colour", type=float, default=1.0, help="scale of the colour content added to each token")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--tracked", type=int, default=4)
    parser.add_argument("--video", type=int, default=0,
                        help="per-sample random tokens before the question (356: the clip feature)")
    parser.add_argument("--from-model", help="start from this stage-2 model's Llama layers (width 64, 2 layers)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for seed in range(args.seeds):
        rows.append(run(args, seed))
        print(json.dumps(rows[-1]), flush=True)
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    summary = {"settings": settings, "runs": rows, "reached": sum(r["reached"] for r in rows)}
    print(json.dumps({"reached": f"{summary['reached']}/{len(rows)}",
                      "steps": [r["step"] if r["reached"] else None for r in rows]}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
