"""`artemis infer ...`: VideoRefBench, video QA, the Video-ChatGPT benchmark, the peers' region benchmarks
(VideoRefer-Bench-D/Q, PLM-VideoBench RCap), and `merge` of shards.

The three run commands share their model/decoding/sharding options through `run_options`, which
appends them to each command's signature, so each option is declared once.
"""

import functools
import inspect
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from artemis_cli.cli.options import Device, Dtype, JsonFlag, NumShards, Overwrite, Quantize, ShardIndex
from artemis_cli.data.benchmarks import BENCHMARKS, names

app = typer.Typer(help="Run the model on a benchmark (batched, resumable, sharded) and merge shard outputs.",
                  no_args_is_help=True)

Output = Annotated[Path, typer.Option("--output", "-o", dir_okay=False,
                                      help="Prediction file (.jsonl). Beside it: <name>.errors.jsonl (failed samples) "
                                           "and <name>.manifest.json (settings, seed, input ids). Shard K of N writes "
                                           "<name>.shard-K-of-N.jsonl.")]
Features = Annotated[Path, typer.Option("--features", exists=True, file_okay=False,
                                        help="Folder of per-video clip features (<video_name>.pkl; .npy/.safetensors also read).")]


def _choices(command: str) -> str:
    """The registered benchmarks of `artemis infer <command>` for its --dataset / --set help."""
    described = []
    for name in names(command):
        spec = BENCHMARKS[name]
        notes = [f"features named {spec.feature_prefix}<video_name>"] if spec.feature_prefix else []
        if len(spec.prediction.pred_fields) > 1:
            notes.append("asks " + " and ".join(spec.prediction.roles[f"question{k}"] for k in (1, 2)))
        described.append(name + (f" ({', '.join(notes)})" if notes else ""))
    return "One of: " + ", ".join(described) + "."


_P = inspect.Parameter
RUN_OPTIONS: list[tuple[str, Any, Any]] = [
    ("model", Annotated[str, typer.Option("--model", help="Checkpoint folder (merged, LoRA run + --model-base, or "
                                                        "projector-only + --model-base) or a hub id.")], _P.empty),
    ("model_base", Annotated[Optional[str], typer.Option("--model-base", help="Base checkpoint of a LoRA / "
                                                                              "projector-only --model.")], None),
    ("image_tower", Annotated[Optional[str], typer.Option("--image-tower", help="Local CLIP folder overriding the "
                                                                                "config's mm_image_tower.")], None),
    ("batch_size", Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Prompts per batch (default: as "
                                                         "large as fits: up to 64 on a GPU, 8 on CPU; halved on "
                                                         "out-of-memory).")], None),
    ("max_new_tokens", Annotated[int, typer.Option("--max-new-tokens", min=1, help="Cap on generated tokens "
                                                                                   "(1024 as published).")], 1024),
    ("sample", Annotated[bool, typer.Option("--sample", help="Sample instead of greedy decoding. --sample "
                                            "--temperature 0.2 is the published setting; each sample draws from its "
                                            "own generator (seed + id), so results do not depend on batching.")], False),
    ("temperature", Annotated[float, typer.Option("--temperature", help="Sampling temperature "
                                                                             "(> 0, with --sample).")], 0.2),
    ("top_k", Annotated[Optional[int], typer.Option("--top-k", min=0, help="Top-k with --sample (default: the "
                                                    "checkpoint's generation_config, else 50 as transformers).")], None),
    ("top_p", Annotated[Optional[float], typer.Option("--top-p", min=0.0, max=1.0, help="Top-p with --sample "
                                                      "(default: the checkpoint's generation_config, else 1.0).")], None),
    ("seed", Annotated[int, typer.Option("--seed", help="Seed of the per-sample generators (RoI picks, key frames, "
                                                        "sampling); recorded in the manifest.")], 0),
    ("template", Annotated[str, typer.Option("--template", help="Conversation template (llava_v1 as the published "
                                                                "eval; vicuna_v1 as training).")], "llava_v1"),
    ("num_shards", NumShards, None),
    ("shard_index", ShardIndex, None),
    ("device", Device, "auto"),
    ("dtype", Dtype, "auto"),
    ("quantize", Quantize, "none"),
    ("overwrite", Overwrite, False),
    ("allow_failures", Annotated[bool, typer.Option("--allow-failures", help="Exit 0 even when samples failed "
                                                                             "(they are still listed).")], False),
    ("json_out", JsonFlag, False),
]


def run_options(command: Callable) -> Callable:
    """Append the shared run options to `command`'s signature; it receives them as one dict `run`."""
    own = [p for name, p in inspect.signature(command).parameters.items() if name != "run"]
    extra = [_P(name, _P.KEYWORD_ONLY, annotation=annotation, default=default)
             for name, annotation, default in RUN_OPTIONS]
    parameters = [p.replace(kind=_P.KEYWORD_ONLY) for p in own] + extra
    parameters.sort(key=lambda p: p.default is not _P.empty)  # required options first

    @functools.wraps(command)
    def wrapper(**kwargs):
        run = {name: kwargs.pop(name) for name, _, _ in RUN_OPTIONS}
        return command(run=run, **kwargs)

    wrapper.__signature__ = inspect.Signature(parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def _run(task: dict, output: Path, run: dict, **prompt) -> None:
    from pydantic import ValidationError

    from artemis_cli.common.config import format_validation_error
    from artemis_cli.errors import ConfigError
    from artemis_cli.infer import InferConfig, infer

    options = dict(run)
    json_out, allow_failures = options.pop("json_out"), options.pop("allow_failures")
    decoding = {key: options.pop(key) for key in ("sample", "temperature", "top_k", "top_p", "max_new_tokens", "seed")}
    _check_paths(task, output, options)
    try:
        config = InferConfig(task=task, output=output, decoding=decoding, show_progress=not json_out, **options,
                             **prompt)
    except ValidationError as exc:
        from artemis_cli.cli.options import name_options

        flags = {name for name, _, _ in RUN_OPTIONS} | set(decoding) | set(task) | set(prompt) | {"output"}
        flags = {name: f"--{name.replace('_', '-')}" for name in flags} | {"set": "--subset"}
        problems = name_options(format_validation_error(exc), flags, prefixes=(f"task.{task['kind']}.", "decoding."))
        raise ConfigError("infer options", problems) from None
    summary = infer(config)
    from artemis_cli.cli.infer_report import print_run_summary

    print_run_summary(summary, json_out)
    raise typer.Exit(0 if summary.ok or allow_failures else 1)


def _check_paths(task: dict, output: Path, options: dict) -> None:
    """Before the model loads: --output must be writable and must not be (or overwrite) an input."""
    from artemis_cli.common.paths import check_output

    inputs = {f"--{key.replace('_', '-')}": value for key, value in task.items() if isinstance(value, Path)}
    for key in ("model", "model_base", "image_tower"):
        if options.get(key) and Path(options[key]).exists():
            inputs[f"--{key.replace('_', '-')}"] = Path(options[key])
    check_output(output, kind="file", option="--output", inputs=inputs)


NumTracked = Annotated[int, typer.Option("--num-tracked", min=1, help="Tracked frames per record before k-means "
                                                                     "(8 as published).")]
CropCorrect = Annotated[bool, typer.Option("--crop-correct-boxes", help="Map boxes into CLIP's centre crop. Default "
                                           "off: the published quirk (boxes divided by the frame size) that the "
                                           "released weights were trained with.")]
ExactBoxes = Annotated[bool, typer.Option("--exact-boxes", help="Divide the pixel boxes by the frame size exactly. "
                                          "Default off: the published code divides integer boxes in fp16 (up to "
                                          "2.4e-4 off), as the released weights were trained.")]
Videos = Annotated[Path, typer.Option("--videos", exists=True, file_okay=False, help="Folder the records' 'video' "
                                      "paths are relative to (video files or frame folders).")]
PeerFeatures = Annotated[Path, typer.Option("--features", exists=True, file_okay=False, help="Clip features of those "
                                            "videos (<video name>.pkl, as `artemis features extract` writes; "
                                            "--frames for frame folders).")]
PeerQuestion = Annotated[Optional[str], typer.Option("--question", help="Ask this instead of Artemis' published "
                                                     "\"What is the <bbox> doing in this video?\" (one <bbox>).")]
FrameMode = Annotated[str, typer.Option("--frame-mode", help="multi: every annotated frame's mask box as the track "
                                        "(the peers' multi-frame mode); single: only the frame_idx frame's box.")]
Tracker = Annotated[Optional[str], typer.Option("--tracker", help="With --frame-mode single: track the frame_idx box "
                                                "over the annotated frames (csrt or kcf; needs artemis[track]).")]


@app.command("videorefbench")
@run_options
def videorefbench_cmd(
    annotations: Annotated[Path, typer.Option("--annotations", exists=True, dir_okay=False,
                                              help="VideoRefBench records (videorefbench_json/hc_stvg_val.json).")],
    data_root: Annotated[Path, typer.Option("--data-root", exists=True, file_okay=False,
                                            help="DATA_ROOT (or its Artemis_data folder): clip_path and frame_path "
                                                 "are relative to Artemis_data.")],
    output: Output,
    num_tracked: NumTracked = 8,
    crop_correct: CropCorrect = False,
    exact_boxes: ExactBoxes = False,
    run: dict = None,
) -> None:
    """Describe the boxed target of each VideoRefBench record. Output lines: video_name, groundtruth,
    pred, id (ready for `artemis score`). Exit 1 when any sample failed.

    Example: artemis infer videorefbench --annotations /data/annotations/videorefbench_json/hc_stvg_val.json --data-root /data/DATA_ROOT --model ./checkpoints/Artemis-7b -o preds/videorefbench.jsonl"""
    _run({"kind": "videorefbench", "annotations": annotations, "data_root": data_root}, output, run,
         num_tracked=num_tracked, crop_correct=crop_correct, exact_boxes=exact_boxes)


@app.command("videorefer-d")
@run_options
def videorefer_d_cmd(
    annotations: Annotated[Path, typer.Option("--annotations", exists=True, dir_okay=False,
                                              help="VideoRefer-Bench-D.json (400 records with COCO RLE masks).")],
    videos: Videos,
    features: PeerFeatures,
    output: Output,
    frame_mode: FrameMode = "multi",
    tracker: Tracker = None,
    question: PeerQuestion = None,
    num_tracked: NumTracked = 8,
    crop_correct: CropCorrect = False,
    exact_boxes: ExactBoxes = False,
    run: dict = None,
) -> None:
    """Describe the masked object of each VideoRefer-Bench-D record (masks -> boxes -> Artemis' track).
    Output lines: id, video, caption, pred (ready for `artemis judge gpt --task videorefer-d`).

    Example: artemis infer videorefer-d --annotations VideoRefer-Bench-D.json --videos Panda-70M --features clip_feature --model ./checkpoints/Artemis-7b -o preds/videorefer_d.jsonl"""
    _run({"kind": "videorefer-d", "annotations": annotations, "videos": videos, "features": features,
          "frame_mode": frame_mode, "tracker": tracker, "question": question}, output, run,
         num_tracked=num_tracked, crop_correct=crop_correct, exact_boxes=exact_boxes)


@app.command("videorefer-q")
@run_options
def videorefer_q_cmd(
    annotations: Annotated[Path, typer.Option("--annotations", exists=True, dir_okay=False,
                                              help="VideoRefer-Bench-Q.json (1,000 multiple-choice questions).")],
    videos: Videos,
    features: PeerFeatures,
    output: Output,
    frame_mode: FrameMode = "multi",
    tracker: Tracker = None,
    answer_by: Annotated[str, typer.Option("--answer-by", help="generate: Artemis writes its answer (scored by the "
                                           "published letter regex); loglikelihood: the option whose text is most "
                                           "likely after the prompt (recorded as 'scoring' in each line).")
                         ] = "generate",
    num_tracked: NumTracked = 8,
    crop_correct: CropCorrect = False,
    exact_boxes: ExactBoxes = False,
    run: dict = None,
) -> None:
    """Answer each VideoRefer-Bench-Q question about its first masked object (the one <bbox> Artemis
    takes; further objects are named in words). Output lines: id, video, question, options, answer,
    type, n_regions, scoring, pred (ready for `artemis score`).

    Example: artemis infer videorefer-q --annotations VideoRefer-Bench-Q.json --videos VideoRefer-Bench-Q --features clip_feature --model ./checkpoints/Artemis-7b -o preds/videorefer_q.jsonl"""
    _run({"kind": "videorefer-q", "annotations": annotations, "videos": videos, "features": features,
          "frame_mode": frame_mode, "tracker": tracker, "answer_by": answer_by}, output, run,
         num_tracked=num_tracked, crop_correct=crop_correct, exact_boxes=exact_boxes)


@app.command("plm-rcap")
@run_options
def plm_rcap_cmd(
    annotations: Annotated[Path, typer.Option("--annotations", exists=True, dir_okay=False,
                                              help="RCap items (the rcap test split as .json or .jsonl: uid, video, "
                                                   "masklet_id, total_frames, caption, start_frame, end_frame).")],
    metadata: Annotated[Path, typer.Option("--metadata", exists=True, dir_okay=False,
                                           help="metadata_test.jsonl: the per-frame boxes of each masklet.")],
    videos: Videos,
    features: PeerFeatures,
    output: Output,
    question: PeerQuestion = None,
    num_tracked: NumTracked = 8,
    crop_correct: CropCorrect = False,
    exact_boxes: ExactBoxes = False,
    run: dict = None,
) -> None:
    """Describe each PLM-VideoBench RCap masklet from its boxes from start_frame to end_frame (the 6 fps
    SA-V videos). Output lines: id, video, caption, pred (ready for `artemis judge gpt --task plm-rcap`).

    Example: artemis infer plm-rcap --annotations rcap_test.jsonl --metadata metadata_test.jsonl --videos sav_6fps --features clip_feature --model ./checkpoints/Artemis-7b -o preds/plm_rcap.jsonl"""
    _run({"kind": "plm-rcap", "annotations": annotations, "metadata": metadata, "videos": videos,
          "features": features, "question": question}, output, run,
         num_tracked=num_tracked, crop_correct=crop_correct, exact_boxes=exact_boxes)


@app.command("qa")
@run_options
def qa_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help=_choices("qa"))],
    questions: Annotated[Path, typer.Option("--questions", exists=True, dir_okay=False, help="Question file: a list of "
                                                                                "{video_name, question, question_id}.")],
    answers: Annotated[Path, typer.Option("--answers", exists=True, dir_okay=False, help="Answer file: a list of {answer, ...} "
                                                                            "aligned with the questions by position.")],
    features: Features,
    output: Output,
    run: dict = None,
) -> None:
    """Zero-shot video QA. Output lines: id, question, answer, pred (ready for `artemis judge gpt --task qa`).

    Example: artemis infer qa --dataset msvd --questions test_q.json --answers test_a.json --features clip_feature --model ./checkpoints/Artemis-7b -o preds/msvd.jsonl"""
    _run({"kind": "qa", "dataset": dataset, "questions": questions, "answers": answers, "features": features},
         output, run)


@app.command("vcgbench")
@run_options
def vcgbench_cmd(
    annotations: Annotated[Path, typer.Option("--annotations", exists=True, dir_okay=False, help="The set's QA file: "
                                              "{video_name, Q, A} (consistency: {video_name, Q1, Q2, A}).")],
    features: Features,
    output: Output,
    question_set: Annotated[Optional[str], typer.Option("--subset", help=_choices("vcgbench"))] = None,
    legacy_set: Annotated[Optional[str], typer.Option("--set", hidden=True, help="Old spelling of --subset.")] = None,
    run: dict = None,
) -> None:
    """The Video-ChatGPT benchmark. Output lines: video_name, Q, A, pred, id (consistency: Q1, Q2, A,
    pred1, pred2), ready for `artemis judge gpt`."""
    from artemis_cli.errors import UsageError

    if question_set is None and legacy_set is None:
        raise UsageError("Missing option '--subset'", hint="see `artemis infer vcgbench --help`")
    if question_set is not None and legacy_set is not None and question_set != legacy_set:
        raise UsageError("--subset and --set (its old spelling) disagree")
    _run({"kind": "vcgbench", "set": question_set or legacy_set, "annotations": annotations, "features": features},
         output, run)


@app.command("merge")
def merge_cmd(
    output: Annotated[Path, typer.Argument(metavar="OUT", dir_okay=False, help="Merged prediction file to write.")],
    shards: Annotated[list[Path], typer.Argument(metavar="SHARD...", exists=True, dir_okay=False,
                                                 help="Shard outputs of one run (their manifests beside them).")],
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Write the merge even when input ids or "
                                                "shards are missing (still listed; exit 0).")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Merge shard outputs in input order, checking that every input id appears exactly once.
    Exit 1 on missing (unless --allow-missing), duplicate or unknown ids or a missing shard.

    Example: artemis infer merge preds/msvd.jsonl preds/msvd.shard-*-of-4.jsonl"""
    from artemis_cli.cli.infer_report import print_merge_report
    from artemis_cli.common.paths import check_output
    from artemis_cli.infer import merge_predictions
    from artemis_cli.infer.shards import output_paths

    inputs = {}
    for shard in shards:
        inputs[f"SHARD {shard}"] = shard
        inputs[f"the manifest of {shard}"] = output_paths(shard).manifest
    check_output(output, kind="file", option="OUT", inputs=inputs)
    check_output(output_paths(output).manifest, kind="file", option="OUT's manifest", inputs=inputs)
    report = merge_predictions(output, shards, allow_missing=allow_missing)
    print_merge_report(report, json_out)
    raise typer.Exit(0 if report.ok or (report.wrote and allow_missing) else 1)
