"""Why the toy Artemis names the colour but not the motion: a fast stage-3 loop for experiments (issue 25).

    python benchmarks/learn_diagnose.py RUN [--train SAMPLE] [--steps 600] [--every 50] [--set KEY=VALUE ...]
                                            [--roi-lr LR] [--roi-lr-from STEP:LR] [--held 48] [--probe]
                                            [--token-norm N] [--zero-video] [--json FILE]

RUN is an `artemis model train-toy` folder (its `configs/stage3.yaml`, `runs/stage2`, `data/train`,
`data/held_out`). The stage-3 model is built as `artemis train stage3` builds it (`build_stage_model`), the
records go through the same `referring_inputs` and collator, and the RoI tokens through the model's own
`encode_rois` (k-means included); only the frozen CLIP tower's outputs are cached per frame, and the loop is plain
AdamW with the config's learning rate, weight decay and gradient clipping (no scheduler, no Trainer). Every
`--every` steps it prints the mean loss, the RoI tokens' norm, the box embedding's norm (`pos_embedd`), the cosine
between one held-out target's first and last tracked RoI token, and held-out teacher-forced accuracy: the colour
word, and the whole motion phrase (every token between "moves" and "across" predicted right).

`--set` takes stage-3 config keys (`model.roi.output_size=2`, `train.lr=2e-3`); `--roi-lr` gives the RoI
module its own learning rate (a diagnostic, not a config setting; `0` freezes it at its initial weights), and
`--roi-lr-from STEP:LR` changes it at step STEP (two phases: e.g. the motion with the module frozen, then the colour).
`--token-norm N` rescales every RoI token to norm N before it is spliced in (is the tokens' size what drowns
the box?); `--zero-video` replaces every clip feature with zeros (are the video tokens a shortcut or a
distraction?). Both are diagnostics, not settings. `--train` trains on another sample (`data make-sample ...
--motion classes`, features extracted with RUN's tower), read lazily. `--probe` trains nothing: it fits a linear
classifier of the motion on the untrained RoI tokens of the training records and scores it on the held-out ones
(is the motion in the tokens at all?).
Results: benchmarks/RESULTS.md, "learn".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--train", type=Path, help="training sample (default RUN/data/train)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--roi-lr", type=float)
    parser.add_argument("--roi-lr-from", metavar="STEP:LR", help="from step STEP on, the RoI module's learning rate "
                        "is LR (a second phase: e.g. frozen with --roi-lr 0, then trained)")
    parser.add_argument("--held", type=int, default=48, help="held-out records scored (default 48)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--token-norm", type=float, help="rescale each RoI token to this norm (a diagnostic)")
    parser.add_argument("--zero-video", action="store_true", help="zero every clip feature (a diagnostic)")
    parser.add_argument("--json", type=Path, help="write the printed rows as JSON here")
    args = parser.parse_args(argv)

    import torch

    from artemis_cli.data.records import ReferringRecord
    from artemis_cli.data.synthetic_video import COLOURS, MOTIONS
    from artemis_cli.demo.learn import read_caption
    from artemis_cli.model.inputs import referring_inputs
    from artemis_cli.train.collator import Collator
    from artemis_cli.train.config import load_train_config
    from artemis_cli.train.model_setup import build_stage_model, inner_model

    torch.manual_seed(args.seed)
    config = load_train_config(3, args.run / "configs" / "stage3.yaml", args.overrides)
    built = build_stage_model(config, device="cpu", dtype=torch.float32, upcast_trainable=False)
    model, tokenizer = built.model, built.tokenizer
    inner = inner_model(model)
    tower, roi = inner.get_image_tower(), inner.get_roi_module()
    mm = inner.mm
    num_boxes = mm.tracked_roi_tokens(config.data.num_tracked)

    cache: dict[str, list] = {}
    encode = tower.multilevel_features

    def cached_levels(frames):  # the tower is frozen in stage 3: its per-frame outputs never change
        keys = [hashlib.sha1(frame.numpy().tobytes()).hexdigest() for frame in frames]
        missing = [i for i, key in enumerate(keys) if key not in cache]
        if missing:
            with torch.no_grad():
                levels = encode(frames[missing])
            for row, i in enumerate(missing):
                cache[keys[i]] = [level[row] for level in levels]
        return [torch.stack([cache[key][level] for key in keys]) for level in range(len(cache[keys[0]]))]

    tower.multilevel_features = cached_levels
    if args.token_norm:
        def rescale(module, inputs, output):
            return output * (args.token_norm / output.norm(dim=-1, keepdim=True).clamp_min(1e-6))

        roi.register_forward_hook(rescale)

    class Records:
        def __init__(self, sample: Path, limit: int | None = None):
            self.root = sample / "DATA_ROOT" / "Artemis_data"
            path = sample / "annotations" / "stage3" / "hc_stvg_train.json"
            self.records = json.loads(path.read_text(encoding="utf-8"))[:limit]

        def __len__(self) -> int:
            return len(self.records)

        def __getitem__(self, index: int):
            record = ReferringRecord.model_validate(self.records[index])
            item = referring_inputs(record, clip=self.root / record.clip_path, frame_dir=self.root / record.frame_path,
                                    tokenizer=tokenizer, image_processor=built.image_processor,
                                    rng=random.Random(index), train=True, num_boxes=num_boxes,
                                    num_tracked=config.data.num_tracked, template="vicuna_v1",
                                    feature_width=mm.mm_hidden_size)
            if args.zero_video:
                item.media = [torch.zeros_like(feature) for feature in item.media]
            return item

    train = Records(args.train or args.run / "data" / "train")
    held_records = Records(args.run / "data" / "held_out", args.held)
    held = [held_records[i] for i in range(len(held_records))]
    collator = Collator(tokenizer.pad_token_id, config.model.max_length)

    def collate(items):
        batch = collator(items)
        batch.pop("bad_records", None)
        batch.pop("num_tokens", None)
        return batch

    if args.probe:
        return probe(inner, train, held, tokenizer, read_caption, list(MOTIONS))

    def held_out_accuracy() -> tuple[float, float]:
        model.eval()
        colour_right = motion_right = 0
        with torch.no_grad():
            for start in range(0, len(held), 8):
                batch = collate(held[start:start + 8])
                spliced = inner.prepare_multimodal_inputs(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                                          batch["media"], batch["roi_frames"], batch["roi_boxes"],
                                                          batch.get("roi_seeds"))
                logits = model(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask,
                               position_ids=spliced.position_ids).logits
                predicted, labels = logits[:, :-1].argmax(-1), spliced.labels[:, 1:]
                for row in range(labels.shape[0]):
                    positions = (labels[row] != -100).nonzero().flatten().tolist()
                    words = [tokenizer.decode([int(labels[row, p])]).strip() for p in positions]
                    right = [bool(predicted[row, p] == labels[row, p]) for p in positions]
                    colour = next(i for i, word in enumerate(words) if word in COLOURS)
                    colour_right += right[colour]
                    motion_right += all(right[words.index("moves") + 1:words.index("across")])
        model.train()
        return colour_right / len(held), motion_right / len(held)

    params = [p for p in model.parameters() if p.requires_grad]
    roi_ids = {id(p) for p in roi.parameters()}
    roi_lr = config.train.lr if args.roi_lr is None else args.roi_lr
    optimizer = torch.optim.AdamW([
        {"params": [p for p in params if id(p) not in roi_ids], "lr": config.train.lr},
        {"params": [p for p in params if id(p) in roi_ids], "lr": roi_lr},
    ], weight_decay=config.train.weight_decay)
    if roi_lr == 0:
        for p in roi.parameters():
            p.requires_grad_(False)
    batch_size = config.train.batch_size
    order, rng, losses, rows = list(range(len(train))), random.Random(args.seed), [], []
    started = time.perf_counter()
    model.train()
    switch = tuple(float(v) for v in args.roi_lr_from.split(":")) if args.roi_lr_from else None
    for step in range(args.steps):
        if switch is not None and step == int(switch[0]):
            optimizer.param_groups[1]["lr"] = switch[1]
            for p in roi.parameters():
                p.requires_grad_(switch[1] > 0)
        if step % max(1, len(order) // batch_size) == 0:
            rng.shuffle(order)
        batch = collate([train[order[(step * batch_size + j) % len(order)]] for j in range(batch_size)])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if (step + 1) % args.every == 0:
            with torch.no_grad():
                item = held[0]
                tokens = roi(cached_levels(item.roi_frames), item.roi_boxes, tower.config.image_size)
                box_norm = roi.roi_align.pos_embedd(item.roi_boxes).norm(dim=1).mean().item()
                unit = torch.nn.functional.normalize(tokens, dim=1)
            colour, motion = held_out_accuracy()
            row = {"step": step + 1, "loss": round(sum(losses[-args.every:]) / args.every, 4),
                   "seconds": round(time.perf_counter() - started), "first_last_cosine": round((unit[1] @ unit[-1]).item(), 4),
                   "roi_norm": round(tokens.norm(dim=1).mean().item(), 1), "box_embedding_norm": round(box_norm, 1),
                   "held_colour": round(colour, 3), "held_motion": round(motion, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "overrides": args.overrides, "roi_lr": roi_lr,
                                         "rows": rows}, indent=1), encoding="utf-8")
    return 0


def probe(inner, train, held, tokenizer, read_caption, motions: list[str]) -> int:
    """Fit a linear motion classifier on the untrained RoI tokens (key + tracked, concatenated)."""
    import torch

    def features(items):
        xs, ys = [], []
        with torch.no_grad():
            for start in range(0, len(items), 16):
                chunk = [items[i] for i in range(start, min(start + 16, len(items)))]
                tokens = inner.encode_rois([c.roi_frames for c in chunk], [c.roi_boxes for c in chunk], len(chunk),
                                           [c.roi_seed for c in chunk])
                for item, token in zip(chunk, tokens):
                    xs.append(token.flatten())
                    caption = tokenizer.decode([i for i in list(item.labels) if i != -100])
                    ys.append(motions.index(read_caption(caption)[1]))
        return torch.stack(xs), torch.tensor(ys)

    x_train, y_train = features(train)
    x_held, y_held = features(held)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_held = (x_train - mean) / std, (x_held - mean) / std
    torch.manual_seed(0)
    linear = torch.nn.Linear(x_train.shape[1], len(motions))
    optimizer = torch.optim.Adam(linear.parameters(), 1e-2, weight_decay=1e-3)
    for _ in range(2000):
        loss = torch.nn.functional.cross_entropy(linear(x_train), y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        train_accuracy = (linear(x_train).argmax(1) == y_train).float().mean().item()
        held_accuracy = (linear(x_held).argmax(1) == y_held).float().mean().item()
    print(json.dumps({"probe": "motion from the untrained RoI tokens", "train": round(train_accuracy, 3),
                      "held_out": round(held_accuracy, 3), "records": [len(y_train), len(y_held)]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
