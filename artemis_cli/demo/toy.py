"""`train_toy`: the toy recipe from scratch, step by step: data, start models, features, the three stages, merge,
held-out evaluation. Every step is the library call of one `artemis` command; the stages run the shipped
configs (`artemis_cli/assets/toy_configs/toy_stage*.yaml`) with only their paths pointed into OUT.

OUT gets ``data/train`` and ``data/held_out`` (two samples made with disjoint seeds), ``tiny/`` (start
models), ``configs/`` (the resolved stage configs: ``artemis train stageN -c OUT/configs/stageN.yaml`` reruns
one), ``runs/stage{1,2,3}``, ``model/`` (the merged toy Artemis with its CLIP tower in ``model/clip``, movable:
``--model OUT/model`` works anywhere) and ``learn.json`` (the held-out table). Rerunning into the same OUT
resumes: finished steps (recorded in ``toy-state.json``, same settings) are kept.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

from artemis_cli.common.devices import DeviceName
from artemis_cli.errors import UsageError

CONFIGS = Path(__file__).resolve().parents[1] / "assets" / "toy_configs"
STATE_FILE = "toy-state.json"
STATE_VERSION = 1
FEATURE_DIM = 64  # the tiny CLIP's width
FRAME_SIZE = (112, 112)  # square frames: CLIP's centre crop sees the whole frame, boxes stay on their target
TARGETS = 2
VOCAB = 600  # the captions' words are one token each
HELD_OUT_SEED = 1_000_003  # added to the seed: the held-out videos never share a seed with the training ones


class ToyOptions(BaseModel):
    """Settings of `train_toy` (the flags of `artemis model train-toy`)."""

    model_config = ConfigDict(extra="forbid")

    out: Path
    seed: int = Field(0, ge=0)
    videos: int = Field(200, ge=2, le=1000, description="training videos (two targets each)")
    held_out: int = Field(25, ge=1, le=1000, description="held-out videos for the evaluation")
    overrides: list[str] = Field(default_factory=list, description="stageN.key=value, applied to stage N's config")
    device: DeviceName = "cpu"
    fresh: bool = False
    show_progress: bool = True

    def fingerprint(self) -> dict:
        from artemis_cli import __version__

        return {"artemis": __version__, **self.model_dump(mode="json", exclude={"out", "fresh", "show_progress"})}

    def stage_overrides(self, stage: int) -> list[str]:
        prefix = f"stage{stage}."
        return [item[len(prefix):] for item in self.overrides if item.startswith(prefix)]


@dataclass
class ToyResult:
    out: Path
    model: Path
    steps: list[dict] = field(default_factory=list)  # key, title, status (ok/reused), seconds, detail
    learn: dict = field(default_factory=dict)  # `LearnReport.to_json()` of the held-out evaluation
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"out": str(self.out), "model": str(self.model), "steps": self.steps, "learn": self.learn,
                "seconds": round(self.seconds, 2)}


def check_overrides(overrides: list[str]) -> None:
    for item in overrides:
        stage, dot, rest = item.partition(".")
        if not dot or stage not in ("stage1", "stage2", "stage3") or "=" not in rest:
            raise UsageError(f"--set {item!r}: expected stageN.key=value (N = 1, 2, 3), e.g. stage3.train.epochs=2")


def held_out_sample(folder: Path, *, seed: int, videos: int, clip: Path, device: str = "cpu",
                    show_progress: bool = False) -> Path:
    """Fresh videos for the evaluation: a `--motion classes` sample (seed `seed` + `HELD_OUT_SEED`) with clip
    features extracted by the CLIP tower in `clip` (the one the evaluated model uses). Returns `folder`."""
    from artemis_cli.data.sample import make_sample

    shutil.rmtree(folder, ignore_errors=True)
    make_sample(folder, seed=seed + HELD_OUT_SEED, videos=max(videos, 2), feature_dim=FEATURE_DIM, targets=TARGETS,
                motion="classes", size=FRAME_SIZE)
    hc = folder / "DATA_ROOT" / "Artemis_data" / "HC-STVG"
    _extract(hc / "videos", hc / "clip_feature", clip, device, show_progress)
    return folder


def _extract(videos: Path, output: Path, clip: Path, device: str, show_progress: bool) -> None:
    from artemis_cli.features.extract import ExtractConfig, extract_features
    from artemis_cli.errors import InputError

    summary = extract_features(ExtractConfig(input=videos, output=output, model=str(clip), device=device,
                                             overwrite=True, workers=0), show_progress=show_progress)
    if not summary.ok:
        failure = summary.failures[0]
        raise InputError(f"{summary.failed} of {summary.total} videos failed, first {failure['name']}: {failure['reason']}")


def stage_config(options: ToyOptions, stage: int) -> Path:
    """Stage `stage`'s shipped config with its paths pointed into OUT, written to OUT/configs/stageN.yaml."""
    import yaml

    from artemis_cli.common.atomic import atomic_write_text
    from artemis_cli.common.config import read_yaml

    out = options.out
    config = read_yaml(CONFIGS / f"toy_stage{stage}.yaml")
    train_data = out / "data" / "train"
    annotations = {1: ["stage1/pretrain.json"], 2: ["stage2"], 3: ["stage3/hc_stvg_train.json"]}[stage]
    config["data"].update(root=str(train_data / "DATA_ROOT"),
                          annotations=[str(train_data / "annotations" / a) for a in annotations])
    config["train"].update(output_dir=str(out / "runs" / f"stage{stage}"), device=options.device, seed=options.seed)
    if stage in (1, 2):
        config["model"].update(path=str(out / "tiny" / "vicuna"), image_tower=str(out / "tiny" / "clip"))
    if stage == 2:
        config["model"]["projector"] = str(out / "runs" / "stage1" / "mm_projector.bin")
    if stage == 3:
        config["model"]["path"] = str(out / "runs" / "stage2")
    path = out / "configs" / f"stage{stage}.yaml"
    atomic_write_text(path, f"# artemis model train-toy: stage {stage} of the toy recipe ({CONFIGS.name}/toy_stage{stage}.yaml)\n"
                      + yaml.safe_dump(config, sort_keys=False))
    return path


def _steps(options: ToyOptions) -> list[tuple[str, str, Callable[[], str]]]:
    out = options.out
    show = options.show_progress
    train_data, held_out = out / "data" / "train", out / "data" / "held_out"
    clip = out / "tiny" / "clip"

    def data() -> str:
        from artemis_cli.data.sample import make_sample

        shutil.rmtree(train_data, ignore_errors=True)
        summary = make_sample(train_data, seed=options.seed, videos=options.videos, feature_dim=FEATURE_DIM,
                              targets=TARGETS, motion="classes", size=FRAME_SIZE)
        return f"{options.videos} videos ({options.videos - 1} for training), {summary.files} files"

    def tiny() -> str:
        from artemis_cli.model.tiny import save_tiny_start

        shutil.rmtree(out / "tiny", ignore_errors=True)
        save_tiny_start(out / "tiny", seed=options.seed, vocab_size=VOCAB)
        return f"2-layer Llama (width 64, vocabulary {VOCAB}), CLIP width 64"

    def features() -> str:
        hc = train_data / "DATA_ROOT" / "Artemis_data" / "HC-STVG"
        _extract(hc / "videos", hc / "clip_feature", clip, options.device, show)
        held_out_sample(held_out, seed=options.seed, videos=options.held_out, clip=clip, device=options.device,
                        show_progress=show)
        return f"{options.videos} training + {max(options.held_out, 2)} held-out videos"

    def train_stage(stage: int) -> Callable[[], str]:
        def run() -> str:
            from artemis_cli.train.config import load_train_config
            from artemis_cli.train.run import train

            path = stage_config(options, stage)
            shutil.rmtree(out / "runs" / f"stage{stage}", ignore_errors=True)
            result = train(load_train_config(stage, path, options.stage_overrides(stage)), show_progress=show,
                           config_source=str(path))
            loss = f", last loss {result.last_loss:.3f}" if result.last_loss is not None else ""
            return f"{result.global_step} steps on {result.samples} records{loss}"

        return run

    def merge() -> str:
        from artemis_cli.model.loading import merge_lora

        shutil.rmtree(out / "model", ignore_errors=True)
        merged = merge_lora(out / "runs" / "stage3", out / "runs" / "stage2", out / "model", overwrite=True)
        make_movable(merged, clip)
        return "LoRA + RoI module + projector merged; CLIP tower in model/clip"

    def evaluate() -> str:
        report = evaluate_model(out / "model", held_out, device=options.device, show_progress=show)
        from artemis_cli.common.atomic import atomic_write_json

        atomic_write_json(out / "learn.json", report.to_json(answers=True))
        boxed = report.conditions["boxed"]
        return f"colour {boxed.colour:.0%}, direction {boxed.direction:.0%} on {boxed.questions} questions"

    return [("data", "data make-sample (train and held-out)", data), ("tiny", "model make-tiny", tiny),
            ("features", "features extract", features),
            *((f"stage{s}", f"train stage{s}", train_stage(s)) for s in (1, 2, 3)),
            ("merge", "model merge-lora", merge), ("evaluate", "held-out evaluation", evaluate)]


def make_movable(model: Path, clip: Path) -> None:
    """Copy the CLIP tower into `model/clip` and name it relative to the checkpoint (``mm_image_tower: clip``), so
    the folder loads wherever it is moved (the package ships it this way)."""
    from artemis_cli.common.atomic import atomic_write_json

    shutil.copytree(clip, model / "clip", dirs_exist_ok=True)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["mm_image_tower"] = "clip"
    atomic_write_json(model / "config.json", config)


def evaluate_model(model: Path | str, held_out: Path, *, device: str = "cpu", show_progress: bool = False):
    """Load `model` and run `learn.evaluate_learning` on the held-out sample; returns the `LearnReport`."""
    from artemis_cli.demo.learn import evaluate_learning
    from artemis_cli.model.loading import load_model

    loaded = load_model(model, device=device, dtype="float32")
    if not show_progress:
        return evaluate_learning(loaded, held_out)
    from artemis_cli.common.console import make_progress

    with make_progress() as bar:
        task = bar.add_task("held-out questions", total=None)
        return evaluate_learning(loaded, held_out, progress=lambda done, total: bar.update(task, completed=done,
                                                                                            total=total))


def _read_state(options: ToyOptions) -> dict[str, Any]:
    path = options.out / STATE_FILE
    if options.fresh or not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or state.get("settings") != options.fingerprint():
        return {}
    return state.get("steps", {})


def train_toy(options: ToyOptions, log: Callable[[str], None] = lambda line: None) -> ToyResult:
    """Run the toy recipe into `options.out` (module docstring); `log` gets one line per step. Returns what each
    step did and the held-out table. Deterministic on CPU for a given seed."""
    from artemis_cli.common.atomic import atomic_write_json

    started = time.perf_counter()
    check_overrides(options.overrides)
    out = options.out = options.out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_FILE).is_file():
        raise UsageError(f"OUT {out}: the folder is not empty and holds no earlier train-toy run (no {STATE_FILE})",
                         hint="pass a new or empty folder; train-toy never clears a folder it did not make")
    out.mkdir(parents=True, exist_ok=True)
    earlier = _read_state(options)
    steps = _steps(options)
    done: dict[str, dict] = {}
    resuming = True
    for number, (key, title, run) in enumerate(steps, start=1):
        entry = earlier.get(key)
        if resuming and isinstance(entry, dict) and entry.get("status") in ("ok", "reused"):
            done[key] = {**entry, "status": "reused"}
        else:
            resuming = False
            log(f"[{number}/{len(steps)}] {title} ...")
            begun = time.perf_counter()
            detail = run()
            done[key] = {"key": key, "title": title, "status": "ok", "seconds": round(time.perf_counter() - begun, 1),
                         "detail": detail}
            atomic_write_json(out / STATE_FILE, {"version": STATE_VERSION, "settings": options.fingerprint(),
                                                  "steps": done})
        entry = done[key]
        log(f"[{number}/{len(steps)}] {title}: {entry['status']} in {entry['seconds']:.1f} s, {entry['detail']}")
    learn = json.loads((out / "learn.json").read_text(encoding="utf-8"))
    learn.pop("answers", None)
    return ToyResult(out=out, model=out / "model", steps=list(done.values()), learn=learn,
                     seconds=time.perf_counter() - started)
