"""The model of each stage: start checkpoint, multimodal settings, what is trained, as the published recipes.

- stage 1: Vicuna + a fresh `mlp2x_gelu` projector; trains the projector only;
- stage 2: Vicuna + the stage-1 projector; trains the LLM and the projector (tower frozen);
- stage 3: the stage-2 model + a fresh RoI module; LoRA on the LLM's q/k/v/o/gate/up/down
  projections (added while the tower is detached, so the tower never gets adapters) and the RoI
  module and projector trained fully.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from artemis_cli.errors import InputError, UsageError
from artemis_cli.train.config import TrainConfig

PROJECTOR_PREFIX = "model.mm_projector."
ROI_PREFIX = "model.spi_model."


@dataclass
class StageModel:
    model: Any  # ArtemisForCausalLM, or a peft PeftModel around it (stage 3)
    tokenizer: Any
    image_processor: Any
    trainable: list[str]  # parameter names with requires_grad, in `model.named_parameters()` order

    @property
    def image_tokens(self) -> int:
        tower = inner_model(self.model).get_image_tower()
        return tower.grid_size ** 2 if tower is not None else 256


def inner_model(model):
    """The `ArtemisForCausalLM` inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def trainable_names(model) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


def stage_overrides(config: TrainConfig, tower: str, width: int) -> dict:
    """The `mm_*` config fields a stage sets on its start checkpoint."""
    from artemis_cli.model.config import default_mm_settings

    roi = config.model.roi
    extra = dict(tokenizer_model_max_length=config.model.tokenizer_model_max_length,
                 image_aspect_ratio=config.data.image_aspect_ratio)
    roi_stage = config.spec.roi
    if roi_stage:
        extra.update(kmeans_n_clusters=config.model.kmeans_n_clusters, num_levels=roi.num_levels,
                     num_level_spi_features=roi.num_levels, roi_num_fuse=roi.num_fuse, roi_query_size=roi.query_size,
                     roi_output_size=roi.output_size)
    return default_mm_settings(tower, width, roi=roi_stage, k_means=roi_stage and config.model.k_means,
                               **extra)


def _load_projector_file(model, path) -> None:
    from artemis_cli.model import weights as W

    state = {k: v for k, v in W.strip_peft_prefixes(W.load_bin(path)).items() if "mm_projector" in k}
    expected = {k for k in model.state_dict() if k.startswith(PROJECTOR_PREFIX)}
    if set(state) != expected:
        raise InputError(f"{path}: projector weights {sorted(state)} do not match the model's {sorted(expected)}",
                         hint="pass the mm_projector.bin that stage 1 wrote")
    model.load_state_dict(state, strict=False)


def enable_checkpointing(model) -> None:
    """Gradient checkpointing on the LLM layers (non-reentrant, so frozen inputs need no hook)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def compile_roi_module(model) -> None:
    """`torch.compile` the RoI module in place: parameter names and saved files stay as they are.

    The module's GroupNorm, ReLU, resizes and concatenations fuse around the convolutions (which
    stay on cuDNN / oneDNN). It compiles at the first step: about a minute, once per input shape."""
    roi = inner_model(model).get_roi_module()
    if roi is None:
        raise UsageError("train.compile_roi: the model has no RoI module")
    roi.compile()


def apply_stage_training(model, stage: int, lora=None, *, upcast_trainable: bool = False,
                         gradient_checkpointing: bool = False):
    """Freeze what `stage` freezes and make trainable what it trains; stage 3 wraps the model in peft
    LoRA (`lora`: a `LoraSection`, default the published r 16 / alpha 16 / dropout 0.05) and
    returns the `PeftModel`. `upcast_trainable` keeps trained parameters in float32."""
    import torch

    from artemis_cli.model.loading import without_tower
    from artemis_cli.train.config import LoraSection

    from artemis_cli.train.config import STAGES

    model.requires_grad_(False)
    trains = STAGES[stage].trains
    if trains == "projector":
        model.model.mm_projector.requires_grad_(True)
    elif trains == "llm":
        for name, param in model.named_parameters():
            param.requires_grad_(not name.startswith("model.image_tower."))
    else:
        from peft import LoraConfig, get_peft_model

        from artemis_cli.model.llava import LORA_TARGET_MODULES

        lora = lora or LoraSection()
        with without_tower(model):  # the tower's q/k/v_proj would match the pattern's suffixes
            peft_model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                          bias=lora.bias, target_modules=LORA_TARGET_MODULES,
                                                          task_type="CAUSAL_LM"))
        model.model.spi_model.requires_grad_(True)
        model.model.mm_projector.requires_grad_(True)
        model = peft_model
    if upcast_trainable:
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
    if gradient_checkpointing:
        enable_checkpointing(inner_model(model))
    return model


def build_stage_model(config: TrainConfig, *, device: str, dtype, upcast_trainable: bool) -> StageModel:
    """Load the start checkpoint of `config.stage`, add what the stage adds, freeze what it freezes.

    Weights are loaded in `dtype` on `device`; `upcast_trainable` keeps the trained parameters in
    float32 (mixed precision without DeepSpeed, which keeps its own fp32 master copy)."""
    from artemis_cli.model.config import MMSettings, read_config_json
    from artemis_cli.model.loading import checkpoint_kind, load_model, resolve_checkpoint, resolve_tower, vision_config_for

    folder = resolve_checkpoint(config.model.path, option="model.path")
    stored = read_config_json(folder)
    tower = config.model.image_tower or MMSettings.of(stored).mm_image_tower
    if tower is None:
        raise UsageError(f"{folder} names no image tower (a plain Llama/Vicuna checkpoint)",
                         hint="set model.image_tower to a local copy of openai/clip-vit-large-patch14")
    width = vision_config_for(resolve_tower(tower, folder, config.model.image_tower)).hidden_size
    overrides = stage_overrides(config, tower, width)
    allow_missing = config.spec.new_modules + ((PROJECTOR_PREFIX,) if config.model.projector else ())
    if config.spec.projector_file and checkpoint_kind(folder) == "merged" and config.model.projector is None \
            and not MMSettings.of(stored).mm_image_tower:
        raise UsageError(f"{folder} has no projector: stage 2 starts from Vicuna plus the stage-1 projector",
                         hint="set model.projector to the mm_projector.bin of stage 1")
    loaded = load_model(folder, config.model.base, device=device, dtype=dtype, image_tower=config.model.image_tower,
                        config_overrides=overrides, allow_missing=allow_missing)
    model, tokenizer = loaded.model, loaded.tokenizer
    if config.model.projector is not None:
        _load_projector_file(model, config.model.projector)
    tokenizer.pad_token = tokenizer.unk_token  # the reference's v1 setting
    tokenizer.model_max_length = config.model.max_length
    tokenizer.padding_side = "right"
    model.config.use_cache = False

    model = apply_stage_training(model, config.stage, config.lora, upcast_trainable=upcast_trainable,
                                 gradient_checkpointing=config.train.gradient_checkpointing)
    if config.train.compile_roi:
        compile_roi_module(model)
    return StageModel(model=model, tokenizer=tokenizer, image_processor=loaded.image_processor,
                      trainable=trainable_names(model))
