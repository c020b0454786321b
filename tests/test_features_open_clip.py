"""The open_clip backend gives the hf backend's numbers for the same weights (a tiny model both load)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from artemis_cli.data.feature_files import load_feature
from artemis_cli.features.extract import ExtractConfig, extract_features
from artemis_cli.model.tiny import TINY_CLIP_LAYERS, TINY_CLIP_WIDTH

pytest.importorskip("open_clip")


def hf_to_open_clip_visual(hf_state: dict) -> dict:
    """Rename a transformers CLIP vision state dict to open_clip's ``visual.*`` keys.

    q/k/v projections stack into ``attn.in_proj_*``; fc1/fc2 are ``mlp.c_fc``/``c_proj``;
    layer_norm1/2 are ``ln_1``/``ln_2``; the patch embedding is ``conv1``; pre/post layer norms
    are ``ln_pre``/``ln_post``.
    """
    import torch

    state = {k.removeprefix("vision_model."): v for k, v in hf_state.items()}
    out = {
        "visual.class_embedding": state["embeddings.class_embedding"],
        "visual.positional_embedding": state["embeddings.position_embedding.weight"],
        "visual.conv1.weight": state["embeddings.patch_embedding.weight"],
    }
    for hf, oc in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for kind in ("weight", "bias"):
            out[f"visual.{oc}.{kind}"] = state[f"{hf}.{kind}"]
    for i in range(TINY_CLIP_LAYERS):
        hf, oc = f"encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[oc + f"attn.in_proj_{kind}"] = torch.cat([state[hf + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for hf_name, oc_name in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                                     ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[oc + f"{oc_name}.{kind}"] = state[hf + f"{hf_name}.{kind}"]
    return out


def save_open_clip_twin(hf_dir: Path, folder: Path) -> Path:
    """An open_clip ``local-dir`` model whose vision tower carries the tiny HF CLIP's weights."""
    import open_clip
    from safetensors.torch import save_file
    from transformers import CLIPVisionModel

    model_cfg = {
        "embed_dim": TINY_CLIP_WIDTH, "quick_gelu": True,  # transformers' CLIP uses quick_gelu
        "vision_cfg": {"image_size": 224, "patch_size": 14, "layers": TINY_CLIP_LAYERS, "width": TINY_CLIP_WIDTH,
                       "head_width": TINY_CLIP_WIDTH // 4, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    clip = open_clip.model.CLIP(**{k: v for k, v in model_cfg.items()})
    state = clip.state_dict()
    mapped = hf_to_open_clip_visual(CLIPVisionModel.from_pretrained(hf_dir).state_dict())
    assert set(mapped) <= set(state)
    state.update(mapped)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "open_clip_model.safetensors")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}))
    return folder


def test_open_clip_backend_matches_hf(sample, tiny_clip_dir, tmp_path):
    import torch

    from artemis_cli.features.backends import load_backend

    twin = save_open_clip_twin(tiny_clip_dir, tmp_path / "open_clip_tiny")
    hf = load_backend("hf", str(tiny_clip_dir), torch.device("cpu"), torch.float32)
    oc = load_backend("open_clip", str(twin), torch.device("cpu"), torch.float32)
    assert (oc.patches, oc.width, oc.layers) == (hf.patches, hf.width, hf.layers) == (256, 64, 12)
    pixels = torch.randn(3, 3, 224, 224)
    torch.testing.assert_close(oc.forward(pixels), hf.forward(pixels), atol=1e-4, rtol=1e-4)

    videos = sample.data_root / "Artemis_data/HC-STVG/videos"
    outputs = {}
    for backend, model in (("hf", tiny_clip_dir), ("open_clip", f"local-dir:{twin}")):
        config = ExtractConfig(input=videos, output=tmp_path / backend, backend=backend, model=str(model),
                               device="cpu", workers=0, num_frames=8)
        summary = extract_features(config, show_progress=False)
        assert summary.written == 2 and summary.model["backend"] == backend
        outputs[backend] = {p.name: load_feature(p) for p in (tmp_path / backend).glob("*.pkl")}
    assert outputs["hf"].keys() == outputs["open_clip"].keys() and len(outputs["hf"]) == 2
    for name, features in outputs["hf"].items():
        np.testing.assert_allclose(outputs["open_clip"][name].astype(np.float32), features.astype(np.float32),
                                   atol=2e-3, rtol=2e-3)


def test_open_clip_model_spec():
    from artemis_cli.errors import UsageError
    from artemis_cli.features.backends import parse_open_clip_model

    assert parse_open_clip_model("ViT-L-14-quickgelu:openai") == ("ViT-L-14-quickgelu", "openai")
    assert parse_open_clip_model("ViT-B-32:/ckpt/a.pt") == ("ViT-B-32", "/ckpt/a.pt")
    assert parse_open_clip_model("hf-hub:org/repo") == ("hf-hub:org/repo", None)
    with pytest.raises(UsageError, match="open_clip needs weights"):
        parse_open_clip_model("ViT-L-14")
