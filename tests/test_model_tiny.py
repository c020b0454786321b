"""The tiny models depend only on their seed, not on how transformers initialised them.

transformers 4.57 and 5.x draw different initial weights from one global seed; the redraw in
`artemis_cli.model.tiny` is what makes the suite test the same tiny models on both versions.
"""

from __future__ import annotations

import torch

from artemis_cli.model.tiny import (redraw_clip_weights, redraw_language_weights, tiny_artemis_config,
                                    tiny_clip_vision_config)


def _state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _built_after(global_seed: int, build):
    torch.manual_seed(global_seed)  # stands for a transformers version that consumed the RNG differently
    return build()


def _weight(state: dict[str, torch.Tensor], suffix: str) -> torch.Tensor:
    """By name suffix: transformers < 5.24 nests CLIPVisionModel's weights under ``vision_model.``."""
    return next(tensor for name, tensor in state.items() if name.endswith(suffix))


def test_clip_redraw_covers_every_weight():
    from transformers import CLIPVisionModel

    config = tiny_clip_vision_config(layers=2)
    first, second = (_built_after(s, lambda: CLIPVisionModel(config)) for s in (1, 2))
    assert not torch.equal(_weight(_state(first), "class_embedding"), _weight(_state(second), "class_embedding"))
    for model in (first, second):
        redraw_clip_weights(model, seed=0)
    a, b = _state(first), _state(second)
    assert [name for name in a if not torch.equal(a[name], b[name])] == []
    q_proj = _weight(a, "layers.0.self_attn.q_proj.weight")
    assert abs(q_proj.std().item() - 64 ** -0.5 * 4 ** -0.5) < 0.01  # transformers' CLIP in-projection std
    redraw_clip_weights(second, seed=1)
    assert not torch.equal(q_proj, _weight(_state(second), "layers.0.self_attn.q_proj.weight"))


def test_language_redraw_covers_every_weight_outside_the_tower(tiny_clip_dir):
    from artemis_cli.model.llava import ArtemisForCausalLM

    config = tiny_artemis_config(320, tiny_clip_dir, layers=1)
    first, second = (_built_after(s, lambda: ArtemisForCausalLM(config)) for s in (1, 2))
    for model in (first, second):
        redraw_language_weights(model, seed=0)
    a, b = _state(first), _state(second)
    differing = [name for name in a if not torch.equal(a[name], b[name])]
    assert differing and all(name.startswith("model.image_tower.") for name in differing)  # attach_tower replaces it
    assert a["model.embed_tokens.weight"][config.pad_token_id].abs().sum() == 0
    assert abs(a["lm_head.weight"].std().item() - config.initializer_range) < 0.002
