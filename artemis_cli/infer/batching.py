"""The batch loop of `infer`: prepare inputs one batch ahead, generate, write, set failures aside.

Preparing (feature and frame loading, CLIP preprocessing) runs in a worker thread while the model
answers the previous batch. A sample whose inputs cannot be loaded fails alone. A batch that the
model rejects (`ArtemisError`) is retried one sample at a time so only the bad sample fails; a
batch that runs out of GPU memory is split in two and the batch size halved for the rest of the run.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from rich.progress import ProgressColumn
from rich.text import Text

from artemis_cli.errors import ArtemisError
from artemis_cli.data.benchmarks import BenchmarkSample
from artemis_cli.infer.tasks import build_requests

MAX_LISTED_FAILURES = 20


class RateColumn(ProgressColumn):
    """Samples per second since the bar started.

    Whole batches finish at once, so rich's own estimate (over the last few updates) would show a
    batch's size divided by the milliseconds between two updates; samples over elapsed time is the
    rate a user can plan with."""

    def render(self, task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("- samples/s", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:.2f} samples/s", style="progress.data.speed")


class ErrorLog:
    """``<output>.errors.jsonl``: created on the first failure, one flushed line per failed sample."""

    def __init__(self, path) -> None:
        self.path = path
        self._handle = None

    def __enter__(self) -> "ErrorLog":
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, record: dict) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()


class BatchRunner:
    """Runs samples through `generate_texts` and records each as a result line or a failure."""

    def __init__(self, loaded, decoding, prompt, out, errors, summary):
        self.loaded = loaded
        self.decoding = decoding
        self.prompt = prompt
        self.out = out
        self.errors = errors
        self.summary = summary
        self._advance = lambda n: None

    # ---- bookkeeping ------------------------------------------------------------------------------
    def fail(self, sample: BenchmarkSample, reason: str, stage: str) -> None:
        record = {"id": sample.id, "stage": stage, "error": reason}
        self.errors.write(record)
        self.summary.failed += 1
        if len(self.summary.failures) < MAX_LISTED_FAILURES:
            self.summary.failures.append(record)
        self._advance(1)

    def _finish(self, sample: BenchmarkSample, preds: list[str]) -> None:
        self.out.write(sample.result(preds))
        self.summary.done += 1
        self._advance(1)

    # ---- stages -----------------------------------------------------------------------------------
    def prepare(self, batch: list[BenchmarkSample]) -> list[tuple[BenchmarkSample, Any]]:
        """(sample, requests) for each sample, or (sample, error message) when its inputs fail to load."""
        prepared = []
        for sample in batch:
            try:
                prepared.append((sample, build_requests(sample, self.loaded, self.prompt, self.decoding.seed)))
            except ArtemisError as exc:
                prepared.append((sample, exc.message))
            except OSError as exc:  # unreadable frame or feature (PIL.UnidentifiedImageError is an OSError)
                prepared.append((sample, f"{type(exc).__name__}: {exc}"))
        return prepared

    def answer(self, items: list[tuple[BenchmarkSample, list]]) -> None:
        """Generate for prepared samples and write them; isolate failures (see module docstring)."""
        import torch

        from artemis_cli.model.generation import generate_texts

        if not items:
            return
        by_choice = [item for item in items if item[0].choices]
        if by_choice:
            self.choose(by_choice)
            items = [item for item in items if not item[0].choices]
            if not items:
                return
        requests = [request for _, reqs in items for request in reqs]
        try:
            texts = generate_texts(self.loaded.model, self.loaded.tokenizer, requests, self.decoding)
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(items) == 1:
                self.fail(items[0][0], f"out of GPU memory with {len(requests)} prompt(s)", "generate")
                return
            self.batch_size = max(1, self.batch_size // 2)
            self.summary.batch_size = self.batch_size
            half = len(items) // 2
            self.answer(items[:half])
            self.answer(items[half:])
            return
        except ArtemisError as exc:
            if len(items) == 1:
                self.fail(items[0][0], exc.message, "generate")
                return
            for item in items:
                self.answer([item])
            return
        position = 0
        for sample, reqs in items:
            self._finish(sample, texts[position:position + len(reqs)])
            position += len(reqs)

    def choose(self, items: list[tuple[BenchmarkSample, list]]) -> None:
        """Answer multiple-choice samples by their most likely option (`infer.loglik`), one at a time."""
        from artemis_cli.infer.loglik import choose_option

        for sample, requests in items:
            try:
                best, _ = choose_option(self.loaded, requests[0], list(sample.choices))
            except ArtemisError as exc:
                self.fail(sample, exc.message, "loglikelihood")
                continue
            self._finish(sample, [sample.choices[best]])

    def auto_batch_size(self, samples: list[BenchmarkSample]) -> int:
        """`generation.auto_batch_size` for these samples; on CUDA the first one is loaded to size its prompt."""
        from artemis_cli.model.generation import AUTO_BATCH_CAP, auto_batch_size

        device = str(self.loaded.model.device)
        if not device.startswith("cuda"):
            return AUTO_BATCH_CAP["cpu"]
        prompt_tokens = 512
        for _, requests in self.prepare(samples[:1]):
            if not isinstance(requests, str):
                prompt_tokens = len(requests[0].input_ids) + sum(m.shape[0] for m in requests[0].media)
        return auto_batch_size(self.loaded.model, device, prompt_tokens, self.decoding.max_new_tokens)

    def run(self, samples: list[BenchmarkSample], batch_size: int, *, show_progress: bool = True, label: str = "infer") -> None:
        """Answer `samples` in batches of at most `batch_size` prompts, preparing one batch ahead."""
        from artemis_cli.common.console import make_progress

        self.batch_size = batch_size
        progress: Optional[Any] = make_progress(RateColumn()) if show_progress and samples else None
        if progress is not None:
            progress.start()
            task = progress.add_task(label, total=len(samples))
            self._advance = lambda n: progress.advance(task, n)
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="artemis-prepare") as pool:
                pending = list(samples)
                future = None
                while pending or future is not None:
                    if future is None:
                        batch, pending = self._take(pending)
                        future = pool.submit(self.prepare, batch)
                    prepared = future.result()
                    future = None
                    if pending:  # prepare the next batch while this one generates
                        batch, pending = self._take(pending)
                        future = pool.submit(self.prepare, batch)
                    ready = []
                    for sample, requests in prepared:
                        if isinstance(requests, str):
                            self.fail(sample, requests, "inputs")
                        else:
                            ready.append((sample, requests))
                    self.answer(ready)
        finally:
            if progress is not None:
                progress.stop()
            self._advance = lambda n: None

    def _take(self, pending: list[BenchmarkSample]) -> tuple[list[BenchmarkSample], list[BenchmarkSample]]:
        count = first_batch(pending, self.batch_size)
        return pending[:count], pending[count:]


def first_batch(samples: list[BenchmarkSample], batch_size: int) -> int:
    """How many leading samples make one batch of at most `batch_size` prompts (at least one sample;
    a consistency sample asks two)."""
    rows = 0
    for count, sample in enumerate(samples):
        rows += max(1, len(sample.questions))
        if rows > batch_size and count > 0:
            return count
    return len(samples)
