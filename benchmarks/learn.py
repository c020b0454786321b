"""Does the toy Artemis learn? Train it from scratch and/or evaluate a model on fresh held-out videos.

Held-out videos have two boxes of different colours and motions; each box is asked about in turn (box on A,
then on B) through the benchmark path, then the same questions with the box moved onto empty background and
with the model's RoI tokens zeroed (`artemis_cli.demo.learn`). Prints the table and, with --train, the time of
every step of `artemis model train-toy` with the machine, the date and the load before and after.

    python benchmarks/learn.py                        # the shipped toy model (--model toy) on 25 videos
    python benchmarks/learn.py --train /tmp/toy-run   # train-toy from scratch (timed), then its table
    python benchmarks/learn.py --model /tmp/toy-run/model --videos 50 --json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def machine() -> dict:
    import torch

    return {"date": datetime.datetime.now().isoformat(timespec="minutes"), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy", help="model to evaluate (default: the shipped toy model)")
    parser.add_argument("--train", type=Path, help="run `artemis model train-toy` into this folder first (timed)")
    parser.add_argument("--videos", type=int, default=25, help="held-out videos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from artemis_cli.cli.toy_report import print_learn_table

    result: dict = {"machine_before": machine()}
    if args.train is not None:
        from artemis_cli.demo.toy import ToyOptions, train_toy

        started = time.perf_counter()
        toy = train_toy(ToyOptions(out=args.train, seed=args.seed, held_out=args.videos, show_progress=False),
                        log=lambda line: print(line, file=sys.stderr, flush=True))
        result.update(train_seconds=round(time.perf_counter() - started, 1), steps=toy.steps, learn=toy.learn)
    else:
        from artemis_cli.common.hub import resolve_model_folder
        from artemis_cli.demo.toy import evaluate_model, held_out_sample

        folder = resolve_model_folder(args.model, option="--model")
        with tempfile.TemporaryDirectory() as scratch:
            sample = held_out_sample(Path(scratch) / "held_out", seed=args.seed, videos=args.videos,
                                     clip=folder / "clip")
            result["learn"] = evaluate_model(folder, sample).to_json()
    result["machine_after"] = machine()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_learn_table(result["learn"])
        for step in result.get("steps", []):
            print(f"{step['title']:<40} {step['seconds']:>7.1f} s  {step['detail']}")
        if "train_seconds" in result:
            print(f"train-toy: {result['train_seconds'] / 60:.1f} min")
        print(f"machine: {result['machine_before']} -> load after {result['machine_after']['load']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
