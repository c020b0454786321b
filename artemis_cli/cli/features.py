"""`artemis features ...`: extract per-video CLIP features with the published recipe; inspect feature files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from artemis_cli.cli.options import Device, Dtype, JsonFlag, NumShards, Overwrite, ShardIndex

app = typer.Typer(help="Extract per-video CLIP features (the published recipe) and inspect feature files.",
                  no_args_is_help=True)


@app.command("extract")
def extract_cmd(
    input: Annotated[Path, typer.Argument(metavar="INPUT", exists=True, file_okay=False, help="Folder of videos (.mp4 .mkv .webm .avi .mov), or of frame folders with --frames.")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Folder for <name>.pkl files, failures.jsonl and manifest.json.")],
    frames: Annotated[bool, typer.Option("--frames", help="INPUT holds one folder of frame images per video (sorted numerically).")] = False,
    model: Annotated[Optional[str], typer.Option(help="HF id or folder (hf; default openai/clip-vit-large-patch14), or ARCH:TAG, ARCH:/ckpt, hf-hub:..., local-dir:... (open_clip; default ViT-L-14-quickgelu:openai).")] = None,
    backend: Annotated[Literal["hf", "open_clip"], typer.Option("--backend", help="hf: transformers CLIPVisionModel; open_clip: open_clip's tower.")] = "hf",
    num_frames: Annotated[int, typer.Option("--num-frames", min=1, help="Frames sampled per video; shorter videos are zero-padded.")] = 100,
    resize: Annotated[Literal["nearest", "center-crop"], typer.Option("--resize", help="nearest: squash frames to 224x224 by nearest-neighbour, the published quirk the released weights were trained with; center-crop: keep the aspect ratio (bicubic shorter side + centre crop).")] = "nearest",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Frames per forward pass, across videos (default 256 on CUDA, 32 on CPU).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decode worker processes; 0 decodes in the main process (default: CPUs-1 up to 12 with CUDA, CPUs/4 on CPU).")] = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    fmt: Annotated[Literal["pkl", "npy", "safetensors"], typer.Option("--format", help="pkl is the published format.")] = "pkl",
    num_shards: NumShards = None,
    shard_index: ShardIndex = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", exists=True, dir_okay=False, metavar="FILE", help="Only the videos named in this file (one file or output name per line).")] = None,
    overwrite: Overwrite = False,
    json_out: JsonFlag = False,
) -> None:
    """Write one [100 + P, C] float16 feature file per video. Reruns resume; exit 1 if any video failed.

    Example: artemis features extract /data/eval/MSVD_Zero_Shot_QA/videos /data/eval/MSVD_Zero_Shot_QA/clip_feature"""
    from artemis_cli.cli.options import name_options
    from artemis_cli.common.config import load_config
    from artemis_cli.common.paths import check_output
    from artemis_cli.errors import ConfigError
    from artemis_cli.features.extract import ExtractConfig, extract_features
    from artemis_cli.cli.features_report import print_extract_summary

    check_output(output, kind="dir", option="OUTPUT", inputs={"INPUT": input, "--list": list_file})
    base = dict(input=input, output=output, frames=frames, model=model, backend=backend, num_frames=num_frames,
                resize=resize, batch_size=batch_size, workers=workers, device=device, dtype=dtype, format=fmt,
                num_shards=num_shards, shard_index=shard_index, list_file=list_file, overwrite=overwrite)
    try:
        config = load_config(ExtractConfig, base=base)
    except ConfigError as exc:
        flags = {name: f"--{name.replace('_', '-')}" for name in base} | {"list_file": "--list",
                                                                          "input": "INPUT", "output": "OUTPUT"}
        raise ConfigError("features extract options", name_options(exc.problems, flags)) from None
    summary = extract_features(config, show_progress=not json_out)
    if json_out:
        from artemis_cli.common.console import print_json

        print_json(summary.to_json())
    else:
        print_extract_summary(summary)
    raise typer.Exit(0 if summary.ok else 1)


@app.command("inspect")
def inspect_cmd(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", exists=True, help="Feature files (.pkl .npy .safetensors) or folders of them.")],
    num_frames: Annotated[int, typer.Option("--num-frames", min=1, help="Temporal rows expected before the patch rows.")] = 100,
    json_out: JsonFlag = False,
) -> None:
    """Shape, dtype, statistics and validity of feature files (pickles loaded safely). Exit 1 if any is invalid.

    Example: artemis features inspect /data/eval/MSVD_Zero_Shot_QA/clip_feature"""
    from artemis_cli.features.inspect import inspect_features
    from artemis_cli.cli.features_report import print_inspect_table

    infos = inspect_features(files, num_frames=num_frames)
    if json_out:
        from artemis_cli.common.console import print_json

        print_json({"files": [info.to_json() for info in infos], "ok": all(i.ok for i in infos),
                    "invalid": sum(not i.ok for i in infos)})
    else:
        print_inspect_table(infos)
    raise typer.Exit(0 if all(info.ok for info in infos) else 1)
