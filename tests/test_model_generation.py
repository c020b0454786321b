"""`model.generation.RowStreamer`: a batched generation's tokens handed on per row as they are generated
(the same tokens as without it, greedy and sampled), one row stopped while the others go on, and each
token's log-probability."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from artemis_cli.model.generation import DecodingSettings, RowStreamer, generate_tokens
from test_quantize import bench_records, requests_for
from test_serve import input_sensitive

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GREEDY = DecodingSettings(max_new_tokens=12)


@pytest.fixture(scope="module")
def setup(tiny_artemis, sample, tmp_path_factory):
    _, loaded = input_sensitive(tiny_artemis, tmp_path_factory.mktemp("generation") / "artemis")
    records, root = bench_records(sample)
    requests = requests_for(loaded, records, root)
    # one more prompt, a few words changed, so the rows' answers differ (the sample's records answer alike)
    changed = [t if i < 8 or t < 0 else (t * 7 + 3) % loaded.tokenizer.vocab_size + 3
               for i, t in enumerate(requests[0].input_ids)]
    requests.append(dataclasses.replace(requests[0], input_ids=changed))
    return loaded, requests


def run(loaded, requests, decoding, streamer=None):
    return generate_tokens(loaded.model, loaded.tokenizer, requests, decoding, streamer=streamer)


@pytest.mark.parametrize("decoding", [GREEDY, DecodingSettings(max_new_tokens=12, sample=True, temperature=1.0, seed=4)])
def test_each_row_gets_its_own_tokens_in_order_and_the_tokens_do_not_change(setup, decoding):
    loaded, requests = setup
    plain = run(loaded, requests, decoding)
    seen: dict[int, list[int]] = {row: [] for row in range(len(requests))}
    streamed = run(loaded, requests, decoding, RowStreamer(lambda row, token, logprob: seen[row].append(token)))
    assert streamed == plain and [seen[row] for row in range(len(requests))] == plain
    assert len({tuple(row) for row in plain}) > 1  # rows differ: a mix-up between them would show


def test_a_row_stopped_by_its_callback_ends_there_and_the_others_go_on(setup):
    loaded, requests = setup
    plain = run(loaded, requests, GREEDY)
    stop_after, counts = 3, {}

    def on_token(row, token, logprob):
        counts.setdefault(row, []).append(token)
        return row == 1 and len(counts[row]) >= stop_after

    streamer = RowStreamer(on_token)
    rows = run(loaded, requests, GREEDY, streamer)
    assert rows[1] == plain[1][:stop_after] and streamer.stopped == [False, True] + [False] * (len(requests) - 2)
    assert rows[0] == plain[0] and rows[2:] == plain[2:]


def test_log_probabilities_are_the_models_and_greedy_picks_the_likeliest(setup):
    loaded, requests = setup
    entries: list = []
    rows = run(loaded, requests[:1], GREEDY, RowStreamer(lambda row, token, logprob: entries.append((token, logprob)),
                                                         top_logprobs=3))
    assert [token for token, _ in entries] == rows[0]
    first_token, first = entries[0]
    assert len(first.top) == 3 and first.top[0][0] == first_token and first.top[0][1] == pytest.approx(first.logprob)
    assert first.top[0][1] >= first.top[1][1] >= first.top[2][1] and first.logprob <= 0
    from artemis_cli.model.generation import embed_requests

    with torch.inference_mode():
        spliced = embed_requests(loaded.model, requests[:1], 0)
        logits = loaded.model(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask).logits[0, -1]
    assert first.logprob == pytest.approx(torch.log_softmax(logits.float(), -1)[first_token].item(), abs=1e-4)
    with pytest.raises(ValueError, match="top_logprobs"):
        RowStreamer(lambda *a: None, top_logprobs=21)
