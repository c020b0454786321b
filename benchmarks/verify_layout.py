"""Speed of `artemis data verify-layout` on a deep stage-3 check: 100k referring records.

Builds (once, in --workdir) a DATA_ROOT with --clips frame folders and clip feature files, and one
annotation file of --records stage-3 records (each --frames frames with a box per frame, as
VideoRef45K records are), then times the full check of every record and every file reference, in
this process. With --naive it also times the same reference checks done with one `os.path.exists`
per file, which is what the listing cache replaces.

    python benchmarks/verify_layout.py --workdir /tmp/vl_bench            # build + time
    artemis data verify-layout /tmp/vl_bench/DATA_ROOT --annotations /tmp/vl_bench/annotations --stage 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def build(workdir: Path, records: int, clips: int, frames: int) -> None:
    from artemis_cli.data.feature_files import save_feature
    from artemis_cli.data.layout import SOURCES

    root = workdir / "DATA_ROOT"
    marker = workdir / f"built-{records}-{clips}-{frames}"
    if marker.exists():
        return
    for source in SOURCES:  # every stage-3 folder present and non-empty
        (root / source.path).mkdir(parents=True, exist_ok=True)
        (root / source.path / "README").write_text("bench")
    feature = np.zeros((356, 8), np.float16)
    names = [f"{i:05d}.jpg" for i in range(1, frames + 1)]
    for c in range(clips):
        folder = root / "Artemis_data/HC-STVG/frames" / f"clip{c:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / name).touch()
        save_feature(root / "Artemis_data/HC-STVG/clip_feature" / f"clip{c:05d}.pkl", feature)
    rng = np.random.default_rng(0)
    out = []
    for r in range(records):
        c = r % clips
        x = rng.integers(0, 200, size=(frames, 2))
        track = [[int(a), int(b), int(a) + 40, int(b) + 60] for a, b in x]
        track[frames // 2] = []
        out.append({
            "clip_path": f"HC-STVG/clip_feature/clip{c:05d}.pkl", "caption": "The man walks to the door.",
            "question": "What is the <bbox> doing?", "frame_path": f"HC-STVG/frames/clip{c:05d}",
            "frame_id": names, "track_list": track, "key_frame_id": names[0], "key_frame_box": track[0],
        })
    (workdir / "annotations").mkdir(parents=True, exist_ok=True)
    (workdir / "annotations" / "stage3.json").write_text(json.dumps(out))
    marker.touch()


def naive_reference_check(workdir: Path) -> int:
    """The same references, one `os.path.exists` per file (what the listing cache replaces)."""
    base = workdir / "DATA_ROOT" / "Artemis_data"
    missing = 0
    for record in json.loads((workdir / "annotations" / "stage3.json").read_text()):
        missing += not os.path.exists(base / record["clip_path"])
        folder = base / record["frame_path"]
        missing += sum(not os.path.exists(folder / name) for name in record["frame_id"])
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/artemis_verify_bench"))
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--clips", type=int, default=2_000)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--naive", action="store_true", help="also time one os.path.exists per reference")
    args = parser.parse_args()

    t0 = time.perf_counter()
    build(args.workdir, args.records, args.clips, args.frames)
    print(f"data ready in {time.perf_counter() - t0:.1f} s: {args.records} records x {args.frames} frames, {args.clips} clips")

    from artemis_cli.data.verify import verify_layout

    t0 = time.perf_counter()
    report = verify_layout(args.workdir / "DATA_ROOT", args.workdir / "annotations", stage="3")
    elapsed = time.perf_counter() - t0
    assert report.ok, report.problems[:5]
    refs = args.records * (args.frames + 2)
    print(f"verify_layout: {elapsed:.2f} s for {report.counts['records']} records, {refs} file references "
          f"({report.counts['records'] / elapsed:,.0f} records/s)")
    if args.naive:
        t0 = time.perf_counter()
        missing = naive_reference_check(args.workdir)
        naive = time.perf_counter() - t0
        print(f"naive os.path.exists reference check alone: {naive:.2f} s (missing={missing})")


if __name__ == "__main__":
    main()
