"""The multi-level RoI module against a slow per-box re-implementation of REFERENCE §4."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from artemis_cli.model.roi import MultiLevelRoIModule

C, D, QUERY, GRID, LEVELS = 64, 48, 32, 16, 4


def per_box_reference(module: MultiLevelRoIModule, levels: list[torch.Tensor], boxes: torch.Tensor,
                      image_size: int = 224) -> torch.Tensor:
    """One box at a time, spelled out from the description: pyramid, coordinates, 1x1 convs,
    5 shuffle-fuse rounds, RoIAlign at 4 scales, 3x3 convs, sum, ReLU, flatten, linear, box MLP, updims."""
    fuse, extractor = module.mlvl_fuse, module.roi_align
    tokens = []
    for i in range(boxes.shape[0]):
        maps = []
        for index, level in enumerate(levels):
            x = level[i].reshape(GRID, GRID, C).permute(2, 0, 1)[None]  # [1, C, 16, 16]
            side = GRID * 2 ** (LEVELS - 1 - index)  # 128, 64, 32, 16
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=True)
            ramp = torch.linspace(-1, 1, side)
            xs, ys = ramp[None, :].expand(side, side), ramp[:, None].expand(side, side)
            x = torch.cat([x, xs[None, None], ys[None, None]], dim=1)
            conv = fuse.input_conv[index]
            maps.append(F.conv2d(x, conv.weight, conv.bias))
        for round_ in fuse.fuse_convs:
            rebuilt = []
            for index in range(LEVELS):
                size = maps[index].shape[-2:]
                deeper = maps[min(index + 1, LEVELS - 1)][:, 3 * C // 4:]
                shallower = maps[max(index - 1, 0)][:, C // 2:3 * C // 4]
                x = torch.cat([maps[index][:, :C // 2],
                               F.interpolate(deeper, size=size, mode="bilinear", align_corners=True),
                               F.interpolate(shallower, size=size, mode="bilinear", align_corners=True)], dim=1)
                x = F.conv2d(x, round_.conv.weight, padding=1)
                x = F.group_norm(x, 64, round_.gn.weight, round_.gn.bias, round_.gn.eps)
                rebuilt.append(F.relu(x))
            maps = rebuilt
        box_px = boxes[i:i + 1] * image_size
        total = 0
        for index, feature in enumerate(maps):
            pooled = roi_align(feature, [box_px], output_size=14, spatial_scale=1 / (14 / 2 ** (LEVELS - 1 - index)),
                               sampling_ratio=2, aligned=True)
            pconv = extractor.pconvs[index]
            total = total + F.conv2d(pooled, pconv.weight, pconv.bias, padding=1)
        token = F.linear(F.relu(total).flatten(1), extractor.flatten_linear.weight, extractor.flatten_linear.bias)
        pos = extractor.pos_embedd
        p = F.layer_norm(F.relu(F.linear(boxes[i:i + 1], pos[0].weight, pos[0].bias)), (256,), pos[2].weight, pos[2].bias)
        p = F.layer_norm(F.relu(F.linear(p, pos[3].weight, pos[3].bias)), (QUERY,), pos[5].weight, pos[5].bias)
        tokens.append(F.linear(token + p, extractor.updims.weight, extractor.updims.bias))
    return torch.cat(tokens)


@pytest.fixture(scope="module")
def roi_case():
    torch.manual_seed(0)
    module = MultiLevelRoIModule(C, D, num_levels=LEVELS, num_fuse=5, query_size=QUERY).eval()
    for param in module.parameters():  # move GroupNorm/LayerNorm off their 1/0 init so they matter
        param.data += 0.05 * torch.randn_like(param)
    levels = [torch.randn(3, GRID * GRID, C) for _ in range(LEVELS)]
    boxes = torch.tensor([[0.10, 0.20, 0.55, 0.70], [0.0, 0.0, 1.0, 1.0], [0.62, 0.05, 0.93, 0.41]])
    return module, levels, boxes


@pytest.mark.slow
def test_batched_module_equals_per_box_reference(roi_case):
    module, levels, boxes = roi_case
    with torch.no_grad():
        batched = module(levels, boxes)
        slow = per_box_reference(module, levels, boxes)
    assert batched.shape == (3, D)
    torch.testing.assert_close(batched, slow, rtol=1e-4, atol=1e-5)
    # different boxes on different frames give different tokens (the frame index column is used)
    assert not torch.allclose(batched[0], batched[2])


def test_box_moves_the_token(roi_case):
    module, levels, boxes = roi_case
    small = MultiLevelRoIModule(C, D, num_levels=LEVELS, num_fuse=1, query_size=QUERY).eval()
    one = [level[:1] for level in levels]
    with torch.no_grad():
        a = small(one, boxes[:1])
        b = small(one, boxes[2:3])
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_close_to_fp32(dtype):
    torch.manual_seed(1)
    module = MultiLevelRoIModule(C, D, num_levels=LEVELS, num_fuse=1, query_size=QUERY).eval()
    levels = [torch.randn(1, GRID * GRID, C) for _ in range(LEVELS)]
    boxes = torch.tensor([[0.2, 0.1, 0.7, 0.9]])
    with torch.no_grad():
        ref = module(levels, boxes)
        low = module.to(dtype)(levels, boxes)
    assert low.dtype == dtype
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.05


def test_state_dict_names_are_the_published_ones():
    module = MultiLevelRoIModule(C, D, num_levels=4, num_fuse=5, query_size=QUERY)
    names = set(module.state_dict())
    expected = set()
    for i in range(4):
        expected |= {f"mlvl_fuse.input_conv.{i}.weight", f"mlvl_fuse.input_conv.{i}.bias",
                     f"roi_align.pconvs.{i}.weight", f"roi_align.pconvs.{i}.bias"}
    for i in range(5):
        expected |= {f"mlvl_fuse.fuse_convs.{i}.conv.weight", f"mlvl_fuse.fuse_convs.{i}.gn.weight",
                     f"mlvl_fuse.fuse_convs.{i}.gn.bias"}
    for i in (0, 2, 3, 5):
        expected |= {f"roi_align.pos_embedd.{i}.weight", f"roi_align.pos_embedd.{i}.bias"}
    expected |= {f"roi_align.{n}.{p}" for n in ("flatten_linear", "updims") for p in ("weight", "bias")}
    assert names == expected
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert shapes["mlvl_fuse.input_conv.0.weight"] == (C, C + 2, 1, 1)
    assert shapes["mlvl_fuse.fuse_convs.0.conv.weight"] == (C, C, 3, 3)
    assert shapes["roi_align.flatten_linear.weight"] == (QUERY, C * 14 * 14)
    assert shapes["roi_align.updims.weight"] == (D, QUERY)


def test_bad_boxes_shape_is_rejected(roi_case):
    module, levels, _ = roi_case
    with pytest.raises(ValueError, match=r"boxes must be \[N, 4\]"):
        module(levels, torch.zeros(2, 4))


def _gn_case(device: str, autocast_dtype: torch.dtype):
    from artemis_cli.model.roi import ConvGNReLU

    torch.manual_seed(0)
    block = ConvGNReLU(64).to(device)  # fp32 parameters, as mixed precision keeps trained ones
    x = torch.randn(2, 64, 16, 16, device=device)
    reference = F.relu(block.gn(block.conv(x)))  # the plain fp32 composition
    with torch.autocast(device, dtype=autocast_dtype):
        out = block(x)
    out.float().sum().backward()
    return block, reference, out


def test_groupnorm_runs_in_the_convolutions_dtype():
    from artemis_cli.model.roi import ConvGNReLU

    torch.manual_seed(0)
    block = ConvGNReLU(64)
    x = torch.randn(2, 64, 16, 16)
    assert torch.equal(block(x), F.relu(block.gn(block.conv(x))))  # fp32: the module's own GroupNorm
    block, reference, out = _gn_case("cpu", torch.bfloat16)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference.detach(), rtol=0.05, atol=0.05)
    assert block.gn.weight.grad is not None and block.gn.weight.grad.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_groupnorm_stays_half_under_cuda_autocast():
    """CUDA autocast lists group_norm as a float32 op; the RoI module keeps it in the conv's dtype."""
    block, reference, out = _gn_case("cuda", torch.bfloat16)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference.detach(), rtol=0.05, atol=0.05)
    assert block.gn.weight.grad.dtype == torch.float32
