"""Resume and DeepSpeed: a killed stage-3 run resumed from its last checkpoint ends where an
uninterrupted one does; ZeRO-2 on CPU gives the plain Trainer's losses. Both run `artemis` as a
subprocess (a kill needs a process; DeepSpeed initialises a process group)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from artemis_cli.cli.app import app

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "configs" / "sample_stage3.yaml"
runner = CliRunner()


def clean_env() -> dict[str, str]:
    """The caller's environment without anything a launcher or DeepSpeed would set: `artemis` must
    set what it needs itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                                             "MASTER_ADDR", "MASTER_PORT", "DS_ACCELERATOR")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def stage3_args(out: str, *extra: str) -> list[str]:
    return ["train", "stage3", "-c", str(CONFIG), "-o", out, "--set", "train.max_steps=8", "--set", "train.save_steps=2",
            *extra]


def losses(run: Path) -> list[float]:
    state = json.loads((run / "trainer_state.json").read_text())
    return [e["loss"] for e in state["log_history"] if "loss" in e and "step" in e]


def trained_weights(run: Path) -> dict[str, torch.Tensor]:
    weights = dict(load_file(str(run / "adapter_model.safetensors")))
    weights.update(torch.load(run / "non_lora_trainables.bin", weights_only=True))
    return weights


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_step_count_and_files(train_workspace):
    killed = train_workspace / "artemis-sample" / "runs" / "killed"
    process = subprocess.Popen([sys.executable, "-m", "artemis_cli", *stage3_args(str(killed), "--json")],
                               cwd=train_workspace, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoint-2" / "checkpoint_complete.json").exists():  # written last: complete
        assert process.poll() is None, process.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint-2 within 240 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (killed / "non_lora_trainables.bin").exists()  # killed before the end
    done = [int(p.name.split("-")[1]) for p in killed.glob("checkpoint-*") if (p / "checkpoint_complete.json").exists()]

    result = runner.invoke(app, stage3_args(str(killed), "--resume", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["global_step"] == 8 and summary["resumed_from"].endswith(f"checkpoint-{max(done)}")
    assert {"adapter_config.json", "adapter_model.safetensors", "non_lora_trainables.bin", "config.json",
            "loss.png"} <= {p.name for p in killed.iterdir()}
    assert json.loads((killed / "manifest.json").read_text())["resumed_from"].endswith(f"checkpoint-{max(done)}")

    straight = train_workspace / "artemis-sample" / "runs" / "straight"
    assert runner.invoke(app, stage3_args(str(straight), "--json")).exit_code == 0
    assert len(losses(killed)) == len(losses(straight)) == 8
    torch.testing.assert_close(torch.tensor(losses(killed)), torch.tensor(losses(straight)), rtol=1e-5, atol=1e-5)
    resumed, reference = trained_weights(killed), trained_weights(straight)
    assert resumed.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=1e-5, atol=1e-6)

    again = runner.invoke(app, stage3_args(str(straight)))
    assert again.exit_code == 2 and "--resume" in again.output  # a finished run is not silently redone


@pytest.mark.slow
def test_zero2_on_cpu_gives_the_plain_trainer_losses(train_workspace):
    plain = train_workspace / "artemis-sample" / "runs" / "plain"
    zero2 = train_workspace / "artemis-sample" / "runs" / "zero2"
    extra = ("--set", "train.max_steps=3", "--json")
    assert runner.invoke(app, stage3_args(str(plain), *extra)).exit_code == 0
    process = subprocess.run([sys.executable, "-m", "artemis_cli", *stage3_args(str(zero2), "--deepspeed", "zero2",
                                                                                 *extra)],
                             cwd=train_workspace, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    summary = json.loads(process.stdout)  # stdout holds only the JSON result, DeepSpeed logs went to stderr
    assert summary["global_step"] == 3
    assert json.loads((zero2 / "manifest.json").read_text())["deepspeed"]["name"] == "zero2"
    assert list(zero2.glob("checkpoint-2/global_step2/*optim_states.pt"))  # DeepSpeed's own checkpoint
    torch.testing.assert_close(torch.tensor(losses(zero2)), torch.tensor(losses(plain)), rtol=1e-5, atol=1e-5)
    a, b = trained_weights(zero2), trained_weights(plain)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
