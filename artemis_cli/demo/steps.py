"""The demo's steps: each calls the library entry function behind one `artemis` command.

A step returns a `StepOutput` (what it wrote, a one-line detail, figures for the report) or raises;
`skip_reason` says why a step does not run here (the judge without an API key or server).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from artemis_cli.demo.workspace import (FEATURE_DIM, JUDGE_TASKS, DemoOptions, Workspace, demo_benchmarks,
                                        demo_commands_run, infer_inputs)
from artemis_cli.errors import InputError

# (optimizer steps, learning rate) per stage: the loss visibly falls (stages 2-3), ~25 s on 2 CPU cores.
TRAIN_SCHEDULE = {1: (20, 2e-3), 2: (40, 2e-3), 3: (60, 5e-3)}


@dataclass
class StepOutput:
    output: Path
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoContext:
    ws: Workspace
    options: DemoOptions
    loaded: Any = None  # the merged model, loaded once for the three inference steps

    def merged_model(self):
        if self.loaded is None:
            from artemis_cli.model.loading import load_model

            self.loaded = load_model(self.ws.run("merged"), device=self.options.device, dtype="auto")
        return self.loaded


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    run: Callable[[DemoContext], StepOutput]
    own_progress: bool = False  # the library call draws its own progress bar
    skip_reason: Callable[[DemoContext], Optional[str]] = lambda ctx: None


def doctor_step(ctx: DemoContext) -> StepOutput:
    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.doctor import as_json, doctor

    checks = doctor(ctx.ws.root)
    path = ctx.ws.root / "doctor.json"
    atomic_write_json(path, as_json(checks))
    counts = {status: sum(c.status == status for c in checks) for status in ("ok", "warn", "fail")}
    return StepOutput(path, f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail",
                      {"checks": [{"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks]})


def make_sample_step(ctx: DemoContext) -> StepOutput:
    from artemis_cli.data.sample import make_sample

    shutil.rmtree(ctx.ws.sample, ignore_errors=True)
    summary = make_sample(ctx.ws.sample, seed=0, feature_dim=FEATURE_DIM)
    return StepOutput(ctx.ws.sample, f"{summary.files} files, {summary.bytes / 1e6:.1f} MB")


def make_tiny_step(ctx: DemoContext) -> StepOutput:
    from artemis_cli.model.tiny import save_tiny_start

    shutil.rmtree(ctx.ws.tiny, ignore_errors=True)
    paths = save_tiny_start(ctx.ws.tiny, seed=0)
    return StepOutput(ctx.ws.tiny, f"{paths['vicuna'].name}/ (2-layer Llama, width 64), {paths['clip'].name}/ "
                                   "(CLIP width 64, 224 px, patch 14)")


def verify_layout_step(ctx: DemoContext) -> StepOutput:
    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.data.verify import verify_layout

    report = verify_layout(ctx.ws.data_root, ctx.ws.annotations, stage="all", check_features=True,
                           show_progress=ctx.options.show_progress)
    path = ctx.ws.root / "verify-layout.json"
    atomic_write_json(path, report.to_json())
    if not report.ok:
        first = report.problems[0]
        raise InputError(f"verify-layout found {report.n_errors} error(s), first: {first.location}: {first.message}",
                         hint=f"see {path}")
    counts = report.counts
    return StepOutput(path, f"{counts.get('records', 0)} records in {counts.get('annotation_files', 0)} files, "
                            f"{counts.get('feature_files_checked', 0)} feature files (width {counts.get('feature_width')}): no errors")


def _extract(ctx: DemoContext, source: Path, output: Path, frames: bool):
    from artemis_cli.features.extract import ExtractConfig, extract_features

    config = ExtractConfig(input=source, output=output, frames=frames, model=str(ctx.ws.tiny_clip),
                           device=ctx.options.device, overwrite=True, workers=0)
    summary = extract_features(config, show_progress=ctx.options.show_progress)
    if not summary.ok:
        failure = summary.failures[0]
        raise InputError(f"{summary.failed} of {summary.total} videos failed, first {failure['name']}: {failure['reason']}",
                         hint=f"see {output / 'failures.jsonl'}")
    return summary


def _shape(summary) -> str:
    from artemis_cli.features.recipe import NUM_FRAMES

    return f"[{NUM_FRAMES + summary.model['patches']}, {summary.model['width']}]"  # frame rows + patch rows


def features_videos_step(ctx: DemoContext) -> StepOutput:
    summary = _extract(ctx, ctx.ws.hcstvg_videos, ctx.ws.hcstvg_features, frames=False)
    return StepOutput(ctx.ws.hcstvg_features, f"{summary.written} videos -> {_shape(summary)} float16 features")


def features_frames_step(ctx: DemoContext) -> StepOutput:
    written = []
    for frames, output in ctx.ws.frame_sets():
        summary = _extract(ctx, frames, output, frames=True)
        written.append(f"{frames.relative_to(ctx.ws.artemis_data).parts[0]} {summary.written}")
    return StepOutput(ctx.ws.artemis_data, f"frame folders -> {_shape(summary)} features: " + ", ".join(written))


def stage_config(ws: Workspace, stage: int, device: str) -> dict[str, Any]:
    """The run config of one stage on the sample (as examples/configs/sample_stage*.yaml, longer; absolute paths)."""
    steps, lr = TRAIN_SCHEDULE[stage]
    model: dict[str, Any] = {"path": str(ws.tiny / "vicuna"), "image_tower": str(ws.tiny_clip)}
    if stage == 2:
        model["projector"] = str(ws.run("stage1") / "mm_projector.bin")
    if stage == 3:
        model = {"path": str(ws.run("stage2")), "roi": {"num_levels": 2, "num_fuse": 1, "query_size": 128}}
    annotations = {1: ws.annotations / "stage1" / "pretrain.json", 2: ws.annotations / "stage2",
                   3: ws.annotations / "stage3"}[stage]
    config = {
        "stage": stage, "model": model,
        "data": {"root": str(ws.data_root), "annotations": [str(annotations)], "num_workers": 0},
        "train": {"output_dir": str(ws.run(f"stage{stage}")), "max_steps": steps, "batch_size": 2, "grad_accum": 1,
                  "lr": lr, "precision": "fp32", "deepspeed": None, "gradient_checkpointing": False,
                  "save_steps": steps, "device": device},
    }
    if stage == 3:
        config["lora"] = {"r": 16, "alpha": 16, "dropout": 0.05}
    return config


def _train(stage: int) -> Callable[[DemoContext], StepOutput]:
    def run(ctx: DemoContext) -> StepOutput:
        import yaml

        from artemis_cli.common.atomic import atomic_write_text
        from artemis_cli.train.config import load_train_config
        from artemis_cli.train.run import LOSS_PLOT, train

        path = ctx.ws.config(stage)
        atomic_write_text(path, f"# artemis demo: stage {stage} on the sample with tiny models\n"
                          + yaml.safe_dump(stage_config(ctx.ws, stage, ctx.options.device), sort_keys=False))
        out = ctx.ws.run(f"stage{stage}")
        shutil.rmtree(out, ignore_errors=True)  # a redo starts clean (a killed run may lack train_config.yaml)
        result = train(load_train_config(stage, path), show_progress=ctx.options.show_progress,
                       config_source=str(path))
        losses = _losses(out)
        detail = f"{result.global_step} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else \
            f"{result.global_step} steps"
        return StepOutput(out, detail, {"losses": losses, "train_loss": result.train_loss, "outputs": result.outputs,
                                        "loss_plot": str(out / LOSS_PLOT) if LOSS_PLOT in result.outputs else None})

    return run


def _losses(run_dir: Path) -> list[float]:
    import json

    state = run_dir / "trainer_state.json"
    if not state.is_file():
        return []
    history = json.loads(state.read_text(encoding="utf-8")).get("log_history", [])
    return [float(entry["loss"]) for entry in history if "loss" in entry and "step" in entry]


def merge_lora_step(ctx: DemoContext) -> StepOutput:
    from artemis_cli.model.loading import merge_lora

    ctx.loaded = None
    merged = merge_lora(ctx.ws.run("stage3"), ctx.ws.run("stage2"), ctx.ws.run("merged"), overwrite=True)
    return StepOutput(merged, "LoRA adapter + RoI module + projector merged into the stage-2 model")


def _infer(ctx: DemoContext, task: dict, name: str) -> tuple[Path, str]:
    from artemis_cli.infer import InferConfig, infer

    output = ctx.ws.predictions(name)
    config = InferConfig(task=task, model=str(ctx.ws.run("merged")), output=output, device=ctx.options.device,
                         decoding={"max_new_tokens": ctx.options.max_new_tokens}, overwrite=True,
                         show_progress=ctx.options.show_progress)
    summary = infer(config, loaded=ctx.merged_model())
    if not summary.ok:
        failure = summary.failures[0]
        raise InputError(f"{summary.failed} of {summary.total} samples failed, first: {failure}",
                         hint=f"see {summary.paths.errors}")
    return output, f"{summary.done} samples"


def _infer_step(command: str) -> Callable[[DemoContext], StepOutput]:
    """The step running `artemis infer <command>` on every benchmark of it that the sample has files for."""

    def run(ctx: DemoContext) -> StepOutput:
        specs = demo_benchmarks(command)
        done = []
        for spec in specs:
            _, detail = _infer(ctx, spec.task(**infer_inputs(ctx.ws, spec)), spec.output_stem)
            done.append((spec, detail))
        if len(specs) == 1:
            return StepOutput(ctx.ws.predictions(specs[0].output_stem), done[0][1] + " (greedy)")
        return StepOutput(ctx.ws.predictions(specs[0].output_stem).parent,
                          "samples: " + ", ".join(f"{spec.name} {detail.split()[0]}" for spec, detail in done))

    return run


def score_step(ctx: DemoContext) -> StepOutput:
    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.metrics import ScoreOptions, score_file

    # Random tiny models can stop at once: the paper's 6-299 character filter could leave nothing to score.
    options = ScoreOptions(length_filter=False)
    report = score_file(ctx.ws.predictions("videorefbench"), options,
                        per_sample_path=ctx.ws.scores.with_suffix(".per_sample.jsonl"))
    result = report.to_json()
    atomic_write_json(ctx.ws.scores, result)
    shown = {k: v for k, v in result["metrics"].items() if v is not None}
    cider = shown.get("CIDEr")
    return StepOutput(ctx.ws.scores, f"{report.n_scored} records; CIDEr {cider * 100:.1f}" if cider is not None
                      else f"{report.n_scored} records", {"score": result})


def judge_skip_reason(ctx: DemoContext) -> Optional[str]:
    from artemis_cli.judge.models import MODEL_ENV

    if not ctx.options.judge_model:
        return f"no judge model named (--judge-model or {MODEL_ENV}: hosted judges retire, so there is no default)"
    if os.environ.get("OPENAI_API_KEY") or ctx.options.judge_base_url:
        return None
    return "OPENAI_API_KEY is not set and no --judge-base-url was given"


def judge_step(ctx: DemoContext) -> StepOutput:
    from artemis_cli.judge import JudgeOptions, judge

    results: dict[str, Any] = {}
    for task, name in JUDGE_TASKS.items():
        options = JudgeOptions(task=task, model=ctx.options.judge_model, base_url=ctx.options.judge_base_url,
                               cache_dir=ctx.ws.judge_cache, output_dir=ctx.ws.judge_output(task), overwrite=True,
                               max_attempts=3, retry_max_delay=10.0, show_progress=ctx.options.show_progress)
        summary = judge(ctx.ws.predictions(name), options)
        if not summary.ok:
            raise InputError(f"judge --task {task}: {summary.n_failed} of {summary.n_items} items failed",
                             hint=f"see {ctx.ws.judge_output(task) / 'judgments.jsonl'}")
        results[task] = summary.to_json()
    qa = results["qa"]
    return StepOutput(ctx.ws.judge_output("qa").parent, f"{len(results)} tasks; qa accuracy "
                                                      f"{qa['accuracy'] * 100:.0f}%, score {qa['mean_score']:.2f}",
                      {"judge": results})


def own_video_step(ctx: DemoContext) -> StepOutput:
    """`artemis track` + `artemis ask` (twice: the second question reuses the cached track and features) on a
    generated two-box video, asking the shipped toy model (`--model toy`, trained on such videos) about one box:
    the demo's own tiny models are barely trained, the toy model names the boxed box's colour (not yet its motion)."""
    import time

    from artemis_cli.common.atomic import atomic_write_bytes, atomic_write_json
    from artemis_cli.data.synthetic_video import encode_mp4, two_box_video
    from artemis_cli.demo.workspace import OWN_VIDEO_MODEL, OWN_VIDEO_SEED, OWN_VIDEO_TARGET
    from artemis_cli.model.generation import DecodingSettings
    from artemis_cli.model.loading import load_model
    from artemis_cli.ownvideo.prepare import Target
    from artemis_cli.ownvideo.referrer import Referrer
    from artemis_cli.ownvideo.track import TrackConfig, track_video

    folder = ctx.ws.own_video
    shutil.rmtree(folder, ignore_errors=True)
    video = two_box_video(OWN_VIDEO_SEED)
    path = folder / "clip.mp4"
    atomic_write_bytes(path, encode_mp4(video.frames))
    index, frame = OWN_VIDEO_TARGET
    target = video.targets[index]
    box = tuple(float(v) for v in target.boxes[frame])
    loaded = load_model(OWN_VIDEO_MODEL, device=ctx.options.device, dtype="float32")
    referrer = Referrer(loaded=loaded, cache_dir=folder / "cache")
    # the model's own tower: `track` caches the clip feature under it, and the questions below find it there
    summary = track_video(TrackConfig(video=path, box=box, frame=frame, output=folder / "track.json",
                                      clip_model=str(referrer.clip_model), preview=folder / "track.png",
                                      cache_dir=folder / "cache", device=ctx.options.device, overwrite=True))
    decoding = DecodingSettings(max_new_tokens=ctx.options.max_new_tokens)
    answers = []
    for question in ("What is the <bbox> doing in this video?", "How does the <bbox> move?"):
        start = time.perf_counter()
        answer = referrer.ask(referrer.prepare(Target(path, box, frame)), question, decoding=decoding)
        answers.append({"question": answer.question, "answer": answer.answer, "frames_used": answer.frames_used,
                        "seconds": round(time.perf_counter() - start, 3)})
    truth = target.motion()
    atomic_write_json(folder / "answers.json", {"truth": truth, "answers": answers})
    track = summary.track
    from artemis_cli.demo.learn import read_caption

    said, expected = read_caption(answers[0]["answer"]), read_caption(truth)
    verdict = ", ".join(f"{what} {'right' if a == b else 'wrong'}" for what, a, b in zip(("colour", "motion"), said, expected))
    return StepOutput(summary.output, f"tracked {track['tracked']}/{len(track['frames'])} frames; the toy model: "
                                      f"{answers[0]['answer']!r} ({verdict}); second question "
                                      f"{answers[1]['seconds']:.2f} s", {"own_video": answers, "truth": truth})


def toy_eval_step(ctx: DemoContext) -> StepOutput:
    """The shipped toy model asked about each target of fresh held-out videos, with the two controls
    (`demo.learn`): what `benchmarks/learn.py` and `artemis model train-toy` report."""
    from artemis_cli.common.atomic import atomic_write_json
    from artemis_cli.common.hub import toy_model_folder
    from artemis_cli.demo.toy import evaluate_model, held_out_sample
    from artemis_cli.demo.workspace import TOY_HELD_OUT

    folder = ctx.ws.toy_held_out
    model = toy_model_folder()
    sample = held_out_sample(folder / "held_out", seed=0, videos=TOY_HELD_OUT, clip=model / "clip",
                             device=ctx.options.device)
    report = evaluate_model(model, sample, device=ctx.options.device)
    atomic_write_json(folder / "learn.json", report.to_json(answers=True))
    boxed, zeroed = report.conditions["boxed"], report.conditions["roi_zeroed"]
    return StepOutput(folder / "learn.json", f"{report.videos} videos: colour {boxed.colour:.0%}, direction "
                                             f"{boxed.direction:.0%}; RoI tokens zeroed: colour {zeroed.colour:.0%} "
                                             f"(chance {report.chance['colour']:.0%})", {"learn": report.to_json()})


STEPS: tuple[Step, ...] = (
    Step("doctor", "doctor", doctor_step),
    Step("make-sample", "data make-sample", make_sample_step),
    Step("make-tiny", "model make-tiny", make_tiny_step),
    Step("verify-layout", "data verify-layout", verify_layout_step, own_progress=True),
    Step("features-videos", "features extract (videos)", features_videos_step, own_progress=True),
    Step("features-frames", "features extract (--frames)", features_frames_step, own_progress=True),
    Step("train-stage1", "train stage1", _train(1), own_progress=True),
    Step("train-stage2", "train stage2", _train(2), own_progress=True),
    Step("train-stage3", "train stage3", _train(3), own_progress=True),
    Step("merge-lora", "model merge-lora", merge_lora_step),
    *(Step(f"infer-{command}", f"infer {command}", _infer_step(command), own_progress=True)
      for command in demo_commands_run()),
    Step("score", "score", score_step),
    Step("own-video", "track + ask (own video, toy model)", own_video_step),
    Step("toy-eval", "toy model on held-out videos", toy_eval_step),
    Step("judge", "judge gpt", judge_step, own_progress=True, skip_reason=judge_skip_reason),
)
