"""`artemis data ...`: make the sample dataset and verify a DATA_ROOT and its annotations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from artemis_cli.cli.options import JsonFlag

app = typer.Typer(help="Check a DATA_ROOT and its annotations; write the bundled sample dataset.", no_args_is_help=True)

STAGES = ("1", "2", "3", "all", "none")


@app.command("make-sample")
def make_sample_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write DATA_ROOT/ and annotations/ into.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes identical files.")] = 0,
    videos: Annotated[int, typer.Option(min=2, help="HC-STVG sample videos (the last one is the VideoRefBench split).")] = 2,
    feature_dim: Annotated[int, typer.Option("--feature-dim", min=1, help="Feature width C of the [356, C] feature files (1024 for CLIP ViT-L/14).")] = 1024,
    targets: Annotated[int, typer.Option(min=1, max=4, help="Moving boxes per HC-STVG video (one referring record each).")] = 2,
    motion: Annotated[Literal["free", "classes"], typer.Option("--motion", help="free: boxes go from one random place to another; classes: each box of a video has its own colour and its own of the nine caption motions, and stage 2 gets descriptions of the videos (the toy recipe's data).")] = "free",
    size: Annotated[str, typer.Option("--size", metavar="WxH", help="Frame size of the HC-STVG videos, e.g. 112x112 (square frames keep boxes where CLIP's centre crop sees them).")] = "96x64",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the DATA_ROOT/ and annotations/ an earlier make-sample wrote in OUT (nothing else).")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Write a tiny, complete, deterministic sample DATA_ROOT and annotations of every record kind.

    Example: artemis data make-sample artemis-sample
    (the toy recipe's training data: --videos 200 --targets 2 --motion classes --size 112x112 --feature-dim 64)"""
    from artemis_cli.common.console import print_json, stderr
    from artemis_cli.common.paths import check_output
    from artemis_cli.data.sample import make_sample, parse_size

    check_output(out, kind="dir", option="OUT")

    summary = make_sample(out, seed=seed, videos=videos, feature_dim=feature_dim, overwrite=overwrite, targets=targets,
                          motion=motion, size=parse_size(size))
    next_cmd = f"artemis data verify-layout {summary.data_root} --annotations {summary.annotations} --check-features"
    if json_out:
        print_json({"files": summary.files, "bytes": summary.bytes, **summary.written, "next": next_cmd})
        return
    stderr.print(f"wrote {summary.files} files ({summary.bytes / 1e6:.1f} MB) to {summary.out}")
    stderr.print(f"next: {next_cmd}", soft_wrap=True)


@app.command("verify-layout")
def verify_layout_cmd(
    data_root: Annotated[Path, typer.Argument(metavar="DATA_ROOT", exists=True, help="The DATA_ROOT folder (llava_image, valley, Artemis_data, ...).")],
    annotations: Annotated[Optional[Path], typer.Option("--annotations", exists=True, metavar="PATH", help="Folder (searched recursively) or file of annotation JSON to validate.")] = None,
    stage: Annotated[Literal["1", "2", "3", "all", "none"], typer.Option("--stage", help="Which stage's folders must be present (none: only the annotations and the files they name, e.g. a `data build-referring` dataset).")] = "all",
    check_features: Annotated[bool, typer.Option("--check-features", help="Load every feature file (safely) and check [356, C] float16 with one C.")] = False,
    max_problems: Annotated[int, typer.Option(min=0, help="List at most N problems (0: all); counts always cover all.")] = 100,
    json_out: JsonFlag = False,
) -> None:
    """Check a DATA_ROOT layout, every annotation record and its file references. Exit 1 on any error.

    Example: artemis data verify-layout /data/DATA_ROOT --annotations /data/annotations --check-features"""
    from artemis_cli.data.verify import verify_layout
    from artemis_cli.cli.data_report import print_report
    from artemis_cli.errors import UsageError

    if stage not in STAGES:
        raise UsageError(f"--stage {stage!r}: expected one of {', '.join(STAGES)}")
    report = verify_layout(data_root, annotations, stage=stage, check_features=check_features, show_progress=not json_out)
    if json_out:
        from artemis_cli.common.console import print_json

        print_json(report.to_json(max_problems))
    else:
        print_report(report, max_problems)
    raise typer.Exit(0 if report.ok else 1)
