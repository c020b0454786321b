"""What each stage writes (the published file names), and reading it back to resume.

- stage 1: ``mm_projector.bin`` (``model.mm_projector.{0,2}.*``) + ``config.json``;
- stage 2: a full model (``config.json``, safetensors shards, tokenizer), the tower excluded;
- stage 3: the LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``) +
  ``non_lora_trainables.bin`` (RoI module and projector, names with the peft prefixes
  ``base_model.model.model.*``) + ``config.json`` + tokenizer; `artemis model merge-lora` merges it.

Every checkpoint folder holds the same files, so any ``checkpoint-N`` is itself a usable output and
resuming reads exactly what was written.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Optional, Sequence

from artemis_cli.errors import InputError
from artemis_cli.model import weights as W

OUTPUT_FILES = {"projector": (W.PROJECTOR_FILE, "config.json"),
                "full": ("config.json", W.SAFE_SINGLE),
                "lora": (W.ADAPTER_CONFIG, "adapter_model.safetensors", W.NON_LORA_FILE, "config.json")}


def _output(stage: int) -> str:
    from artemis_cli.train.config import STAGES

    return STAGES[stage].output


STAGE_FILES = {stage: OUTPUT_FILES[_output(stage)] for stage in (1, 2, 3)}


def _save_bin(state: Mapping, path: Path) -> None:
    import torch

    from artemis_cli.common.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({k: v.detach().to("cpu").clone() for k, v in state.items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _save_config(inner, folder: Path) -> None:
    """config.json with ``use_cache`` back on (training turns it off), as the reference saved it."""
    import copy

    config = copy.deepcopy(inner.config)
    config.use_cache = True
    config.architectures = ["LlavaLlamaForCausalLM"]
    config.save_pretrained(folder)


def save_stage_output(model, stage: int, folder: Path, *, tokenizer=None, state_dict: Optional[Mapping] = None,
                      trainable: Sequence[str] = ()) -> list[str]:
    """Write the stage's published files into `folder` (created); return their names.

    `state_dict` (names of `model.state_dict()`) is what DeepSpeed gathered; by default the live
    weights. `trainable` names the trained parameters (stage 3: the non-LoRA ones go to
    ``non_lora_trainables.bin``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = state_dict if state_dict else model.state_dict()
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    output = _output(stage)
    if output == "projector":
        _save_bin({k: v for k, v in state.items() if k.startswith("model.mm_projector.")}, folder / W.PROJECTOR_FILE)
    elif output == "full":
        from artemis_cli.model.loading import write_weights

        for old in folder.glob("model*.safetensors*"):  # shards of an earlier write
            old.unlink()
        write_weights(state, folder)
        inner.generation_config.save_pretrained(folder)
    else:
        model.save_pretrained(str(folder), state_dict=dict(state))
        non_lora = {name: state[name] for name in trainable if "lora_" not in name}
        missing = [name for name in trainable if "lora_" not in name and name not in state]
        if missing:
            raise InputError(f"cannot save {W.NON_LORA_FILE}: no weights for {', '.join(missing[:5])}")
        _save_bin(non_lora, folder / W.NON_LORA_FILE)
    _save_config(inner, folder)
    if tokenizer is not None and output != "projector":
        tokenizer.save_pretrained(str(folder))
    return [name for name in STAGE_FILES[stage] if (folder / name).exists()] + \
        ([W.SAFE_INDEX] if output == "full" and (folder / W.SAFE_INDEX).exists() else [])


def _load_exact(model, state: Mapping, source: Path) -> None:
    result = model.load_state_dict(dict(state), strict=False)
    if result.unexpected_keys:
        raise InputError(f"{source}: weights the model does not have: {', '.join(result.unexpected_keys[:5])}")


def load_stage_state(model, stage: int, folder: Path, trainable: Sequence[str] = ()) -> None:
    """Load what `save_stage_output` wrote back into the live training model (resume)."""
    folder = Path(folder)
    missing = [name for name in STAGE_FILES[stage] if name != W.SAFE_SINGLE and not (folder / name).is_file()]
    output = _output(stage)
    if output == "full" and not W.weight_files(folder):
        missing.append(W.SAFE_SINGLE)
    if missing:
        raise InputError(f"{folder}: not a complete stage-{stage} checkpoint (missing {', '.join(missing)})")
    if output == "projector":
        state = W.load_bin(folder / W.PROJECTOR_FILE)
        _load_exact(model, state, folder / W.PROJECTOR_FILE)
    elif output == "full":
        state = W.read_state_dict(W.weight_files(folder))
        _load_exact(model, state, folder)
    else:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        adapter = load_file(str(folder / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(model, adapter)
        if getattr(result, "unexpected_keys", None):
            raise InputError(f"{folder}: adapter weights the model does not have: {result.unexpected_keys[:5]}")
        non_lora = W.load_bin(folder / W.NON_LORA_FILE)
        expected = {name for name in trainable if "lora_" not in name}
        if expected and set(non_lora) != expected:
            raise InputError(f"{folder / W.NON_LORA_FILE}: holds {len(non_lora)} tensors, the run trains "
                             f"{len(expected)} non-LoRA parameters")
        _load_exact(model, non_lora, folder / W.NON_LORA_FILE)
