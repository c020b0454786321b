"""Own-video benchmarks (issue 23): track integrity on real footage with hand labels, memory against the
video's length, and the time to a first and a second answer.

    python benchmarks/ownvideo.py footage --footage DIR --labels DIR [--trackers csrt,kcf]
    python benchmarks/ownvideo.py scenarios
    python benchmarks/ownvideo.py memory --short clip30.mp4 --long clip600.mp4 --box X1,Y1,X2,Y2 --model M
    python benchmarks/ownvideo.py latency --video clip60.mp4 --box X1,Y1,X2,Y2 --model M

`footage`: each labels file (JSON: {"video", "every", "boxes": {frame: [x1, y1, x2, y2] or null}}, kept
outside the repository, as the footage is) is tracked from one key box (the first labelled box) and from
three (first, middle and last labelled boxes), with the guard and, for comparison, with raw CSRT (no
guard). Over the labelled frames: a reported box on the wrong object (the target is not visible there,
or the box overlaps its label by IoU < 0.3) is "wrong"; a box with IoU >= 0.3 on a visible target is
"covered". `--stride 1` (the default here) tracks every frame; `--stride auto` the product's default rate
(`tracking.resolve_stride`), where a labelled frame that is not tracked takes the box of the nearest
tracked frame (what a reader of the track would take). Long videos for `memory` / `latency` come from
`data.synthetic_tracking.write_long_video`.
Every command prints one JSON document and writes it under benchmarks/results/ with `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from artemis_cli.data.synthetic_tracking import box_iou


def _load(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["boxes"] = {int(k): v for k, v in data["boxes"].items()}
    return data


def _score(boxes_by_frame: dict, labels: dict) -> dict:
    wrong = covered = visible = reported = 0
    for frame, label in labels.items():
        box = boxes_by_frame.get(frame)
        visible += label is not None
        if box is None:
            continue
        reported += 1
        if label is not None and box_iou(box, label) >= 0.3:
            covered += 1
        else:
            wrong += 1
    return {"labelled": len(labels), "visible": visible, "reported": reported, "wrong": wrong, "covered": covered,
            "wrong_rate": round(wrong / len(labels), 4), "coverage": round(covered / visible, 4) if visible else None}


def _raw_csrt(path: Path, key: int, box) -> dict:
    """Plain CSRT, forward and backward from the key frame, no guard: the old behaviour."""
    import cv2

    from artemis_cli.ownvideo.trackers import OpenCVTracker
    from artemis_cli.ownvideo.video import DecodeReport, iter_frames, probe

    frames = [frame.bgr() for frame in iter_frames(probe(path), DecodeReport())]
    out = {key: list(box)}
    for order in (range(key + 1, len(frames)), range(key - 1, -1, -1)):
        tracker = OpenCVTracker("csrt")
        tracker.start(frames[key], box)
        for index in order:
            out[index] = tracker.propose(frames[index])
    del frames, cv2
    return out


def _nearest(indices: list, boxes: list, frames) -> dict:
    """frame -> the box of the tracked frame nearest to it (the earlier on a tie)."""
    import bisect

    out = {}
    for frame in frames:
        at = bisect.bisect_left(indices, frame)
        nearest = min((j for j in (at - 1, at) if 0 <= j < len(indices)), key=lambda j: (abs(indices[j] - frame), j))
        out[frame] = boxes[nearest]
    return out


def footage(args) -> dict:
    from artemis_cli.ownvideo.tracking import KeyBox, resolve_stride, track_video_keys
    from artemis_cli.ownvideo.video import probe

    results = []
    for labels_file in sorted(Path(args.labels).glob("*.json")):
        data = _load(labels_file)
        path = Path(args.footage) / data["video"]
        visible = [f for f, b in sorted(data["boxes"].items()) if b is not None]
        key_sets = {"one key box": [visible[0]], "three key boxes": [visible[0], visible[len(visible) // 2], visible[-1]]}
        for tracker in args.trackers.split(","):
            for name, frames in key_sets.items():
                began = time.perf_counter()
                info = probe(path)
                stride = resolve_stride(None if args.stride == "auto" else int(args.stride), info.fps)
                result = track_video_keys(info, [KeyBox(f, tuple(data["boxes"][f])) for f in frames],
                                          tracker=tracker, stride=stride)
                labels = {f: b for f, b in data["boxes"].items() if f not in frames}
                score = _score(_nearest(result.indices, result.boxes, labels), labels)
                results.append({"video": data["video"], "tracker": tracker, "keys": name, "stride": stride, **score,
                                "seconds": round(time.perf_counter() - began, 1), "quality": result.quality()})
        raw = _raw_csrt(path, visible[0], data["boxes"][visible[0]])
        results.append({"video": data["video"], "tracker": "csrt without the guard", "keys": "one key box",
                        **_score(raw, {f: b for f, b in data["boxes"].items() if f != visible[0]})})
    totals = {}
    for row in results:
        group = totals.setdefault(f"{row['tracker']} / {row['keys']}", {"labelled": 0, "visible": 0, "wrong": 0,
                                                                          "covered": 0})
        for k in group:
            group[k] += row[k]
    for group in totals.values():
        group["wrong_rate"] = round(group["wrong"] / group["labelled"], 4)
        group["coverage"] = round(group["covered"] / group["visible"], 4)
    return {"videos": results, "totals": totals}


def scenarios(args) -> dict:
    from artemis_cli.data.synthetic_tracking import SCENARIOS, make_scenario, track_errors
    from artemis_cli.ownvideo.tracking import KeyBox, track_frames

    rows = []
    for name in SCENARIOS:
        video = make_scenario(name, seed=0, n_frames=60)
        target = video.objects["target"]
        for tracker in ("csrt", "kcf"):
            began = time.perf_counter()
            result = track_frames(list(video.frames), [KeyBox(0, tuple(target.boxes[0]))], tracker=tracker)
            rows.append({"scenario": name, "tracker": tracker, **track_errors(result.boxes, target),
                         "seconds": round(time.perf_counter() - began, 2)})
    return {"scenarios": rows}


def _run_ask(video: str, box: str, model: str, cache: Path) -> dict:
    """`artemis ask --json` in a process of its own: its answer timings and its peak memory."""
    script = ("import json, resource, runpy, sys\n"
              "sys.argv = ['artemis'] + sys.argv[1:]\n"
              "try:\n    runpy.run_module('artemis_cli', run_name='__main__')\n"
              "except SystemExit as exc:\n    code = exc.code\n"
              "print(json.dumps({'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),"
              " file=sys.stderr)\n")
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, "ask", video, "--box", box, "--model", model, "--device", "cpu",
                           "--cache-dir", str(cache), "--max-new-tokens", "16", "--json"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"ask failed: {done.stderr[-2000:]}")
    doc = json.loads(done.stdout)
    peak = json.loads(done.stderr.strip().splitlines()[-1])["peak_rss_mb"]
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak), "timings": doc["timings"], "quality": doc["quality"]}


def memory(args) -> dict:
    import shutil
    import tempfile

    out = {}
    for name in ("short", "long"):
        cache = Path(tempfile.mkdtemp(prefix="artemis-bench-"))
        try:
            out[name] = {"video": getattr(args, name), **_run_ask(getattr(args, name), args.box, args.model, cache)}
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    out["ratio_long_to_short"] = round(out["long"]["peak_rss_mb"] / out["short"]["peak_rss_mb"], 3)
    return out


def latency(args) -> dict:
    import shutil
    import tempfile

    from artemis_cli.model.generation import DecodingSettings

    cache = Path(tempfile.mkdtemp(prefix="artemis-bench-"))
    try:
        first = _run_ask(args.video, args.box, args.model, cache)
        from artemis_cli.ownvideo.prepare import Target
        from artemis_cli.ownvideo.referrer import Referrer
        from artemis_cli.ownvideo.video import parse_box

        referrer = Referrer(args.model, device="cpu", cache_dir=cache)
        target = Target(Path(args.video), parse_box(args.box), 0)
        decoding = DecodingSettings(max_new_tokens=16)
        referrer.ask(referrer.prepare(target), decoding=decoding)  # this process's first (cache hits)
        began = time.perf_counter()
        referrer.ask(referrer.prepare(target), "Where does the <bbox> go?", decoding=decoding)
        second = time.perf_counter() - began
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"first_answer": first, "second_answer_s": round(second, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("footage")
    p.add_argument("--footage", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--trackers", default="csrt,kcf")
    p.add_argument("--stride", default="1", help="1 (every frame), K, or auto (the product's default rate)")
    sub.add_parser("scenarios")
    p = sub.add_parser("memory")
    p.add_argument("--short", required=True)
    p.add_argument("--long", required=True)
    p.add_argument("--box", required=True)
    p.add_argument("--model", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--video", required=True)
    p.add_argument("--box", required=True)
    p.add_argument("--model", required=True)
    for p in sub.choices.values():
        p.add_argument("--out", help="also write the JSON here (e.g. benchmarks/results/ownvideo_footage.json)")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    result = {"footage": footage, "scenarios": scenarios, "memory": memory, "latency": latency}[args.command](args)
    doc = {"benchmark": f"ownvideo {args.command}", "date": started, "machine": platform.platform(),
           "cpus": os.cpu_count(), "load_before": [round(v, 2) for v in load],
           "load_after": [round(v, 2) for v in os.getloadavg()], **result}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
