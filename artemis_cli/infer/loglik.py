"""Log-likelihood of a continuation after a prompt: multiple-choice answers scored by their options.

Artemis generates free text; a multiple-choice benchmark can also be answered by the option the model
finds most likely (``answer_by="loglikelihood"`` for VideoRefer-Bench-Q, lmms-eval's ``loglikelihood``
requests). The continuation's tokens are appended to the request's prompt (after ``ASSISTANT:``) and
their log-probabilities summed from one forward pass over the spliced inputs.
"""

from __future__ import annotations

from dataclasses import replace


def continuation_logprob(loaded, request, continuation: str) -> tuple[float, bool]:
    """(sum of log p(continuation tokens | prompt), whether greedy decoding would produce them) for one
    `GenerationRequest` (its media and RoIs included)."""
    import torch

    from artemis_cli.errors import InputError
    from artemis_cli.model.generation import embed_requests

    tokenizer = loaded.tokenizer
    tokens = list(tokenizer(continuation, add_special_tokens=False).input_ids)
    if not tokens:
        raise InputError(f"continuation {continuation!r} has no tokens")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.unk_token_id or 0)
    full = replace(request, input_ids=list(request.input_ids) + tokens)
    with torch.inference_mode():
        spliced = embed_requests(loaded.model, [full], pad)
        logits = loaded.model(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask).logits
        logits = logits[0, -len(tokens) - 1:-1].float()  # [C, V]: the positions that predict the continuation
        target = torch.tensor(tokens, device=logits.device)
        logprob = logits.log_softmax(-1).gather(-1, target[:, None]).sum()
        greedy = bool((logits.argmax(-1) == target).all())
    return float(logprob), greedy


def choose_option(loaded, request, options: list[str]) -> tuple[int, list[float]]:
    """The index of the most likely option (each scored as the whole option text) and every option's log p."""
    scores = [continuation_logprob(loaded, request, " " + option)[0] for option in options]
    return max(range(len(options)), key=lambda i: scores[i]), scores
