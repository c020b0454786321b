"""The Artemis model config: a Llama config with `model_type "llava"` and the published `mm_*` fields.

Published checkpoints store the multimodal settings as loose attributes of a `LlamaConfig`
(the published checkpoints' config.json). `ArtemisConfig` keeps that file format; `MMSettings` reads those attributes with
the defaults the reference code falls back to when one is missing, so a config written by the
reference, by an older LLaVA, or by us all resolve the same way. (This module imports transformers:
import it inside functions from CLI code.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import LlamaConfig

from artemis_cli.common.config import format_validation_error
from artemis_cli.common.media import BOX_TOKEN_INDEX, IGNORE_INDEX, IMAGE_TOKEN_INDEX  # noqa: F401 (read from here too)
from artemis_cli.errors import ConfigError, InputError

RoiSelectMode = Literal["kmeans", "uniform", "random", "none"]

# Settings of the towers the published checkpoints name, so `inspect` and the meta-device build work
# offline. Values are those of the public `config.json` of each repository (vision part).
BUILTIN_TOWERS: dict[str, dict[str, Any]] = {
    "openai/clip-vit-large-patch14": dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    "openai/clip-vit-large-patch14-336": dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5),
}


class ArtemisConfig(LlamaConfig):
    """Llama config plus the `mm_*` attributes of the published Artemis/LLaVA checkpoints.

    The attributes stay loose (as in the published files); read them through `MMSettings.of`.
    """

    model_type = "llava"


class MMSettings(BaseModel):
    """The multimodal attributes of a config, with the reference's fallbacks for missing ones.

    Field names are the published config keys. The last block (`roi_*`, `kmeans_num_init`,
    `kmeans_seed`) is ours; the defaults reproduce the reference exactly.
    """

    model_config = ConfigDict(extra="ignore")

    mm_image_tower: Optional[str] = None
    mm_projector_type: str = "linear"
    mm_hidden_size: int = 1024
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: Literal["patch", "cls_patch"] = "patch"
    mm_spi_model: bool = False
    num_levels: int = 4
    num_level_spi_features: int = 4
    k_means: bool = False
    kmeans_n_clusters: int = Field(4, ge=1)
    kmeans_max_iter: int = Field(3, ge=1)
    tokenizer_model_max_length: Optional[int] = None
    tokenizer_padding_side: Literal["right", "left"] = "right"
    mm_use_im_start_end: bool = False
    mm_use_im_patch_token: bool = True
    mm_use_bbox_token: bool = False
    image_aspect_ratio: str = "square"
    roi_select_mode: Optional[RoiSelectMode] = None
    roi_query_size: int = 1024
    roi_output_size: int = 14
    roi_num_fuse: int = 5
    kmeans_num_init: int = Field(8, ge=1)
    kmeans_seed: int = 123

    @property
    def select_mode(self) -> RoiSelectMode:
        """`roi_select_mode` when set, else what the reference does: k-means when `k_means`, else all."""
        if self.roi_select_mode is not None:
            return self.roi_select_mode
        return "kmeans" if self.k_means else "none"

    def tracked_roi_tokens(self, num_tracked: int = 8) -> int:
        """How many tracked-frame RoI tokens (hence trailing ``<bbox>``) a prompt gets: K, or all."""
        return num_tracked if self.select_mode == "none" or num_tracked <= self.kmeans_n_clusters \
            else self.kmeans_n_clusters

    @classmethod
    def of(cls, config: Any) -> "MMSettings":
        """Validate the mm_* attributes of a config (object or dict); a bad value is a `ConfigError`."""
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError("model config", format_validation_error(exc)) from None


_EXTRA_KEYS = {"use_mm_proj", "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter", "mm_projector_lr"}


def default_mm_settings(image_tower: str | None, mm_hidden_size: int = 1024, *, roi: bool = True,
                        k_means: bool = True, **mm: Any) -> dict[str, Any]:
    """The `mm_*` config fields of the published stage-3 model, as a dict (`mm` overrides any).

    `mlp2x_gelu` projector, layer -2 patch features, the RoI module (`mm_spi_model`), k-means with 4
    clusters, no extra patch/start/end tokens. Pass it as `load_model(config_overrides=...)` to turn
    a plain Llama/Vicuna or a stage-2 checkpoint into this model.
    """
    settings = dict(
        mm_image_tower=image_tower, mm_projector_type="mlp2x_gelu", mm_hidden_size=mm_hidden_size,
        mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_spi_model=roi, k_means=k_means,
        kmeans_n_clusters=4, kmeans_max_iter=3, mm_use_im_start_end=False, mm_use_im_patch_token=False,
        mm_use_bbox_token=False, image_aspect_ratio="pad", tokenizer_padding_side="right", use_mm_proj=True,
    )
    settings.update(mm)
    unknown = sorted(set(mm) - set(MMSettings.model_fields) - _EXTRA_KEYS)
    if unknown:
        raise ConfigError("model config", [f"{key}: not a multimodal setting" for key in unknown])
    MMSettings.of(settings)
    return settings


def build_config(llama: Any, *, image_tower: str | None, mm_hidden_size: int, roi: bool = True,
                 k_means: bool = True, **mm: Any) -> ArtemisConfig:
    """An `ArtemisConfig` from a Llama config (object or dict) plus `default_mm_settings`."""
    base = llama.to_dict() if hasattr(llama, "to_dict") else dict(llama)
    for key in ("model_type", "architectures", "transformers_version", "_name_or_path"):
        base.pop(key, None)
    settings = default_mm_settings(image_tower, mm_hidden_size, roi=roi, k_means=k_means, **mm)
    return ArtemisConfig(architectures=["LlavaLlamaForCausalLM"], **base, **settings)


def stored_dtype(config: Any) -> str | None:
    """The dtype a config records (``dtype`` in transformers 5, ``torch_dtype`` before), e.g. "float16".

    Read from the instance dict: touching `torch_dtype` on a 5.x config prints a deprecation warning."""
    fields = vars(config)
    value = fields.get("dtype") or fields.get("torch_dtype")
    return None if value is None else str(value).replace("torch.", "")


def read_config_json(path: str | Path):
    """Read a `config.json` (or the one in a checkpoint folder) into an `ArtemisConfig`."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"{file}: no config.json", hint="pass a checkpoint folder or its config.json")
    from artemis_cli.common.jsonio import load_json

    hint = "pass a checkpoint folder or its config.json (a transformers model config, JSON)"
    if file.suffix.lower() in (".yaml", ".yml"):
        raise InputError(f"{file}: a YAML file, not a model config", hint=hint + "; a training config (YAML) goes "
                         "to `artemis train stageN --config`")
    try:
        data = load_json(file)
    except InputError as exc:
        raise InputError(exc.message, hint=hint) from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: expected a JSON object")
    model_type = data.get("model_type")
    if model_type not in ("llava", "llama", None):
        raise InputError(f"{file}: model_type {model_type!r} is not a LLaVA/Llama config",
                         hint="Artemis checkpoints have model_type \"llava\" (a Llama config with mm_* fields)")
    for key in ("model_type", "transformers_version"):
        data.pop(key, None)
    problems = config_problems(data)
    if problems:
        raise InputError(f"{file}: {len(problems)} problem(s)\n  " + "\n  ".join(problems),
                         hint="fix config.json (it must describe the weights beside it)")
    if path.is_dir() and (path / "adapter_config.json").is_file():
        from artemis_cli.model.weights import check_adapter

        check_adapter(path)
    try:
        return ArtemisConfig(**data)
    except Exception as exc:  # noqa: BLE001 - transformers' own field validation raises its own types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"{file}: not a usable model config ({type(exc).__name__}: {first[:300]})") from None


# Llama fields every checkpoint has, and the ranges a buildable model needs.
_SIZE_FIELDS = {"hidden_size": 1 << 20, "intermediate_size": 1 << 22, "num_hidden_layers": 1 << 12,
                "num_attention_heads": 1 << 14, "num_key_value_heads": 1 << 14, "vocab_size": 1 << 24,
                "max_position_embeddings": 1 << 26, "mm_hidden_size": 1 << 20}


_NULLABLE = {"num_key_value_heads", "mm_hidden_size"}  # null: the default (as many KV heads as heads; no towers)


def config_problems(data: dict[str, Any]) -> list[str]:
    """``field: message`` for each field of a config.json that cannot describe a model: wrong types
    (``"hidden_size": "64"``), impossible values (``num_hidden_layers: -2``), heads that do not
    divide the hidden size. Every problem at once, before anything is built."""
    import math

    problems = []
    for name, limit in _SIZE_FIELDS.items():
        if name not in data or (data[name] is None and name in _NULLABLE):
            continue
        value = data[name]
        if type(value) is not int:  # also JSON null: transformers would fail on it later
            problems.append(f"{name}: expected a whole number, got {type(value).__name__} {value!r}")
        elif not 1 <= value <= limit:
            problems.append(f"{name}: {value} is out of range (1..{limit})")
    for name in ("rms_norm_eps", "rope_theta", "initializer_range"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{name}: expected a number, got {type(value).__name__} {value!r}")
        elif not math.isfinite(value) or value <= 0:
            problems.append(f"{name}: expected a positive finite number, got {value!r}")
    hidden, heads, kv = (data.get(k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads"))
    if all(type(v) is int and v > 0 for v in (hidden, heads)) and hidden % heads:
        problems.append(f"num_attention_heads: {heads} does not divide hidden_size {hidden}")
    if all(type(v) is int and v > 0 for v in (heads, kv)) and heads % kv:
        problems.append(f"num_key_value_heads: {kv} does not divide num_attention_heads {heads}")
    return problems


def tower_config(name_or_path: str):
    """The `CLIPVisionConfig` of a tower: from a local folder, else a built-in config by name.

    Published configs may hold the authors' local path (``/path/to/clip-vit-large-patch14``); a
    name whose last part matches a built-in tower resolves to that tower.
    """
    from transformers import CLIPVisionConfig

    local = Path(name_or_path)
    if (local / "config.json").is_file():
        return CLIPVisionConfig.from_pretrained(local)
    canonical = canonical_tower_name(name_or_path)
    if canonical is None:
        raise ConfigError("image tower", [f"mm_image_tower: {name_or_path!r} is neither a local CLIP folder "
                                          f"nor one of {', '.join(BUILTIN_TOWERS)}"],
                          hint="pass image_tower=/path/to/clip-vit-large-patch14 (a local copy)")
    return CLIPVisionConfig(**BUILTIN_TOWERS[canonical])


def canonical_tower_name(name_or_path: str) -> str | None:
    """``openai/clip-vit-large-patch14`` for that id, a path or HF-cache folder ending in its name."""
    text = str(name_or_path).rstrip("/")
    for name in sorted(BUILTIN_TOWERS, key=len, reverse=True):
        tail = name.split("/")[-1]
        if text == name or text.endswith("/" + tail) or text == tail or text.endswith("--" + tail):
            return name
    return None
