"""`artemis track`, `artemis ask`, `artemis chat` and `artemis data build-referring`: Artemis on one's own video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rich.markup import escape

from artemis_cli import STARTED
from artemis_cli.cli.options import Device, Dtype, JsonFlag, Overwrite
from artemis_cli.ownvideo.trackers import TRACKER_HELP

Video = Annotated[Optional[Path], typer.Argument(metavar="VIDEO", help="A video file or a folder of frame images.",
                                                 show_default=False)]
BoxOpt = Annotated[Optional[list[str]], typer.Option("--box", metavar="X1,Y1,X2,Y2",
                                                     help="The target's box in pixels of the key frame. Repeat it "
                                                          "(each with its --frame) to correct the track: each key box "
                                                          "governs the frames nearest to it.")]
FrameOpt = Annotated[Optional[list[int]], typer.Option("--frame", min=0, help="Key frame (0-based) of the --box at "
                                                                              "the same position (default 0).")]
TrackerOpt = Annotated[str, typer.Option("--tracker", help=TRACKER_HELP + ".")]
TrackerModel = Annotated[Optional[str], typer.Option("--tracker-model", help="SAM 2 checkpoint: a local folder or "
                                                                            "hub id (facebook/sam2.1-hiera-tiny).")]
Stride = Annotated[Optional[int], typer.Option("--stride", min=1, help="Track every K-th frame (the key frames always; default: about 6 frames a second of video).", show_default=False)]
Preview = Annotated[Optional[Path], typer.Option("--preview", dir_okay=False, help="Draw the track: FILE.mp4 / "
                                                 ".gif (the video) or .png (a contact sheet of tracked frames).")]
CacheDir = Annotated[Optional[Path], typer.Option("--cache-dir", file_okay=False, help="Feature and track cache "
                                                  "(default $ARTEMIS_CACHE or ~/.cache/artemis).")]
Model = Annotated[Optional[str], typer.Option("--model", help="Stage-3 Artemis checkpoint (merged, or a LoRA run "
                                                              "with --model-base) or a hub id.")]
ModelBase = Annotated[Optional[str], typer.Option("--model-base", help="Base checkpoint of a LoRA --model.")]
ImageTower = Annotated[Optional[str], typer.Option("--image-tower", help="Local CLIP folder overriding the config's "
                                                                         "mm_image_tower (also the feature tower).")]
Quantize = Annotated[str, typer.Option("--quantize", help="none, int8, int4 or nf4: quantise the LLM's linear "
                                                          "layers after loading.")]
MaxNew = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Cap on generated tokens (1024 as published).")]
Sample = Annotated[bool, typer.Option("--sample", help="Sample instead of greedy decoding (--temperature 0.2 as "
                                                       "published).")]
Temperature = Annotated[float, typer.Option("--temperature", help="Sampling temperature (> 0, with --sample).")]
TopK = Annotated[Optional[int], typer.Option("--top-k", min=0, help="Top-k with --sample.")]
TopP = Annotated[Optional[float], typer.Option("--top-p", min=0.0, max=1.0, help="Top-p with --sample.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the RoI picks and of sampling.")]


def _validated(model_cls, what: str, **values):
    from pydantic import ValidationError

    from artemis_cli.common.config import format_validation_error
    from artemis_cli.errors import ConfigError

    try:
        return model_cls(**values)
    except ValidationError as exc:
        raise ConfigError(what, format_validation_error(exc)) from None


def _target(video: Optional[Path], boxes: Optional[list[str]], frames: Optional[list[int]]):
    """The `Target` of VIDEO and the repeated --box / --frame options (paired in order)."""
    from artemis_cli.ownvideo.prepare import make_target
    from artemis_cli.ownvideo.video import parse_box

    return make_target(_video(video), [parse_box(box) for box in boxes or []], frames or [])


def _key_options(target) -> dict:
    """The config fields (box, frame, more_keys) of a `Target`."""
    return {"box": target.box, "frame": target.frame, "more_keys": list(target.more)}


def _report_track(stderr, quality: str, warnings: list[str]) -> None:
    stderr.print(quality, soft_wrap=True)
    for line in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def _video(video: Optional[Path]) -> Path:
    from artemis_cli.errors import UsageError
    from artemis_cli.ownvideo.video import check_video_path

    if video is None:
        raise UsageError("VIDEO is required (a video file or a folder of frames)")
    check_video_path(video)
    return video


def _model_options(model, model_base, image_tower, device, dtype, quantize, tracker, tracker_model, stride, cache_dir):
    from artemis_cli.errors import UsageError
    from artemis_cli.ownvideo.ask import ModelOptions

    if model is None:
        raise UsageError("--model is required (a stage-3 Artemis checkpoint)")
    return _validated(ModelOptions, "model options", model=model, model_base=model_base, image_tower=image_tower,
                      device=device, dtype=dtype, quantize=quantize, tracker=tracker, tracker_model=tracker_model,
                      stride=stride, cache_dir=cache_dir)


def _decoding(sample, temperature, top_k, top_p, max_new_tokens, seed):
    from artemis_cli.model.generation import DecodingSettings

    return _validated(DecodingSettings, "decoding options", sample=sample, temperature=temperature, top_k=top_k,
                      top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)


def track_cmd(
    video: Video = None,
    box: BoxOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False, help="The record (a JSON list of one "
                                         "VideoRef record); frames and clip feature go to Artemis_data/<name>/ "
                                         "beside it.")] = Path("track.json"),
    frame: FrameOpt = None,
    tracker: TrackerOpt = "csrt",
    tracker_model: TrackerModel = None,
    stride: Stride = None,
    clip_model: Annotated[str, typer.Option("--clip-model", help="CLIP tower of the clip feature (the published "
                                            "recipe's default); 'none' writes no feature.")] = "openai/clip-vit-large-patch14",
    preview: Preview = None,
    cache_dir: CacheDir = None,
    device: Device = "auto",
    overwrite: Overwrite = False,
    json_out: JsonFlag = False,
) -> None:
    """Track a box through a video into a VideoRef record that `data verify-layout --stage none`,
    `infer videorefbench --data-root DIR` and `train stage3` read unchanged.

    Example: artemis track clip.mp4 --box 40,60,120,200 --frame 12 -o out/track.json --preview out/track.png"""
    from artemis_cli.common.console import print_json, stderr
    from artemis_cli.ownvideo.track import TrackConfig, track_video

    config = _validated(TrackConfig, "track options", video=_video(video), **_key_options(_target(video, box, frame)),
                        output=output, tracker=tracker, tracker_model=tracker_model, stride=stride,
                        clip_model=None if clip_model.lower() == "none" else clip_model, preview=preview,
                        cache_dir=cache_dir, device=device, overwrite=overwrite)
    summary = track_video(config)
    if json_out:
        print_json(summary.to_json())
        return
    _report_track(stderr, summary.quality, summary.warnings)
    stderr.print(f"decode {summary.timings['decode']:.2f} s, track {summary.timings['track']:.2f} s, features "
                 f"{summary.timings['features']:.2f} s")
    stderr.print(f"wrote {summary.output}, {summary.manifest}" + (f" and {summary.preview}" if summary.preview else ""),
                 soft_wrap=True)
    for line in summary.next_commands:
        stderr.print(f"next: {line}", soft_wrap=True)


def ask_cmd(
    video: Video = None,
    question: Annotated[Optional[str], typer.Argument(metavar="QUESTION", help="With one <bbox> where the target "
                        "is meant (default: the VideoRefBench question).", show_default=False)] = None,
    box: BoxOpt = None,
    frame: FrameOpt = None,
    model: Model = None,
    model_base: ModelBase = None,
    image_tower: ImageTower = None,
    batch: Annotated[Optional[Path], typer.Option("--batch", dir_okay=False, help="Answer every line "
                     "{id, video, frame, box, keys?, question} of a JSONL file into -o (batched, resumable).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", dir_okay=False, help="Answers of --batch "
                      "(.jsonl; beside it <name>.errors.jsonl and <name>.manifest.json).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Requests per generation batch "
                                                      "with --batch (default 4 on CPU, 16 on a GPU).")] = None,
    tracker: TrackerOpt = "csrt",
    tracker_model: TrackerModel = None,
    stride: Stride = None,
    preview: Preview = None,
    cache_dir: CacheDir = None,
    quantize: Quantize = "none",
    max_new_tokens: MaxNew = 1024,
    sample: Sample = False,
    temperature: Temperature = 0.2,
    top_k: TopK = None,
    top_p: TopP = None,
    seed: SeedOpt = 0,
    device: Device = "auto",
    dtype: Dtype = "auto",
    overwrite: Overwrite = False,
    json_out: JsonFlag = False,
) -> None:
    """Ask about a boxed target in a video: track, features (cached), the 9 RoI frames, the answer.

    Example: artemis ask clip.mp4 --box 40,60,120,200 "What is the <bbox> doing?" --model ./Artemis-7b"""
    from artemis_cli.common.console import print_json, stderr
    from artemis_cli.errors import UsageError

    options = _model_options(model, model_base, image_tower, device, dtype, quantize, tracker, tracker_model, stride,
                             cache_dir)
    decoding = _decoding(sample, temperature, top_k, top_p, max_new_tokens, seed)
    if batch is not None:
        from artemis_cli.ownvideo.ask import AskBatchConfig, ask_batch

        if video is not None or box or frame or question is not None or preview is not None:
            raise UsageError("--batch takes its videos, boxes and questions from the file",
                             hint="drop VIDEO / QUESTION / --box / --preview")
        if output is None:
            raise UsageError("--batch needs -o ANSWERS.jsonl")
        config = _validated(AskBatchConfig, "ask options", requests=batch, output=output, options=options,
                            decoding=decoding, batch_size=batch_size, overwrite=overwrite, show_progress=not json_out)
        summary = ask_batch(config, started=STARTED)
        if json_out:
            print_json(summary.to_json())
        else:
            stderr.print(f"answered {summary.done}, skipped {summary.skipped} (already there), failed {summary.failed} "
                         f"of {summary.total} in {summary.seconds:.1f} s (+{summary.startup_seconds:.1f} s start-up)")
            stderr.print(f"wrote {summary.output}" + (f"; failures in {summary.errors}" if summary.failed else ""),
                         soft_wrap=True)
        raise typer.Exit(0 if summary.ok else 1)
    from artemis_cli.ownvideo.ask import AskConfig, ask_video
    from artemis_cli.ownvideo.referrer import DEFAULT_QUESTION

    if output is not None:
        raise UsageError("-o is for --batch answers", hint="--json prints one answer as JSON")
    config = _validated(AskConfig, "ask options", video=_video(video), **_key_options(_target(video, box, frame)),
                        question=DEFAULT_QUESTION if question is None else question, options=options,
                        decoding=decoding, preview=preview)
    result = ask_video(config, started=STARTED)
    if json_out:
        print_json(result)
        return
    typer.echo(result["answer"])
    _report_track(stderr, result["quality"], result["warnings"])
    timings = result["timings"]
    stderr.print(f"answered {timings['total']:.2f} s after start: imports {timings['imports']:.2f} s, then the "
                 f"model loaded (ready at {timings['startup']:.2f} s) while the target was tracked (decode "
                 f"{timings['decode']:.2f}, track {timings['track']:.2f}, RoI frames {timings['frames']:.2f}; clip "
                 f"feature {timings['features']:.2f} alongside), model inputs {timings['inputs']:.2f}, generate "
                 f"{timings['generate']:.2f}")


def chat_cmd(
    video: Video = None,
    box: BoxOpt = None,
    frame: FrameOpt = None,
    model: Model = None,
    model_base: ModelBase = None,
    image_tower: ImageTower = None,
    tracker: TrackerOpt = "csrt",
    tracker_model: TrackerModel = None,
    stride: Stride = None,
    cache_dir: CacheDir = None,
    quantize: Quantize = "none",
    max_new_tokens: MaxNew = 1024,
    sample: Sample = False,
    temperature: Temperature = 0.2,
    top_k: TopK = None,
    top_p: TopP = None,
    seed: SeedOpt = 0,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """A multi-turn conversation about a target, one question per line (a terminal or piped stdin).

    /box X1,Y1,X2,Y2 [FRAME] starts a new target, /reset a new conversation, /save FILE writes the
    transcript as JSON, /quit ends. Answers go to stdout, everything else to stderr.

    Example: printf 'What is the <bbox> doing?\\nWhere does it go?\\n' | artemis chat clip.mp4 --box 40,60,120,200 --model M"""
    import sys
    import time

    from artemis_cli.common.console import stderr
    from artemis_cli.ownvideo.ask import prepare_while_loading
    from artemis_cli.ownvideo.chat import HELP, ChatSession, run_chat
    from artemis_cli.ownvideo.video import check_video_path

    options = _model_options(model, model_base, image_tower, device, dtype, quantize, tracker, tracker_model, stride,
                             cache_dir)
    decoding = _decoding(sample, temperature, top_k, top_p, max_new_tokens, seed)
    target = _target(video, box, frame)
    check_video_path(target.video)
    referrer, prepared, ready = prepare_while_loading(options, target)  # the model loads while the box is tracked
    stderr.print(f"{referrer.model_name} ready at {ready - STARTED:.1f} s, the target tracked meanwhile "
                 f"({time.perf_counter() - STARTED:.1f} s in all); {HELP}", soft_wrap=True)
    session = ChatSession(referrer, target, decoding=decoding, say=typer.echo,
                          note=lambda text: typer.echo(text, err=True), prepared=prepared)
    interactive = sys.stdin.isatty()
    try:
        run_chat(session, sys.stdin, prompt=(lambda: typer.echo("> ", nl=False, err=True)) if interactive else None)
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: the conversation ends here (/save FILE keeps a transcript)", err=True)
        raise typer.Exit(130) from None


def build_referring_cmd(
    requests: Annotated[Path, typer.Argument(metavar="REQUESTS", dir_okay=False, help="JSONL: one {video, frame, box, "
                                             "caption, question?} per line (videos relative to this file).")],
    out: Annotated[Path, typer.Argument(metavar="OUT", file_okay=False, help="Dataset folder to write (a DATA_ROOT).")],
    clip_model: Annotated[str, typer.Option("--clip-model", help="CLIP tower of the clip features (the published "
                                            "recipe's default).")] = "openai/clip-vit-large-patch14",
    tracker: TrackerOpt = "csrt",
    tracker_model: TrackerModel = None,
    stride: Stride = None,
    cache_dir: CacheDir = None,
    device: Device = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rebuild OUT's own earlier output (never an "
                                            "input).")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Build a stage-3 dataset from one's own videos: frames, clip features, one annotation JSON, a
    manifest; resumable per video; failed videos in OUT/failures.jsonl (exit 1).

    Example: artemis data build-referring my_targets.jsonl my_dataset"""
    from artemis_cli.common.console import print_json, stderr
    from artemis_cli.ownvideo.build import BuildConfig, build_referring

    config = _validated(BuildConfig, "build-referring options", requests=requests, output=out, clip_model=clip_model,
                        tracker=tracker, tracker_model=tracker_model, stride=stride, cache_dir=cache_dir,
                        device=device, overwrite=overwrite, show_progress=not json_out)
    summary = build_referring(config)
    if json_out:
        print_json(summary.to_json())
    else:
        stderr.print(f"{summary.records} record(s) from {summary.built + summary.skipped}/{summary.videos} video(s) "
                     f"({summary.skipped} from an earlier run), {summary.failed} failed, "
                     f"{len(summary.failures)} line(s) listed in {out / 'failures.jsonl'}", soft_wrap=True)
        for line in summary.to_json()["next"]:
            stderr.print(f"next: {line}", soft_wrap=True)
    raise typer.Exit(0 if summary.ok else 1)


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add `track`, `ask`, `chat` to the root app and `build-referring` to `data`."""
    app.command("track")(track_cmd)
    app.command("ask")(ask_cmd)
    app.command("chat")(chat_cmd)
    data_app.command("build-referring")(build_referring_cmd)
