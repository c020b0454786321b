"""Speed of `artemis score` against calling pycocoevalcap directly, on --pairs prediction records.

Writes (once, in --workdir) a JSON Lines file of synthetic VideoRefBench predictions (unique ids,
nearly all within the length filter), then runs, in turn, whole processes of

    A: python -m artemis_cli score FILE --json          (all metrics; SPICE reports unavailable)
    B: python benchmarks/score.py direct FILE           (the same pairs straight through pycocoevalcap:
                                                         PTB tokenizer, Bleu(4), Meteor, Rouge, Cider)

and prints each one's median wall time and the median of the pairwise ratios A/B. It also checks
that both print identical metric values. Goal: ratio <= 1.1.

    python benchmarks/score.py --pairs 5000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_predictions(workdir: Path, pairs: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from artemis_cli.metrics.synthetic import make_prediction_records

    path = workdir / f"predictions-{pairs}.jsonl"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        records = make_prediction_records(pairs, seed=0, edge_cases=False)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def direct(path: Path) -> None:
    """The published scorer's steps with pycocoevalcap, nothing else; prints the metrics as JSON."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    anno = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        anno[record["video_name"]] = record
    names = sorted((n for n, r in anno.items() if 5 < len(r["pred"]) < 300), key=lambda n: n[:-4])
    gts = {i: [{"caption": anno[n]["groundtruth"]}] for i, n in enumerate(names)}
    res = {i: [{"caption": anno[n]["pred"]}] for i, n in enumerate(names)}
    tokenizer = PTBTokenizer()
    gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    metrics = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    metrics.update({f"Bleu_{k + 1}": bleu[k] for k in range(4)})
    for scorer, name in [(Meteor(), "METEOR"), (Rouge(), "ROUGE_L"), (Cider(), "CIDEr")]:
        metrics[name] = float(scorer.compute_score(gts, res)[0])
    print(json.dumps({"n_scored": len(names), "metrics": metrics}))


def timed(command: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["compare", "direct"], default="compare")
    parser.add_argument("file", nargs="?", type=Path, help="predictions (direct mode)")
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/artemis_score_bench"))
    args = parser.parse_args()
    if args.mode == "direct":
        direct(args.file)
        return

    path = write_predictions(args.workdir, args.pairs)
    ours_cmd = [sys.executable, "-m", "artemis_cli", "score", str(path), "--json"]
    direct_cmd = [sys.executable, str(Path(__file__).resolve()), "direct", str(path)]
    ours_times, direct_times = [], []
    for run in range(args.runs):
        ours_time, ours = timed(ours_cmd)
        direct_time, reference = timed(direct_cmd)
        ours_times.append(ours_time)
        direct_times.append(direct_time)
        same = all(ours["metrics"][k] == v for k, v in reference["metrics"].items())
        print(f"run {run + 1}: artemis score {ours_time:.2f} s, pycocoevalcap {direct_time:.2f} s, "
              f"ratio {ours_time / direct_time:.3f}, identical metrics: {same}", flush=True)
        if not same or ours["n_scored"] != reference["n_scored"]:
            sys.exit(f"metric values differ:\n{ours['metrics']}\n{reference['metrics']}")
    ratios = [a / b for a, b in zip(ours_times, direct_times)]
    print(f"{args.pairs} pairs, {args.runs} runs: artemis score median {statistics.median(ours_times):.2f} s, "
          f"pycocoevalcap median {statistics.median(direct_times):.2f} s, "
          f"ratio median {statistics.median(ratios):.3f} (goal <= 1.1)")


if __name__ == "__main__":
    main()
