"""Batched generation: left padding, per-row stop at ``</s>``, greedy or seeded sampling.

Greedy decoding (the default) gives each row exactly what a batch of one gives. Sampling
(`--sample`, the published setting: temperature 0.2 and the checkpoint's or transformers' default
top-k 50 / top-p 1.0) draws every row from its own generator, seeded from the run seed and the
sample id, so a sample's text does not depend on its batch, its shard or a resume.

A `RowStreamer` hands each row's new tokens on as they are generated, although the rows are
generated together (a server streams each request of a batch to its own client), can stop one row
(a stop string, a client gone) while the others go on, and can give each token's log-probability.
The tokens generated are the same with or without it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TEMPERATURE = 0.2  # the published eval scripts
HF_DEFAULT_TOP_K = 50  # what transformers applies when sampling and nothing else is set
ROI_CHUNK = 1  # samples per tower + RoI module call: 9 frames already fill a GPU; more only adds memory traffic
AUTO_BATCH_CAP = {"cuda": 64, "cpu": 8}


class DecodingSettings(BaseModel):
    """How to decode. `top_k`/`top_p` None = the checkpoint's generation_config.json, else 50 / 1.0."""

    model_config = ConfigDict(extra="forbid")

    sample: bool = False
    temperature: float = Field(DEFAULT_TEMPERATURE, gt=0.0)
    top_k: Optional[int] = Field(None, ge=0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    max_new_tokens: int = Field(1024, ge=1)
    seed: int = 0

    def resolved(self, generation_config: Any = None) -> "DecodingSettings":
        """Fill `top_k`/`top_p` as `generate()` would have in the published run (sampling only)."""
        if not self.sample:
            return self.model_copy(update={"top_k": None, "top_p": None})
        top_k = self.top_k if self.top_k is not None else getattr(generation_config, "top_k", None)
        top_p = self.top_p if self.top_p is not None else getattr(generation_config, "top_p", None)
        return self.model_copy(update={"top_k": HF_DEFAULT_TOP_K if top_k is None else top_k,
                                       "top_p": 1.0 if top_p is None else top_p})

    def record(self) -> dict[str, Any]:
        """What goes in the manifest (and decides whether a rerun may resume)."""
        out: dict[str, Any] = {"mode": "sample" if self.sample else "greedy", "max_new_tokens": self.max_new_tokens,
                               "seed": self.seed}
        if self.sample:
            out.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        return out


def request_seed(seed: int, sample_id: str, index: int = 0) -> int:
    """A 63-bit seed for one generation request: its RoI picks and, when sampling, its tokens."""
    digest = hashlib.sha256(f"{seed}\0{sample_id}\0{index}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class GenerationRequest:
    """One prompt to answer: token ids with -200/-500 placeholders, its media ([T, C] features),
    optional RoI frames [F, 3, S, S] + boxes [F, 4], its sampling seed and the seed of its RoI picks
    (default: the same)."""

    input_ids: list[int]
    media: list[Any]
    seed: int
    roi_seed: Optional[int] = None
    roi_frames: Any = None
    roi_boxes: Any = None
    roi_tokens: Any = None  # [1 + K, H] already encoded from roi_frames/roi_boxes (a caller's cache): not re-encoded

    @property
    def rois_seed(self) -> int:
        return self.seed if self.roi_seed is None else self.roi_seed


def seeded_sampler(seeds: Sequence[int], temperature: float, top_k: Optional[int], top_p: Optional[float]):
    """A `LogitsProcessor` that samples each row from its own generator and leaves only that token
    finite, so greedy selection returns the sample (inverse-CDF on the temperature/top-k/top-p
    distribution; one uniform number per row and step)."""
    import torch
    from transformers import LogitsProcessor, TopKLogitsWarper, TopPLogitsWarper

    warpers = []
    if top_k:
        warpers.append(TopKLogitsWarper(top_k=top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p))

    class SeededSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

        def __call__(self, input_ids, scores):
            scores = scores.float() / temperature  # [B, V]
            for warp in warpers:
                scores = warp(input_ids, scores)
            cdf = scores.softmax(-1).cumsum(-1)  # [B, V]
            # 1 - U is in (0, 1]: the first index whose cdf reaches it has a positive probability.
            uniform = torch.stack([1.0 - torch.rand((), generator=g, dtype=torch.float64) for g in self.generators])
            target = (uniform.to(cdf.device) * cdf[:, -1].double()).to(cdf.dtype)[:, None]  # [B, 1]
            choice = torch.searchsorted(cdf, target).clamp(max=cdf.shape[-1] - 1)  # [B, 1]
            out = torch.full_like(scores, float("-inf"))
            return out.scatter_(1, choice, 0.0)

    return SeededSampler()


def trim_at_eos(tokens: Sequence[int], eos_id: int) -> list[int]:
    """The tokens before the first ``</s>`` (everything after it in a padded batch is padding)."""
    tokens = list(tokens)
    return tokens[:tokens.index(eos_id)] if eos_id in tokens else tokens


def decode_answer(tokenizer, tokens: Sequence[int]) -> str:
    """New tokens -> answer text, as the published scripts post-process it."""
    text = tokenizer.decode(trim_at_eos(tokens, tokenizer.eos_token_id), skip_special_tokens=True).strip()
    stop = "</s>"
    if text.endswith(stop):
        text = text[:-len(stop)].strip()
    return text


def _left_pad(sequences: Sequence[Sequence[int]], pad_id: int):
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask  # [B, L] each


def embed_requests(model, requests: Sequence[GenerationRequest], pad_id: int, roi_chunk: int = ROI_CHUNK):
    """Encode media and RoIs (RoIs `roi_chunk` samples at a time to bound memory), splice, left-pad."""
    from artemis_cli.model.splice import splice

    device = model.get_input_embeddings().weight.device
    ids, mask = _left_pad([r.input_ids for r in requests], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    features = model.encode_media([r.media for r in requests])
    rois: list = [r.roi_tokens for r in requests]
    pending = [row for row, r in enumerate(requests) if r.roi_tokens is None]
    for start in range(0, len(pending), roi_chunk):
        rows = pending[start:start + roi_chunk]
        chunk = [requests[row] for row in rows]
        encoded = model.encode_rois([r.roi_frames for r in chunk], [r.roi_boxes for r in chunk], len(chunk),
                                    [r.rois_seed for r in chunk])
        for row, tokens in zip(rows, encoded):
            rois[row] = tokens
    text_embeds = model.get_input_embeddings()(ids.clamp(min=0))  # [B, L, H]
    return splice(ids, text_embeds, mask, None, features, rois, padding_side="left",
                  max_length=model.mm.tokenizer_model_max_length)


MAX_TOP_LOGPROBS = 20  # as OpenAI's top_logprobs


@dataclass
class TokenLogprob:
    """A generated token's log-probability under the model (its raw logits, before temperature, top-k or
    top-p) and the `top` most likely tokens of that step as (token id, log-probability), likeliest first."""

    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


TokenCallback = Callable[[int, int, Optional[TokenLogprob]], Optional[bool]]


class RowStreamer:
    """Splits a batched generation's tokens per row as they are generated.

    `on_token(row, token, logprob)` is called for each new token of each row, in order, up to the row's
    ``</s>`` (not handed on); `logprob` is a `TokenLogprob` when `top_logprobs` is given (0-20: how many
    alternatives), else None. When it returns True the row stops there (that token is its last); the
    other rows go on. After `generate_tokens`, `stopped[row]` says whether `on_token` stopped it.
    Pass it to `generate_tokens(..., streamer=)`; one streamer serves one call."""

    def __init__(self, on_token: TokenCallback, top_logprobs: Optional[int] = None):
        if top_logprobs is not None and not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top_logprobs must be 0-{MAX_TOP_LOGPROBS}, got {top_logprobs}")
        self.on_token = on_token
        self.top_logprobs = top_logprobs
        self.counts: list[int] = []  # tokens handed on per row
        self.stopped: list[bool] = []
        self._done: list[bool] = []
        self._eos: Optional[int] = None
        self._logprobs = None  # [B, V] log-softmax of the step being decided (when top_logprobs is set)

    def hooks(self, rows: int, eos_id: int):
        """(logits processor or None, stopping criterion) for `generate()`: the processor records the
        step's log-probabilities and changes nothing; the criterion hands the step's tokens on per row."""
        import torch
        from transformers import LogitsProcessor, StoppingCriteria

        self.counts, self.stopped, self._done, self._eos = [0] * rows, [False] * rows, [False] * rows, eos_id
        streamer = self

        class Record(LogitsProcessor):
            def __call__(self, input_ids, scores):
                streamer._logprobs = torch.log_softmax(scores.float(), dim=-1)  # [B, V]
                return scores

        class HandOn(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.tensor(streamer._step(input_ids[:, -1].tolist()), dtype=torch.bool,
                                    device=input_ids.device)  # [B]: True = this row is done

        return (Record() if self.top_logprobs is not None else None), HandOn()

    def _step(self, tokens: list[int]) -> list[bool]:
        for row, token in enumerate(tokens):
            if self._done[row]:
                continue
            if token == self._eos:
                self._done[row] = True
                continue
            self.counts[row] += 1
            if self.on_token(row, token, self._logprob(row, token)):
                self._done[row] = self.stopped[row] = True
        return list(self._done)

    def _logprob(self, row: int, token: int) -> Optional[TokenLogprob]:
        if self.top_logprobs is None or self._logprobs is None:
            return None
        values = self._logprobs[row]  # [V]
        top: list[tuple[int, float]] = []
        if self.top_logprobs:
            best = values.topk(self.top_logprobs)
            top = list(zip(best.indices.tolist(), best.values.tolist()))
        return TokenLogprob(float(values[token]), top)


def generate_tokens(model, tokenizer, requests: Sequence[GenerationRequest],
                    decoding: DecodingSettings, *, streamer: Optional[RowStreamer] = None) -> list[list[int]]:
    """Answer a batch of requests: each row's new tokens up to (not including) its first ``</s>``.

    `streamer` (a `RowStreamer`) gets each row's tokens as they are generated and may stop a row early
    (then its tokens end with the one it stopped at); the tokens are otherwise the same."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.unk_token_id or 0)
    # Explicit neutral values keep a checkpoint's sampling fields out of greedy decoding (and its warnings).
    config = GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                              eos_token_id=eos, pad_token_id=pad, temperature=1.0, top_k=HF_DEFAULT_TOP_K, top_p=1.0)
    processors = LogitsProcessorList()
    extra: dict[str, Any] = {}
    if streamer is not None:
        from transformers import StoppingCriteriaList

        record, hand_on = streamer.hooks(len(requests), eos)
        if record is not None:
            processors.append(record)  # first: it sees the model's own logits
        extra["stopping_criteria"] = StoppingCriteriaList([hand_on])
    if decoding.sample:
        processors.append(seeded_sampler([r.seed for r in requests], decoding.temperature, decoding.top_k,
                                         decoding.top_p))
    with torch.inference_mode():  # no autograd records for the tower and RoI module either
        spliced = embed_requests(model, requests, pad)
        new_tokens = model.generate(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask,
                                    generation_config=config, logits_processor=processors, **extra)  # [B, new]
    rows = [trim_at_eos(row, eos) for row in new_tokens.tolist()]
    if streamer is not None:  # a row stopped early is padded after its last token
        rows = [row[:streamer.counts[index]] if streamer.stopped[index] else row for index, row in enumerate(rows)]
    return rows


def generate_texts(model, tokenizer, requests: Sequence[GenerationRequest], decoding: DecodingSettings) -> list[str]:
    """Answer a batch of requests; returns one text per request, in order."""
    return [decode_answer(tokenizer, row) for row in generate_tokens(model, tokenizer, requests, decoding)]


def auto_batch_size(model, device: str, prompt_tokens: int, max_new_tokens: int) -> int:
    """The largest batch the device should hold: on CUDA, the KV cache of `prompt_tokens +
    max_new_tokens` per row plus prefill activations against 70% of the free memory, capped at 64
    (more adds padding and little speed); on CPU, 8. Out-of-memory still halves it at run time."""
    import torch

    if not str(device).startswith("cuda"):
        return AUTO_BATCH_CAP["cpu"]
    config = model.config
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    width = next(model.parameters()).element_size()
    tokens = prompt_tokens + max_new_tokens
    kv = 2 * layers * kv_heads * head_dim * width * tokens
    activations = prompt_tokens * (config.intermediate_size * 3 + config.hidden_size * 4) * width
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    fits = int(0.7 * free // (kv + activations))
    return max(1, min(AUTO_BATCH_CAP["cuda"], fits))
