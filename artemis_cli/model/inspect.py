"""`artemis model inspect`: build the model on the meta device and compare it with checkpoint files.

Nothing is allocated or downloaded: a 7B model is inspected in seconds on any machine. A known tower
name (``openai/clip-vit-large-patch14``) resolves to a built-in config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from artemis_cli.errors import InputError
from artemis_cli.model import weights as W

GROUPS = (("tower", "model.image_tower."), ("projector", "model.mm_projector."), ("roi", "model.spi_model."))


def group_of(name: str) -> str:
    for group, prefix in GROUPS:
        if name.startswith(prefix):
            return group
    return "llm"


@dataclass
class InspectReport:
    source: str
    kind: str  # config | merged | lora | projector
    parameters: dict[str, list[int]]
    dtypes: dict[str, str]
    groups: dict[str, dict]
    total: int
    checked: bool = False  # whether files were compared
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def to_json(self) -> dict:
        return {"source": self.source, "kind": self.kind, "parameters": self.parameters, "total": self.total,
                "groups": self.groups, "missing": self.missing, "unexpected": self.unexpected,
                "mismatched": self.mismatched}


def _meta_model(config, vision_config):
    import torch

    from artemis_cli.model.llava import ArtemisForCausalLM

    from artemis_cli.model.config import stored_dtype

    stored = stored_dtype(config)
    dtype = getattr(torch, stored, None) if stored else None
    previous = torch.get_default_dtype()
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            return ArtemisForCausalLM(config, vision_config)
    finally:
        torch.set_default_dtype(previous)


def _file_shapes(folder: Path, kind: str, base: Optional[Path]) -> tuple[dict, Optional[tuple[str, ...]]]:
    """Shapes the files provide, and (without a base) the name prefixes they are meant to cover."""
    shapes: dict = {}
    if base is not None:
        shapes.update(W.read_shapes(W.weight_files(base)))
    if kind == "merged":
        files = W.weight_files(folder)
        if not files:
            raise InputError(f"{folder}: no model.safetensors / pytorch_model.bin (or their shard index)")
        shapes.update(W.read_shapes(files))
        return shapes, None
    extra = folder / (W.NON_LORA_FILE if kind == "lora" else W.PROJECTOR_FILE)
    if extra.is_file():
        shapes.update(W.strip_peft_prefixes(W.read_shapes([extra])))
    scope = None if base is not None else (("model.mm_projector.", "model.spi_model.") if kind == "lora"
                                           else ("model.mm_projector.",))
    return shapes, scope


def _adapter_problems(folder: Path, model_shapes: dict) -> list[str]:
    """LoRA tensors whose target module is absent or has other in/out features."""
    files = [p for p in (folder / "adapter_model.safetensors", folder / "adapter_model.bin") if p.is_file()][:1]
    problems = []
    for name, shape in W.read_shapes(files).items():
        stripped = name.removeprefix("base_model.model.")
        module, _, rest = stripped.partition(".lora_")
        weight = model_shapes.get(module + ".weight")
        if weight is None:
            problems.append(f"{name}: no module {module} in the model")
        elif rest.startswith("A") and shape[-1] != weight[1] or rest.startswith("B") and shape[0] != weight[0]:
            problems.append(f"{name}: {list(shape)} does not fit {module} {list(weight)}")
    return problems


def inspect_model(path: str | Path, model_base: str | Path | None = None, image_tower: Optional[str] = None) -> InspectReport:
    """Parameter names/shapes/groups of the model a checkpoint folder or `config.json` describes,
    plus missing / unexpected / mis-shaped weights against the files of a checkpoint folder."""
    from artemis_cli.model.config import MMSettings, read_config_json
    from artemis_cli.model.loading import checkpoint_kind, resolve_tower, vision_config_for

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint folder or config file")
    config = read_config_json(path)
    folder = path if path.is_dir() else None
    mm = MMSettings.of(config)
    vision = vision_config_for(resolve_tower(mm.mm_image_tower, folder, image_tower)) if mm.mm_image_tower else None
    model = _meta_model(config, vision)
    state = model.state_dict()
    parameters = {name: list(t.shape) for name, t in state.items()}
    dtypes = {name: str(t.dtype).replace("torch.", "") for name, t in state.items()}
    groups: dict[str, dict] = {}
    for name, shape in parameters.items():
        entry = groups.setdefault(group_of(name), {"parameters": 0, "tensors": 0, "dtypes": []})
        count = 1
        for dim in shape:
            count *= dim
        entry["parameters"] += count
        entry["tensors"] += 1
        if dtypes[name] not in entry["dtypes"]:
            entry["dtypes"].append(dtypes[name])
    report = InspectReport(source=str(path), kind="config", parameters=parameters, dtypes=dtypes, groups=groups,
                           total=sum(g["parameters"] for g in groups.values()))
    if folder is None:
        return report
    report.kind = checkpoint_kind(folder)
    base = Path(model_base) if model_base is not None else None
    shapes, scope = _file_shapes(folder, report.kind, base)
    model_shapes = {name: tuple(shape) for name, shape in parameters.items()}
    if scope is not None:
        model_shapes = {n: s for n, s in model_shapes.items() if n.startswith(scope)}
    keys = W.compare_keys(model_shapes, shapes)
    report.checked = True
    report.missing, report.unexpected, report.mismatched = keys.missing, keys.unexpected, keys.mismatched
    if report.kind == "lora":
        report.mismatched += _adapter_problems(folder, {n: tuple(s) for n, s in parameters.items()})
    return report


def config_summary(path: str | Path) -> dict:
    """The few config facts a reader wants next to the table (hidden size, layers, vocab, tower)."""
    from artemis_cli.common.jsonio import load_json

    data = load_json(Path(path) / "config.json" if Path(path).is_dir() else Path(path))
    keys = ("hidden_size", "num_hidden_layers", "vocab_size", "mm_image_tower", "mm_projector_type", "mm_spi_model",
            "k_means", "tokenizer_model_max_length")
    return {key: data.get(key) for key in keys}
