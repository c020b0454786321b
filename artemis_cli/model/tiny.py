"""Tiny random-initialised parts with the real geometry, for tests and `artemis demo`.

The CLIP vision tower keeps 224 px input and patch 14 (a 16 x 16 grid, 256 patches) so feature
shapes and RoI geometry are the real ones; only the width and depth shrink. Nothing is downloaded.
Weights are drawn in a fixed order from the seed, so a seed gives the same tiny models on every
transformers version the package supports (4.57 and 5.x), and tests behave alike on each.
"""

from __future__ import annotations

import json
from pathlib import Path

from artemis_cli.model.processor import clip_image_processor  # noqa: F401 (callers read it here)

TINY_CLIP_WIDTH = 64
TINY_CLIP_LAYERS = 12  # the RoI module reads layers -11, -8, -5, -2
TINY_LLAMA_HIDDEN = 64
TINY_ROI_QUERY = 128  # the RoI module's inner width (1024 in the published model)

_CORPUS = """\
A chat between a curious human and an artificial intelligence assistant.
The assistant gives helpful, detailed, and polite answers to the human's questions.
USER: ASSISTANT: What is the region doing in this video? This is the region's video tracking list:
The red box moves to the right across the scene. The blue box moves to the left and upwards.
The green box moves downwards. The yellow box moves around in place. Describe the video in detail.
Two coloured boxes move across a smooth coloured background. What happens in the video?
A coloured box slides across the frame. Summarise the video. Compare the two pictures.
What colour do you get by mixing red and blue? Purple. Name a shape with four equal sides. A square.
How many boxes are there? two. what moves in the video? box. yes no correct answer prediction score
Please describe the target in the region and what it does across the whole video clip.
"""


def tiny_clip_vision_config(width: int = TINY_CLIP_WIDTH, layers: int = TINY_CLIP_LAYERS):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=width, intermediate_size=width * 2, num_hidden_layers=layers,
                            num_attention_heads=4, image_size=224, patch_size=14, projection_dim=width)


def redraw_clip_weights(model, seed: int) -> None:
    """Redraw a `CLIPVisionModel` from `seed` in module order, with the distributions of transformers'
    CLIP init (class/patch/position embeddings, q/k/v/out and fc1/fc2 stds, LayerNorm 1/0, biases 0).

    transformers 4.57 and 5.x consume the global RNG differently while building a model, so without
    this one seed gives a different tiny tower on each version."""
    import torch
    from torch import nn

    config = model.config
    factor, layers, width = config.initializer_factor, config.num_hidden_layers, config.hidden_size
    in_std = width ** -0.5 * (2 * layers) ** -0.5 * factor
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "class_embedding"):
                module.class_embedding.normal_(0.0, width ** -0.5 * factor)
                module.patch_embedding.weight.normal_(0.0, config.initializer_range * factor)
                module.position_embedding.weight.normal_(0.0, config.initializer_range * factor)
            elif hasattr(module, "out_proj") and hasattr(module, "q_proj"):
                for proj in (module.q_proj, module.k_proj, module.v_proj):
                    proj.weight.normal_(0.0, in_std)
                module.out_proj.weight.normal_(0.0, width ** -0.5 * factor)
            elif hasattr(module, "fc1") and hasattr(module, "fc2"):
                module.fc1.weight.normal_(0.0, (2 * width) ** -0.5 * factor)
                module.fc2.weight.normal_(0.0, in_std)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
            if isinstance(module, (nn.Linear, nn.LayerNorm)) and module.bias is not None:
                module.bias.zero_()


def save_tiny_clip(folder: str | Path, seed: int = 0, width: int = TINY_CLIP_WIDTH) -> Path:
    """Save a random tiny `CLIPVisionModel` and its image processor to `folder`; return it."""
    import torch
    from transformers import CLIPVisionModel

    folder = Path(folder)
    torch.manual_seed(seed)
    model = CLIPVisionModel(tiny_clip_vision_config(width))
    redraw_clip_weights(model, seed)
    model.save_pretrained(folder)
    clip_image_processor().save_pretrained(folder)
    return folder


def tiny_llama_config(vocab_size: int, hidden: int = TINY_LLAMA_HIDDEN, layers: int = 2):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                       tie_word_embeddings=False)


def save_tiny_tokenizer(folder: str | Path, vocab_size: int = 320) -> Path:
    """Train a tiny Llama-style SentencePiece BPE tokenizer (unk 0, bos 1, eos 2) into `folder`.

    Normalisation is Llama's: none (identity), whitespace kept as it is, digits split, byte fallback,
    the dummy prefix; so spaces and newlines tokenise as they do for Vicuna.

    `tokenizer_config.json` says ``add_bos_token: true``: without it transformers 5 adds no BOS,
    which breaks the prompt splicing that expects one (see PLATFORM notes).
    """
    import io

    import sentencepiece as spm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS.splitlines() * 4), model_writer=model, vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=1.0, num_threads=1, minloglevel=2, add_dummy_prefix=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        allow_whitespace_only_pieces=True,
    )
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "model_max_length": 3072, "legacy": False, "padding_side": "right",
    }, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2))
    return folder


def tiny_artemis_config(vocab_size: int, clip_dir: str | Path, *, roi: bool = True, k_means: bool = True,
                        hidden: int = TINY_LLAMA_HIDDEN, layers: int = 2, **mm):
    """A complete Artemis config at tiny scale: Llama hidden 64, the tiny CLIP in `clip_dir` as tower,
    RoI module and k-means as in the published stage-3 model (`mm` overrides any mm_* setting)."""
    from artemis_cli.model.config import build_config

    settings = dict(roi_query_size=TINY_ROI_QUERY, tokenizer_model_max_length=3072)
    settings.update(mm)
    return build_config(tiny_llama_config(vocab_size, hidden, layers), image_tower=str(Path(clip_dir).resolve()),
                        mm_hidden_size=TINY_CLIP_WIDTH, roi=roi, k_means=k_means, **settings)


def redraw_language_weights(model, seed: int) -> None:
    """Draw the language model (Linear/Embedding ~ N(0, initializer_range), embedding pad row 0, as
    transformers initialises Llama) and then the projector and RoI module (`reset_multimodal_parameters`)
    from `seed`, in module order. transformers 4.57 and 5.x consume the global RNG differently while
    building a model, so without this one seed gives a different tiny model on each version."""
    import torch
    from torch import nn

    from artemis_cli.model.llava import reset_multimodal_parameters

    torch.manual_seed(seed)
    std = model.config.initializer_range
    skip = ("model.image_tower", "model.mm_projector", "model.spi_model")
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.startswith(skip) or not isinstance(module, (nn.Linear, nn.Embedding)):
                continue
            module.weight.normal_(0.0, std)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
            elif getattr(module, "bias", None) is not None:
                module.bias.zero_()
    reset_multimodal_parameters(model)


def build_tiny_artemis(tokenizer_dir: str | Path, clip_dir: str | Path, *, seed: int = 0, **mm):
    """A random tiny `ArtemisForCausalLM` (tower weights from `clip_dir`), its tokenizer and image
    processor, in eval mode, fp32 on CPU."""
    import torch
    from transformers import AutoTokenizer

    from artemis_cli.model.llava import ArtemisForCausalLM
    from artemis_cli.model.loading import attach_tower

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = tiny_artemis_config(len(tokenizer), clip_dir, **mm)
    torch.manual_seed(seed)
    model = ArtemisForCausalLM(config)
    redraw_language_weights(model, seed)
    processor = attach_tower(model, str(Path(clip_dir).resolve()), dtype=torch.float32)
    return model.eval(), tokenizer, processor


def save_tiny_artemis(folder: str | Path, *, seed: int = 0, **mm) -> Path:
    """Write a tiny tower (`folder/clip`) and a complete merged tiny Artemis checkpoint
    (`folder/artemis`: config, safetensors, tokenizer) that `load_model` reads; return the latter."""
    from artemis_cli.model.loading import save_model

    folder = Path(folder)
    clip_dir = save_tiny_clip(folder / "clip", seed=seed)
    tokenizer_dir = save_tiny_tokenizer(folder / "tokenizer")
    model, tokenizer, _ = build_tiny_artemis(tokenizer_dir, clip_dir, seed=seed, **mm)
    return save_model(model, tokenizer, folder / "artemis", overwrite=True)


def save_tiny_vicuna(folder: str | Path, tokenizer_dir: str | Path, *, seed: int = 0, hidden: int = TINY_LLAMA_HIDDEN,
                     layers: int = 2) -> Path:
    """A random tiny plain Llama checkpoint (``model_type llama``, no mm_* fields) with the tokenizer of
    `tokenizer_dir`: the stage-1 start point at tiny scale (what Vicuna-7B v1.5 is for the real run)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(len(tokenizer), hidden, layers))
    redraw_language_weights(model, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


TINY_VOCAB = 320  # the smallest a byte-fallback BPE takes: most words are split into pieces
WORD_VOCAB = 600  # enough merges that the sample captions' words are one token each (the toy recipe)


def save_tiny_start(out: str | Path, *, seed: int = 0, vocab_size: int = TINY_VOCAB) -> dict[str, Path]:
    """Write `out/vicuna` (tiny Llama + tokenizer) and `out/clip` (tiny CLIP tower + image processor): the
    start checkpoints `examples/configs/sample_stage1.yaml` trains from. Returns both paths."""
    out = Path(out)
    clip = save_tiny_clip(out / "clip", seed=seed)
    tokenizer_dir = save_tiny_tokenizer(out / "tokenizer", vocab_size=vocab_size)
    vicuna = save_tiny_vicuna(out / "vicuna", tokenizer_dir, seed=seed)
    return {"vicuna": vicuna, "clip": clip}


TINY_PARTS = ("vicuna", "clip")


def check_tiny_target(out: str | Path, *, overwrite: bool) -> None:
    """Refuse to write tiny models over an existing OUT unless `overwrite`, and then only over what an
    earlier `save_tiny_start` wrote there (its vicuna/, clip/ and tokenizer/ folders are removed first)."""
    import shutil

    from artemis_cli.common.paths import check_owned
    from artemis_cli.errors import UsageError

    out = Path(out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UsageError(f"OUT {out} already exists and is not empty", hint="pass --overwrite to replace the tiny "
                         "models an earlier `artemis model make-tiny` wrote there, or choose another folder")
    check_owned(out, option="OUT", command="model make-tiny", markers=("vicuna/config.json", "clip/config.json"))
    for part in (*TINY_PARTS, "tokenizer"):
        if (out / part).is_dir():
            shutil.rmtree(out / part)
