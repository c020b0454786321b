"""Training progress on the console (rich: step, loss, learning rate, tokens/s) and the `loss.png` plot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from transformers import TrainerCallback


class RichProgress(TrainerCallback):
    """One rich progress bar over optimizer steps, updated with the last logged loss and tokens/s.

    Only the main process draws; a resumed run starts the bar at the checkpoint's step."""

    def __init__(self, description: str, enabled: bool = True):
        self.description = description
        self.enabled = enabled
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not (self.enabled and state.is_world_process_zero):
            return
        from rich.progress import TextColumn

        from artemis_cli.common.console import make_progress

        self.progress = make_progress(TextColumn("{task.fields[stats]}"))
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=state.max_steps, completed=state.global_step,
                                           stats="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs or "loss" not in logs:
            return
        parts = [f"loss {logs['loss']:.4f}"]
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if "tokens_per_s" in logs:
            parts.append(f"{logs['tokens_per_s']:,.0f} tok/s")
        self.progress.update(self.task, stats="  ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None


def loss_points(log_history: Sequence[dict]) -> tuple[list[int], list[float]]:
    """(steps, losses) of the per-step training logs (the final summary entry excluded)."""
    steps, losses = [], []
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            steps.append(int(entry["step"]))
            losses.append(float(entry["loss"]))
    return steps, losses


def plot_losses(log_history: Sequence[dict], path: Path, title: str) -> Optional[Path]:
    """Write the training loss curve to `path` (PNG, atomically); None when nothing was logged."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from artemis_cli.common.atomic import atomic_write_bytes

    steps, losses = loss_points(log_history)
    if not steps:
        return None
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    axis.plot(steps, losses, marker="." if len(steps) < 60 else None, linewidth=1.2)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path
