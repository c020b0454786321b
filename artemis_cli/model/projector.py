"""The vision-to-LLM projector (`model.mm_projector`): `mlp2x_gelu` in the published model."""

from __future__ import annotations

import re

from torch import nn

from artemis_cli.errors import ConfigError

_MLP_GELU = re.compile(r"^mlp(\d+)x_gelu$")


def build_projector(projector_type: str, in_features: int, hidden_size: int) -> nn.Module:
    """``linear`` -> Linear; ``mlpNx_gelu`` -> Linear, (GELU, Linear) x N-1; ``identity``.

    For ``mlp2x_gelu`` the state-dict keys are ``0.*`` and ``2.*`` as in the published files.
    """
    if projector_type == "linear":
        return nn.Linear(in_features, hidden_size)
    if projector_type == "identity":
        return nn.Identity()
    match = _MLP_GELU.match(projector_type)
    if match is None:
        raise ConfigError("model config", [f"mm_projector_type: unknown projector {projector_type!r} "
                                           "(expected linear, identity or mlpNx_gelu)"])
    layers: list[nn.Module] = [nn.Linear(in_features, hidden_size)]
    for _ in range(1, int(match.group(1))):
        layers += [nn.GELU(), nn.Linear(hidden_size, hidden_size)]
    return nn.Sequential(*layers)
