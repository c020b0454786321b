"""Where the demo writes (`Workspace`), its options (`DemoOptions`), and the commands it stands for.

Every step of the demo is one library call that an `artemis ...` command also makes. `demo_commands`
spells the command that repeats the step on the demo's own files; `REAL_COMMANDS` the one that does
it on the real data (paths as in the README walkthrough). A test parses both against the CLI.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from artemis_cli.common.devices import DeviceName
from artemis_cli.common.hub import TOY_FOLDER
from artemis_cli.data.benchmarks import BENCHMARKS, BenchmarkSpec
from artemis_cli.data.layout import ARTEMIS_DATA
from artemis_cli.judge.models import MODEL_ENV

FEATURE_DIM = 64  # the tiny CLIP's width: sample features and extracted ones fit the tiny models


def demo_benchmarks(command: str | None = None) -> list[BenchmarkSpec]:
    """The registered benchmarks the bundled sample has files for (of one `artemis infer` command)."""
    return [spec for spec in BENCHMARKS.values() if spec.demo_inputs and command in (None, spec.command)]


def demo_commands_run() -> list[str]:
    """The `artemis infer` commands the demo runs, in registry order (one demo step each)."""
    return list(dict.fromkeys(spec.command for spec in demo_benchmarks()))


VCG_SETS = tuple(spec.name for spec in demo_benchmarks("vcgbench"))
# Judge task -> the prediction file it reads: each benchmark's judge tasks (as the paper pairs them).
JUDGE_MODEL_VAR = f'"${MODEL_ENV}"'  # the reported judge commands when no --judge-model was given
JUDGE_TASKS = {task: spec.output_stem for spec in demo_benchmarks() for task in spec.judge_tasks}


class DemoOptions(BaseModel):
    """Settings of `run_demo` (the flags of `artemis demo`)."""

    model_config = ConfigDict(extra="forbid")

    out: Optional[Path] = None  # None: a temp folder, removed at the end unless `keep`
    keep: bool = False
    fresh: bool = False  # redo every step even when an earlier run into `out` finished some
    device: DeviceName = "auto"
    max_new_tokens: int = Field(32, ge=1, le=1024)
    judge_base_url: Optional[str] = None
    judge_model: Optional[str] = Field(None, min_length=1)  # no default: hosted judges retire (judge.models)
    show_progress: bool = True


    def fingerprint(self) -> dict:
        """The settings that change what the steps write: a rerun with other values starts over."""
        from artemis_cli import __version__

        return {"artemis": __version__, "device": self.device, "max_new_tokens": self.max_new_tokens}


@dataclass(frozen=True)
class Workspace:
    """The demo's folder: every path a step reads or writes."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "demo-state.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def sample(self) -> Path:
        return self.root / "sample"

    @property
    def data_root(self) -> Path:
        return self.sample / "DATA_ROOT"

    @property
    def annotations(self) -> Path:
        return self.sample / "annotations"

    @property
    def artemis_data(self) -> Path:
        return self.data_root / ARTEMIS_DATA

    @property
    def tiny(self) -> Path:
        return self.root / "tiny"

    @property
    def tiny_clip(self) -> Path:
        return self.tiny / "clip"

    def frame_sets(self) -> list[tuple[Path, Path]]:
        """(frame folders, feature folder) of the sample's frame-folder sources (GOT-10k, MGIT)."""
        a = self.artemis_data
        return [(a / "GOT-10k" / "data" / "full_data" / "train", a / "GOT-10k" / "clip_feature"),
                (a / "MGIT" / "MGIT-Train", a / "MGIT" / "clip_feature")]

    @property
    def hcstvg_videos(self) -> Path:
        return self.artemis_data / "HC-STVG" / "videos"

    @property
    def hcstvg_features(self) -> Path:
        return self.artemis_data / "HC-STVG" / "clip_feature"

    def config(self, stage: int) -> Path:
        return self.root / "configs" / f"stage{stage}.yaml"

    def run(self, name: str) -> Path:
        return self.root / "runs" / name

    def predictions(self, name: str) -> Path:
        return self.root / "preds" / f"{name}.jsonl"

    @property
    def scores(self) -> Path:
        return self.root / "scores" / "videorefbench.json"

    def judge_output(self, task: str) -> Path:
        return self.root / "judge" / task

    @property
    def judge_cache(self) -> Path:
        return self.root / "judge" / "cache"

    @property
    def toy_held_out(self) -> Path:
        """Held-out videos (with features by the toy model's tower) the toy model is evaluated on, and learn.json."""
        return self.root / "toy"

    @property
    def own_video(self) -> Path:
        """`track` + `ask` on a generated video: the video, track.json + frames, preview, answers, cache."""
        return self.root / "own_video"


# The own-video step's generated video (two boxes, as the toy model's training videos: `two_box_video`), the
# target it asks about (index, key frame) and the model it asks (the shipped toy Artemis: it names the box's colour).
OWN_VIDEO_SEED = 7_000_000
OWN_VIDEO_TARGET = (0, 0)
OWN_VIDEO_MODEL = "toy"
TOY_HELD_OUT = 8  # held-out videos the demo evaluates the toy model on


def own_video_box() -> str:
    """The demo target's box on its key frame, as ``--box`` takes it."""
    from artemis_cli.data.synthetic_video import two_box_video

    index, frame = OWN_VIDEO_TARGET
    return ",".join(f"{v:g}" for v in two_box_video(OWN_VIDEO_SEED).targets[index].boxes[frame])


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def infer_inputs(ws: Workspace, spec: BenchmarkSpec) -> dict[str, Path]:
    """The input paths of `spec` on the demo's files: its sample annotation files, the sample's
    DATA_ROOT and the HC-STVG features (which the sample's QA and Video-ChatGPT records use)."""
    shared = {"data_root": ws.data_root, "features": ws.hcstvg_features}
    return {name: ws.annotations / spec.demo_inputs[name] if name in spec.demo_inputs else shared[name]
            for name in spec.inputs}


def _infer_command(ws: Workspace, spec: BenchmarkSpec, model: str) -> str:
    """`artemis infer` of one benchmark on the demo's files (the model first when no option picks the benchmark)."""
    selector = f" {spec.selector[0]} {spec.selector[1]}" if spec.selector else ""
    inputs = " ".join(f"--{name.replace('_', '-')} {_q(path)}" for name, path in infer_inputs(ws, spec).items())
    middle = f"{inputs} {model}" if spec.selector else f"{model} {inputs}"
    return f"artemis infer {spec.command}{selector} {middle} -o {_q(ws.predictions(spec.output_stem))}"


def demo_commands(ws: Workspace, options: DemoOptions) -> dict[str, list[str]]:
    """Per step, the `artemis` commands that repeat it on the demo's files (same flags as the demo's call)."""
    a = ws.annotations
    device = f" --device {options.device}" if options.device != "auto" else ""
    tokens = f" --max-new-tokens {options.max_new_tokens}"
    model = f"--model {_q(ws.run('merged'))}"
    features = [f"artemis features extract {_q(frames)} {_q(out)} --frames --model {_q(ws.tiny_clip)} --overwrite{device}"
                for frames, out in ws.frame_sets()]
    judge_url = f" --base-url {_q(options.judge_base_url)}" if options.judge_base_url else ""
    return {
        "doctor": [f"artemis doctor --path {_q(ws.root)}"],
        "make-sample": [f"artemis data make-sample {_q(ws.sample)} --feature-dim {FEATURE_DIM} --overwrite"],
        "make-tiny": [f"artemis model make-tiny {_q(ws.tiny)}"],
        "verify-layout": [f"artemis data verify-layout {_q(ws.data_root)} --annotations {_q(a)} --check-features"],
        "features-videos": [f"artemis features extract {_q(ws.hcstvg_videos)} {_q(ws.hcstvg_features)} "
                            f"--model {_q(ws.tiny_clip)} --overwrite{device}"],
        "features-frames": features,
        **{f"train-stage{s}": [f"artemis train stage{s} -c {_q(ws.config(s))} --overwrite"] for s in (1, 2, 3)},
        "merge-lora": [f"artemis model merge-lora {_q(ws.run('stage3'))} {_q(ws.run('merged'))} "
                       f"--base {_q(ws.run('stage2'))} --overwrite"],
        **{f"infer-{command}": [_infer_command(ws, spec, model) + f"{tokens}{device} --overwrite"
                                for spec in demo_benchmarks(command)] for command in demo_commands_run()},
        "score": [f"artemis score {_q(ws.predictions('videorefbench'))} --no-length-filter "
                  f"--per-sample {_q(ws.scores.with_suffix('.per_sample.jsonl'))}"],
        "own-video": [f"artemis track {_q(ws.own_video / 'clip.mp4')} --box {own_video_box()} --frame {OWN_VIDEO_TARGET[1]} "
                      f"-o {_q(ws.own_video / 'track.json')} --clip-model {_q(TOY_FOLDER / 'clip')} --preview "
                      f"{_q(ws.own_video / 'track.png')} --cache-dir {_q(ws.own_video / 'cache')} --overwrite{device}",
                      f"artemis ask {_q(ws.own_video / 'clip.mp4')} --box {own_video_box()} --frame {OWN_VIDEO_TARGET[1]} "
                      f"--model {OWN_VIDEO_MODEL} --cache-dir {_q(ws.own_video / 'cache')}{tokens}{device}"],
        "toy-eval": [f"artemis model eval-toy {_q(ws.toy_held_out)} --model toy --videos {TOY_HELD_OUT} --overwrite{device}"],
        "judge": [f"artemis judge gpt {_q(ws.predictions(name))} --task {task} --model {_q(options.judge_model) if options.judge_model else JUDGE_MODEL_VAR}{judge_url} "
                  f"--output {_q(ws.judge_output(task))} --cache {_q(ws.judge_cache)} --overwrite"
                  for task, name in JUDGE_TASKS.items()],
    }


# The same steps on the real data, with the paths of the README walkthrough. A line starting with
# '#' is a note (the step has no `artemis` equivalent on real data).
_DR = "/data/DATA_ROOT"
_MSVD = "/data/eval/MSVD_Zero_Shot_QA"
_VCG = "/data/eval/video_chatgpt_bench"
_MERGED = "./checkpoints/Artemis-7b"
REAL_COMMANDS: dict[str, list[str]] = {
    "doctor": ["artemis doctor --path /data"],
    "make-sample": ["# download the datasets and annotations into /data/DATA_ROOT and /data/annotations "
                    "(README: 'From real data to a score')"],
    "make-tiny": ["# the published configs start from lmsys/vicuna-7b-v1.5 and openai/clip-vit-large-patch14 "
                  "(hub ids or local copies)"],
    "verify-layout": [f"artemis data verify-layout {_DR} --annotations /data/annotations --check-features"],
    "features-videos": [f"artemis features extract {_MSVD}/videos {_MSVD}/clip_feature"],
    "features-frames": [f"artemis features extract {_DR}/Artemis_data/GOT-10k/data/full_data/train "
                        f"{_DR}/Artemis_data/GOT-10k/clip_feature --frames",
                        f"artemis features extract {_DR}/Artemis_data/MGIT/MGIT-Train {_DR}/Artemis_data/MGIT/clip_feature "
                        "--frames"],
    **{f"train-stage{s}": [f"torchrun --nproc_per_node 8 -m artemis_cli train stage{s} -c examples/configs/stage{s}.yaml"]
       for s in (1, 2, 3)},
    "merge-lora": [f"artemis model merge-lora ./checkpoints/Artemis-7b-lora {_MERGED} --base ./checkpoints/Artemis-7b-ftune"],
    "infer-videorefbench": [f"artemis infer videorefbench --model {_MERGED} --annotations "
                            f"/data/annotations/videorefbench_json/hc_stvg_val.json --data-root {_DR} "
                            "-o preds/videorefbench.jsonl"],
    "infer-qa": [f"artemis infer qa --dataset msvd --questions {_MSVD}/test_q.json --answers {_MSVD}/test_a.json "
                 f"--features {_MSVD}/clip_feature --model {_MERGED} -o preds/msvd_qa.jsonl"],
    "infer-vcgbench": [f"artemis infer vcgbench --subset {qset} --annotations {_VCG}/{qset}_qa.json "
                       f"--features {_VCG}/clip_feature --model {_MERGED} -o preds/vcgbench_{qset}.jsonl"
                       for qset in VCG_SETS],
    "score": ["artemis score preds/videorefbench.jsonl"],
    "own-video": ["artemis track my_video.mp4 --box 120,80,360,400 --frame 30 -o my_track/track.json "
                  "--preview my_track/track.png",
                  f"artemis ask my_video.mp4 --box 120,80,360,400 --frame 30 'What is the <bbox> doing in this video?' "
                  f"--model {_MERGED}"],
    "toy-eval": ["artemis model train-toy toy-run", "artemis model eval-toy toy-eval --model toy-run/model"],
    "judge": [f"artemis judge gpt preds/{name}.jsonl --task {task} --model {JUDGE_MODEL_VAR}"
              for task, name in JUDGE_TASKS.items()],
}
