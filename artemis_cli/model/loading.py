"""Load and save Artemis checkpoints: merged, LoRA run + base, projector-only + base (the outputs of the three training stages).

`load_model` builds the model with empty (meta) parameters, fills them from the files, checks that
every weight outside the image tower was provided with the right shape (an error listing names
otherwise), merges a LoRA adapter with peft, and only then attaches the CLIP tower from its own
checkpoint, so LoRA never touches the tower (as in the published code, where the tower was loaded
after the adapters were created).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence

from artemis_cli.common.devices import resolve_device
from artemis_cli.errors import InputError, UsageError
from artemis_cli.common.dtypes import resolve_dtype  # noqa: F401 (read here by callers)
from artemis_cli.model import weights as W
from artemis_cli.model.checkpoint import resolve_tower, tokenizer_folder, vision_config_for
from artemis_cli.model.processor import clip_image_processor, clip_image_processor_class  # noqa: F401

Kind = Literal["merged", "lora", "projector"]


@dataclass
class LoadedModel:
    model: Any  # ArtemisForCausalLM, eval mode
    tokenizer: Any
    image_processor: Any  # CLIPImageProcessor, None without a tower
    kind: Kind
    source: Path
    base: Optional[Path] = None
    quantize: str = "none"  # how the LLM's linear layers were quantised (model/quantize.py)


def resolve_checkpoint(path_or_id: str | os.PathLike, option: str = "--model") -> Path:
    """A local folder, or an HF hub id from the cache or the hub (`common.hub`); errors name `option`."""
    from artemis_cli.common.hub import resolve_model_folder

    return resolve_model_folder(path_or_id, option=option)


def checkpoint_kind(folder: Path) -> Kind:
    if (folder / W.ADAPTER_CONFIG).is_file():
        return "lora"
    if not W.weight_files(folder) and (folder / W.PROJECTOR_FILE).is_file():
        return "projector"
    return "merged"


def attach_tower(model, source: str, *, device: str = "cpu", dtype=None):
    """Load the CLIP vision tower weights from `source` (folder or hub id) into the model; return its
    image processor (the PIL one, `clip_image_processor_class`). The tower is frozen."""
    from artemis_cli.common.hub import resolve_model_folder
    from artemis_cli.model.tower import load_clip_vision

    tower = model.get_image_tower()
    if tower is None:
        return None
    source = str(resolve_model_folder(source, option="--image-tower"))
    try:
        vision = load_clip_vision(source, dtype=dtype)
    except OSError as exc:
        raise InputError(f"image tower {source!r}: cannot load ({str(exc).splitlines()[0]})",
                         hint="pass image_tower= / --image-tower with a local copy of openai/clip-vit-large-patch14") from None
    tower.vision_tower = vision.to(device).requires_grad_(False).eval()
    if (Path(source) / "preprocessor_config.json").is_file():
        return clip_image_processor_class().from_pretrained(source)
    return clip_image_processor(vision.config.image_size)


@contextlib.contextmanager
def without_tower(model) -> Iterator[None]:
    """Detach the image tower while peft injects/merges LoRA (its q/k/v names would match too)."""
    tower = getattr(model.model, "image_tower", None)
    if tower is None:
        yield
        return
    del model.model.image_tower
    try:
        yield
    finally:
        model.model.image_tower = tower


def _cast_parameters(model, device: str, dtype) -> None:
    # Parameters only: non-persistent fp32 buffers (rotary inv_freq) stay fp32 as in from_pretrained.
    model.to(device)
    for param in model.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)


def _fill(model, state: Mapping, source: str, allow_missing: Sequence[str]) -> None:
    from artemis_cli.model.llava import reset_multimodal_parameters

    model_shapes = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    report = W.compare_keys(model_shapes, {name: tuple(t.shape) for name, t in state.items()})
    report.missing = [n for n in report.missing if not n.startswith(tuple(allow_missing))]
    report.raise_if_bad(source)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(W.TOWER_PREFIX)}, strict=False, assign=True)
    fresh = []
    for name in ("mm_projector", "spi_model"):
        module = getattr(model.model, name, None)
        if module is not None and any(p.is_meta for p in module.parameters()):
            module.to_empty(device="cpu")
            fresh.append(name)
    reset_multimodal_parameters(model, fresh)
    still_meta = [n for n, p in model.named_parameters() if p.is_meta and not n.startswith(W.TOWER_PREFIX)]
    if still_meta:
        raise InputError(f"{source}: no weights for {', '.join(still_meta[:20])}")


def load_model(path: str | os.PathLike, model_base: str | os.PathLike | None = None, *, device: str = "auto",
               dtype: Any = "auto", image_tower: Optional[str] = None, config_overrides: Optional[dict] = None,
               allow_missing: Sequence[str] = (), load_tower: bool = True, quantize: str = "none") -> LoadedModel:
    """Load an Artemis checkpoint for inference (or as a training start point).

    - merged: `path` holds config.json, weights (safetensors preferred) and the tokenizer;
    - LoRA run (`adapter_config.json`): `model_base` weights + `non_lora_trainables.bin` (prefixes
      stripped as the published loader does), adapter merged with peft; config from `path`;
    - projector-only (`mm_projector.bin`): `model_base` weights + the projector; config from `path`.
    `image_tower` overrides the config's ``mm_image_tower``; `config_overrides` sets config fields
    first (e.g. ``{"mm_spi_model": True}``) and `allow_missing` lists name prefixes that may be
    absent (initialised as the reference does), e.g. ``("model.spi_model.",)`` for a fresh RoI module.
    `quantize` (none, int8, int4, nf4) quantises the LLM's linear layers after loading (`model.quantize`);
    a mode the device cannot run is refused before any weights are read.
    """
    from accelerate import init_empty_weights
    from transformers import AutoTokenizer, GenerationConfig

    from artemis_cli.model.config import MMSettings, read_config_json
    from artemis_cli.model.llava import ArtemisForCausalLM

    from artemis_cli.common.hub import resolve_model_folder

    folder = resolve_checkpoint(path)
    kind = checkpoint_kind(folder)
    base = resolve_checkpoint(model_base, option="--model-base") if model_base is not None else None
    if kind != "merged" and base is None:
        raise UsageError(f"{folder} is a {'LoRA' if kind == 'lora' else 'projector-only'} checkpoint: it needs --model-base",
                         hint="pass the checkpoint it was trained from (stage 2 for LoRA, Vicuna for a projector)")
    config = read_config_json(folder)
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    device = resolve_device(device)
    from artemis_cli.model.quantize import check_quantize, int4_dtype, quantize_llm

    check_quantize(quantize, device)
    dtype = resolve_dtype(int4_dtype(dtype) if quantize == "int4" else dtype, device, config)
    mm = MMSettings.of(config)
    tower_source = resolve_tower(mm.mm_image_tower, folder, image_tower) if mm.mm_image_tower else None
    if tower_source and load_tower:  # a tower that is missing (offline, not cached) fails before the weights load
        tower_source = str(resolve_model_folder(tower_source, option="--image-tower"))
    with init_empty_weights(include_buffers=False):
        model = ArtemisForCausalLM(config, vision_config_for(tower_source) if tower_source else None)

    if kind == "merged":
        files = W.weight_files(folder)
        if not files:
            raise InputError(f"{folder}: no model.safetensors / pytorch_model.bin (or their shard index)")
        state = W.read_state_dict(files)
    else:
        files = W.weight_files(base)
        if not files:
            raise InputError(f"{base}: the base checkpoint has no weights")
        state = W.read_state_dict(files)
        extra = folder / (W.NON_LORA_FILE if kind == "lora" else W.PROJECTOR_FILE)
        if extra.is_file():
            state.update(W.strip_peft_prefixes(W.load_bin(extra)))
        elif kind == "lora":
            raise InputError(f"{folder}: LoRA run without {W.NON_LORA_FILE} (the RoI module and projector weights)")
    _fill(model, state, str(folder), allow_missing)
    del state
    with without_tower(model):
        _cast_parameters(model, device, dtype)

    if kind == "lora":
        from peft import PeftModel

        with without_tower(model):
            model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder(folder, base)))
    _add_legacy_tokens(model, tokenizer, mm)
    quantize_llm(model, quantize)  # after any embedding resize; the tower is not attached yet, nor touched
    image_processor = None
    if tower_source and load_tower:
        image_processor = attach_tower(model, tower_source, device=device, dtype=dtype)
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(folder))
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, image_processor=image_processor, kind=kind,
                       source=folder, base=base, quantize=quantize)


def _add_legacy_tokens(model, tokenizer, mm) -> None:
    """The published loader adds ``<im_patch>`` (and start/end, bbox) tokens when the config asks,
    resizing the embeddings; published Artemis configs set these flags to false."""
    tokens = []
    if mm.mm_use_im_patch_token:
        tokens.append("<im_patch>")
    if mm.mm_use_im_start_end:
        tokens += ["<im_start>", "<im_end>", "<vid_start>", "<vid_end>"]
    if mm.mm_use_bbox_token:
        tokens.append("<bbox>")
    if tokens:
        tokenizer.add_tokens(tokens, special_tokens=True)
        if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))


def write_weights(state: Mapping, folder: Path, *, max_shard_size: str = "5GB") -> None:
    """Write every tensor of `state` except the image tower as safetensors shards (+ index) into `folder`."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items() if not k.startswith(W.TOWER_PREFIX)}
    split = split_torch_state_dict_into_shards(state, max_shard_size=max_shard_size)
    for filename, names in split.filename_to_tensors.items():
        save_file({name: state[name] for name in names}, str(folder / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
                 "weight_map": split.tensor_to_filename}
        (folder / W.SAFE_INDEX).write_text(json.dumps(index, indent=2))


def save_model(model, tokenizer, out: str | os.PathLike, *, overwrite: bool = False,
               max_shard_size: str = "5GB", image_tower: Optional[str] = None) -> Path:
    """Write a merged checkpoint (config.json, safetensors shards, tokenizer) atomically.

    The image tower's weights are not saved: ``mm_image_tower`` names where they come from
    (`image_tower` rewrites it)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists", hint="pass overwrite=True (--overwrite) to replace it")
    from artemis_cli.common.atomic import atomic_folder

    with atomic_folder(out) as tmp:
        write_weights(model.state_dict(), tmp, max_shard_size=max_shard_size)
        config = model.config
        if image_tower is not None:
            config.mm_image_tower = image_tower
        config.architectures = ["LlavaLlamaForCausalLM"]
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return out


def merge_lora(run_dir: str | os.PathLike, base: str | os.PathLike, out: str | os.PathLike, *, device: str = "cpu",
               dtype: Any = "auto", overwrite: bool = False, image_tower: Optional[str] = None,
               max_shard_size: str = "2GB", progress=None) -> Path:
    """Merge a LoRA run (adapter + non_lora_trainables.bin) into `base` and save a merged checkpoint.

    ``dtype="auto"`` keeps the checkpoint's dtype (its config's, e.g. bfloat16 for the released stage 3).
    The merge runs shard by shard on CPU (`model.merge.merge_lora_sharded`: memory bounded by the output
    shard size, not the model's, the result equal to peft's merge); adapters it cannot fold (trained biases, DoRA, rank
    patterns) go through peft's `merge_and_unload` on `device` with the whole model in memory.
    `image_tower` resolves the tower config (as `--image-tower` elsewhere) and is written as the merged
    config's ``mm_image_tower``."""
    from artemis_cli.model.merge import checkpoint_dtype, merge_lora_sharded

    folder, base_folder = resolve_checkpoint(run_dir, option="RUN_DIR"), resolve_checkpoint(base, option="--base")
    merged = merge_lora_sharded(folder, base_folder, Path(out), dtype=dtype, image_tower=image_tower,
                                overwrite=overwrite, max_shard_size=max_shard_size, progress=progress)
    if merged is not None:
        return merged
    if dtype == "auto":
        from artemis_cli.model.config import read_config_json

        dtype = checkpoint_dtype(read_config_json(folder), base_folder)
    loaded = load_model(folder, base_folder, device=device, dtype=dtype, load_tower=False, image_tower=image_tower)
    return save_model(loaded.model, loaded.tokenizer, out, overwrite=overwrite, max_shard_size=max_shard_size,
                      image_tower=image_tower)
