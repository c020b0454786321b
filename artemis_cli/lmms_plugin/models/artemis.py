"""Artemis as an lmms-eval model (``--model artemis --model_args pretrained=DIR[,features=DIR,...]``).

A document of our tasks (`lmms_plugin.samples`) is answered as `artemis infer` answers its sample: the
RoI path with the region's track (`infer.tasks.build_requests`). Any other task's document is a question
about a whole video: its first visual names the video, whose clip feature is read from ``features``
(``<video name>.pkl``, what `artemis features extract` writes), and the question is the task's context.
A document that cannot be answered (a bad record, a missing feature) gets an empty answer, is logged
and counted (`failures`), never dropped: the task's metric then counts it wrong. ``loglikelihood``
scores a continuation after the prompt (`infer.loglik`); greedy decoding when ``temperature`` is 0.
Tested with lmms-eval 0.7.3 (its evaluator needs ``filelock<4``; its ``LMMS_EVAL_PLUGINS`` task lookup runs
after the task index is built, so our tasks are reached with ``--include_path``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms


class Artemis(lmms):
    is_simple = True

    def __init__(self, pretrained: str, model_base: Optional[str] = None, image_tower: Optional[str] = None,
                 features: Optional[str] = None, device: Optional[str] = "auto", dtype: str = "auto",
                 batch_size: Any = 1, template: str = "llava_v1", num_tracked: Any = 8, seed: Any = 0,
                 **kwargs: Any) -> None:
        super().__init__()
        from artemis_cli.common.devices import resolve_device
        from artemis_cli.infer.tasks import PromptOptions
        from artemis_cli.model.loading import load_model

        self.loaded = load_model(pretrained, model_base, device=resolve_device(device or "auto"), dtype=dtype,
                                 image_tower=image_tower)
        self.features = Path(features) if features else None
        self.batch_size_per_gpu = max(1, int(batch_size or 1))
        self.prompt = PromptOptions(template=template, num_tracked=int(num_tracked))
        self.seed = int(seed)
        self.failures: list[tuple[str, str]] = []  # (document, reason)

    # ---- requests -> Artemis' inputs ------------------------------------------------------------------------
    def _requests(self, request: Instance) -> list:
        """The `GenerationRequest`s of one lmms-eval request (raises `ArtemisError`/`OSError` when it cannot run)."""
        from artemis_cli.data.benchmarks import feature_file
        from artemis_cli.errors import InputError
        from artemis_cli.infer.tasks import build_requests, video_question
        from artemis_cli.lmms_plugin.samples import sample_of
        from artemis_cli.model.generation import request_seed
        from artemis_cli.model.inputs import load_video_feature

        context, _, doc_to_visual, doc_id, task, split = request.args[:6]
        doc = self.task_dict[task][split][doc_id]
        if doc.get("artemis_benchmark"):
            sample = sample_of(doc)
            if sample.problem:
                raise InputError(sample.problem)
            return build_requests(sample, self.loaded, self.prompt, self.seed)
        visuals = [v for v in doc_to_visual(doc) if isinstance(v, str)]
        if not visuals:
            raise InputError(f"{task}[{doc_id}]: no video path among the document's visuals")
        if self.features is None:
            raise InputError(f"{task}: Artemis reads clip features: pass --model_args features=DIR")
        name = Path(visuals[0].rstrip("/")).name
        feature = feature_file(self.features, Path(name).stem if Path(name).suffix else name)
        video = load_video_feature(feature, self.loaded.model.mm.mm_hidden_size)
        return [video_question(context, video, self.loaded.tokenizer, self.prompt.template,
                               request_seed(self.seed, f"{task}/{doc_id}"))]

    def _prepared(self, request: Instance):
        from artemis_cli.errors import ArtemisError

        try:
            return self._requests(request)
        except (ArtemisError, OSError) as exc:
            context, _, _, doc_id, task = request.args[:5]
            reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.failures.append((f"{task}[{doc_id}]", reason))
            from loguru import logger

            logger.warning(f"artemis: {task}[{doc_id}] not answered: {reason}")
            return None

    # ---- lmms-eval's API -----------------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Answers in request order; requests with the same generation settings go in batches of ``batch_size``."""
        import json

        from artemis_cli.model.generation import generate_texts

        answers: list[str] = [""] * len(requests)
        groups: dict[str, list[tuple[int, Any]]] = {}
        for position, request in enumerate(requests):
            prepared = self._prepared(request)
            if prepared is not None:
                kwargs = request.args[1] or {}
                groups.setdefault(json.dumps(kwargs, sort_keys=True, default=str), []).append((position, prepared[0]))
        for key, items in groups.items():
            kwargs = json.loads(key)
            decoding = self._decoding(kwargs)
            for start in range(0, len(items), self.batch_size_per_gpu):
                chunk = items[start:start + self.batch_size_per_gpu]
                texts = generate_texts(self.loaded.model, self.loaded.tokenizer, [r for _, r in chunk], decoding)
                for (position, _), text in zip(chunk, texts):
                    answers[position] = _cut(text, kwargs.get("until"))
        if self.failures:
            from loguru import logger

            logger.warning(f"artemis: {len(self.failures)} document(s) not answered (empty answers, counted wrong)")
        return answers

    def _decoding(self, kwargs: dict[str, Any]):
        """lmms-eval's generation kwargs as Artemis' decoding: greedy at temperature 0, else seeded sampling."""
        from artemis_cli.model.generation import DEFAULT_TEMPERATURE, DecodingSettings

        temperature = float(kwargs.get("temperature") or 0)
        sample = bool(kwargs.get("do_sample")) and temperature > 0
        return DecodingSettings(sample=sample, temperature=temperature if sample else DEFAULT_TEMPERATURE,
                                top_p=kwargs.get("top_p") if sample else None,
                                max_new_tokens=int(kwargs.get("max_new_tokens") or 128), seed=self.seed)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        from artemis_cli.infer.loglik import continuation_logprob

        results = []
        for request in requests:
            prepared = self._prepared(request)
            if prepared is None:
                results.append((-1e30, False))  # finite: lmms-eval sums and compares these
                continue
            results.append(continuation_logprob(self.loaded, prepared[0], request.args[1]))
        return [_passed_through(result) for result in results]

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("artemis answers one question per request (no multi-round generation)")


def _cut(text: str, until: Any) -> str:
    """`text` up to the first of lmms-eval's stop strings."""
    stops = [until] if isinstance(until, str) else list(until or [])
    for stop in stops:
        if isinstance(stop, str) and stop and stop in text:
            text = text[:text.index(stop)]
    return text


def _passed_through(value: tuple[float, bool]):
    """lmms-eval 0.7.x's evaluator turns every response that is not text (or a ``GenerationResult``) into
    ``str(response)``, so a ``(logprob, is_greedy)`` tuple would reach the task as a string and every
    multiple-choice task fails; wrapped in a ``GenerationResult`` it comes through as it is."""
    try:
        from lmms_eval.api.instance import GenerationResult, unwrap_generation_output  # noqa: F401
    except ImportError:  # an lmms-eval that passes responses through
        return value
    return GenerationResult(text=value)
