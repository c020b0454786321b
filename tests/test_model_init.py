"""Initialisation and fp16 details of the RoI module and projector against the published classes.

The published RoI module is GPT4RoI's: `MLVLFuseModule` (plain `nn.Conv2d` 1x1 input convs, mmcv
`ConvModule` fuse convs with GroupNorm) and `MlvlRoIExtractor` (its `norm_init_weights` draws every conv
from N(0, 0.01), bias 0; `nn.Linear` / `nn.LayerNorm` keep PyTorch's defaults). mmcv's `ConvModule`
initialises in its constructor: `kaiming_init(conv, a=0, mode="fan_out", nonlinearity="relu",
distribution="normal")` (no bias with a norm layer) and `constant_init(norm, 1, bias=0)`. The recipe
is written out here with plain torch layers and compared tensor by tensor (std and mean).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from artemis_cli.model.projector import build_projector
from artemis_cli.model.roi import MultiLevelRoIModule, coordinate_channels

C, D, QUERY, LEVELS, FUSE = 64, 48, 32, 4, 5


def published_recipe(width: int, out: int, query: int) -> dict[str, torch.Tensor]:
    """Every RoI-module tensor drawn as the published constructors draw it, by state-dict name."""
    tensors: dict[str, torch.Tensor] = {}

    def put(prefix: str, module: nn.Module) -> None:
        for name, value in module.state_dict().items():
            tensors[f"{prefix}.{name}"] = value

    for level in range(LEVELS):
        put(f"mlvl_fuse.input_conv.{level}", nn.Conv2d(width + 2, width, 1))  # PyTorch default
    for index in range(FUSE):
        conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_out", nonlinearity="relu")  # mmcv kaiming_init
        gn = nn.GroupNorm(min(64, width), width)
        nn.init.constant_(gn.weight, 1.0)  # mmcv constant_init(norm, 1, bias=0)
        nn.init.constant_(gn.bias, 0.0)
        put(f"mlvl_fuse.fuse_convs.{index}.conv", conv)
        put(f"mlvl_fuse.fuse_convs.{index}.gn", gn)
    for level in range(LEVELS):
        conv = nn.Conv2d(width, width, 3, padding=1)
        nn.init.normal_(conv.weight, 0.0, 0.01)  # mmcv normal_init(m, 0, 0.01): bias 0
        nn.init.constant_(conv.bias, 0.0)
        put(f"roi_align.pconvs.{level}", conv)
    put("roi_align.pos_embedd", nn.Sequential(nn.Linear(4, 256), nn.ReLU(), nn.LayerNorm(256),
                                              nn.Linear(256, query), nn.ReLU(), nn.LayerNorm(query)))
    put("roi_align.flatten_linear", nn.Linear(width * 14 * 14, query))
    put("roi_align.updims", nn.Linear(query, out))
    return tensors


def assert_same_distribution(name: str, ours: torch.Tensor, reference: torch.Tensor) -> None:
    assert ours.shape == reference.shape, name
    if reference.numel() == 1 or reference.std() == 0:
        torch.testing.assert_close(ours, reference, msg=lambda m: f"{name}: {m}")
        return
    n = reference.numel()
    ref_std, our_std = reference.std().item(), ours.std().item()
    # Sampling error of a std estimate is ~ std / sqrt(2 n); allow 6 of those plus 2% for tiny tensors.
    assert abs(our_std - ref_std) <= ref_std * (6 / math.sqrt(2 * n) + 0.02), f"{name}: std {our_std} vs {ref_std}"
    assert abs(ours.mean().item() - reference.mean().item()) <= 6 * ref_std / math.sqrt(n), f"{name}: mean"


def test_every_roi_tensor_is_initialised_as_the_published_classes():
    torch.manual_seed(0)
    ours = MultiLevelRoIModule(C, D, num_levels=LEVELS, num_fuse=FUSE, query_size=QUERY).state_dict()
    torch.manual_seed(1)
    reference = published_recipe(C, D, QUERY)
    assert sorted(ours) == sorted(reference)
    for name in reference:
        assert_same_distribution(name, ours[name].float(), reference[name].float())
    # The fuse convs are the ones PyTorch's default (kaiming_uniform, a=sqrt(5), fan_in) gets wrong:
    # std sqrt(2 / (9 C)) = 0.0589 at width 64 (0.0295 at 256, as published), against 0.024 by default.
    fuse_std = ours["mlvl_fuse.fuse_convs.0.conv.weight"].std().item()
    assert fuse_std == pytest.approx(math.sqrt(2 / (9 * C)), rel=0.03)


def test_reset_parameters_redraws_the_published_recipe():
    module = MultiLevelRoIModule(C, D, num_levels=LEVELS, num_fuse=FUSE, query_size=QUERY)
    with torch.no_grad():
        for param in module.parameters():
            param.fill_(0.5)
    module.reset_parameters()
    reference = published_recipe(C, D, QUERY)
    state = module.state_dict()
    for name in reference:
        assert_same_distribution(name, state[name].float(), reference[name].float())


def test_model_init_and_meta_fill_use_the_recipe(tiny_artemis):
    """`ArtemisForCausalLM` (and `load_model`'s fresh modules, through `reset_multimodal_parameters`)."""
    import copy

    from artemis_cli.model.llava import reset_multimodal_parameters

    model = copy.deepcopy(tiny_artemis[0])  # the session fixture keeps its weights
    roi = model.get_roi_module()
    width = roi.mlvl_fuse.fuse_convs[0].conv.weight.shape[0]
    with torch.no_grad():
        for param in list(roi.parameters()) + list(model.model.mm_projector.parameters()):
            param.fill_(0.5)
    reset_multimodal_parameters(model)
    for fuse in roi.mlvl_fuse.fuse_convs:
        assert fuse.conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * width)), rel=0.05)
        assert torch.equal(fuse.gn.weight, torch.ones_like(fuse.gn.weight))
    for conv in roi.roi_align.pconvs:
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert not conv.bias.any()
    first = model.model.mm_projector[0]
    bound = 1 / math.sqrt(first.in_features)  # nn.Linear default: U(-1/sqrt(in), 1/sqrt(in))
    assert first.weight.abs().max().item() <= bound
    assert first.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_projector_layers_keep_pytorch_defaults():
    torch.manual_seed(0)
    projector = build_projector("mlp2x_gelu", 1024, 256)
    for layer in (projector[0], projector[2]):
        bound = 1 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max().item() <= bound
        assert layer.bias.abs().max().item() <= bound
        assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_coordinate_channels_are_fp32_values_cast_afterwards():
    """The published fuse module concatenates fp32 linspace coordinates and casts the result to fp16."""
    for side in (16, 32, 64, 128):
        feature = torch.zeros(2, 3, side, side, dtype=torch.float16)
        ramp = torch.linspace(-1, 1, side, dtype=torch.float32)
        expected_x = ramp[None, :].expand(side, side).half()
        expected_y = ramp[:, None].expand(side, side).half()
        coords = coordinate_channels(feature)
        assert coords.dtype == torch.float16 and coords.shape == (2, 2, side, side)
        assert torch.equal(coords[1, 0], expected_x) and torch.equal(coords[0, 1], expected_y)
    # linspace computed in fp16 lands on other values at these sizes: the difference this fixes.
    assert not torch.equal(torch.linspace(-1, 1, 128, dtype=torch.float16),
                           torch.linspace(-1, 1, 128, dtype=torch.float32).half())
