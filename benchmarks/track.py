"""Tracker accuracy and speed on generated videos with known boxes (`artemis_cli.data.synthetic_tracking`).

Each video has a *walker* (grows by half while crossing the frame, passes behind an occluder) and a
*leaver* (drifts out of the right edge and stays out). For every tracker and video this tracks the
walker from its middle frame (forward and backward) and the leaver from frame 0, exactly as `artemis
track` does (`ownvideo.tracking.track_boxes`), and reports:

- mean IoU over the frames where the object is visible (a lost visible frame counts 0),
- the share of frames where the object is gone that were marked `[]`,
- frames per second of tracking alone (decoding excluded; both directions counted), wall clock and
  per CPU-second of this process (the second is far less sensitive to other load on a shared box; with
  OpenCV's threads a quiet machine's wall rate lies between it and cores x it).

    python benchmarks/track.py                                   # CSRT + KCF at 640x360, 5 videos
    python benchmarks/track.py --trackers csrt --size 1280x720 --frames 120
    python benchmarks/track.py --trackers sam2 --tracker-model facebook/sam2.1-hiera-tiny --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(tracker: str, videos, sam2=None) -> dict:
    from artemis_cli.data.synthetic_tracking import box_iou
    from artemis_cli.ownvideo.tracking import track_boxes

    ious, gone_marked, gone_total, frames, seconds, cpu = [], 0, 0, 0, 0.0, 0.0
    for video in videos:
        for name, key in (("walker", len(video.frames) // 2), ("leaver", 0)):
            truth = video.objects[name].boxes
            start, start_cpu = time.perf_counter(), time.process_time()
            boxes = track_boxes(list(video.frames), key, truth[key], tracker=tracker, sam2=sam2)
            seconds += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            frames += len(video.frames) - 1
            for box, true in zip(boxes, truth):
                if true is None:
                    gone_total += 1
                    gone_marked += box is None
                else:
                    ious.append(box_iou(box, true) if box is not None else 0.0)
    return {"tracker": tracker, "mean_iou_visible": round(statistics.mean(ious), 4),
            "gone_marked_empty": round(gone_marked / gone_total, 4) if gone_total else None,
            "frames_per_s": round(frames / seconds, 1), "frames_per_cpu_s": round(frames / cpu, 1), "frames": frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackers", default="csrt,kcf")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--videos", type=int, default=5)
    parser.add_argument("--tracker-model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from artemis_cli.data.synthetic_tracking import make_tracking_video

    width, height = (int(v) for v in args.size.lower().split("x"))
    videos = [make_tracking_video(seed=seed, n_frames=args.frames, width=width, height=height)
              for seed in range(args.videos)]
    results = []
    for tracker in args.trackers.split(","):
        sam2 = None
        if tracker == "sam2":
            from artemis_cli.ownvideo.track import sam2_for

            sam2 = sam2_for("sam2", args.tracker_model, args.device)
        results.append(run(tracker, videos, sam2))
    import cv2

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info = {"size": args.size, "cpus": os.cpu_count(), "load_average_1min": load, "frames_per_video": args.frames, "videos": args.videos,
            "cpu_threads": cv2.getNumThreads(), "machine": platform.processor() or platform.machine(),
            "opencv": cv2.__version__, "results": results}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{args.videos} videos x {args.frames} frames at {args.size}, OpenCV {cv2.__version__}, "
          f"{cv2.getNumThreads()} threads, {os.cpu_count()} CPUs, load average {load}")
    print(f"{'tracker':8} {'mean IoU (visible)':>19} {'gone -> []':>11} {'frames/s':>9} {'frames/CPU-s':>13}")
    for row in results:
        gone = "-" if row["gone_marked_empty"] is None else f"{row['gone_marked_empty']:.0%}"
        print(f"{row['tracker']:8} {row['mean_iou_visible']:>19.3f} {gone:>11} {row['frames_per_s']:>9.1f} "
              f"{row['frames_per_cpu_s']:>13.1f}")


if __name__ == "__main__":
    main()
