"""ADM U-Net (EDM's DhariwalUNet naming) + zero-initialised DisCo-Diff cross-attention."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.nets.adm_unet import ADMUNet, ADMUNetConfig, EDMStateDictError, load_edm_state_dict

# Tiny config: 16x16, model_channels 16, channel_mult (1, 2), 1 block, attention at 8x8, 10 classes.
# channels_per_head=8 so attention is active (with EDM's fixed 64, 32 // 64 = 0 heads).
TINY = ADMUNetConfig(img_resolution=16, label_dim=10, model_channels=16, channel_mult=(1, 2),
                     num_blocks=1, attn_resolutions=(8,), channels_per_head=8, dropout=0.0)
XDIM = 12  # C_ctx of the latent tokens
B, L = 2, 5

# Expected keys/shapes, derived by hand from EDM's DhariwalUNet naming scheme for TINY
# (emb = 16 * 4 = 64; enc: 16x16_conv, 16x16_block0, 8x8_down, 8x8_block0;
#  dec: 8x8_in0, 8x8_in1, 8x8_block0..1, 16x16_up, 16x16_block0..1; skip widths 16,16,16,32).
EDM_SPEC: dict[str, tuple[int, ...]] = {
    "map_layer0.weight": (64, 16), "map_layer0.bias": (64,),
    "map_layer1.weight": (64, 64), "map_layer1.bias": (64,),
    "map_label.weight": (64, 10),                       # no bias in EDM's ADM
    "enc.16x16_conv.weight": (16, 3, 3, 3), "enc.16x16_conv.bias": (16,),
    "enc.16x16_block0.norm0.weight": (16,), "enc.16x16_block0.conv0.weight": (16, 16, 3, 3),
    "enc.16x16_block0.affine.weight": (32, 64), "enc.16x16_block0.affine.bias": (32,),
    "enc.16x16_block0.norm1.bias": (16,), "enc.16x16_block0.conv1.weight": (16, 16, 3, 3),
    "enc.8x8_down.conv0.weight": (16, 16, 3, 3), "enc.8x8_down.conv0.resample_filter": (1, 1, 2, 2),
    "enc.8x8_down.skip.resample_filter": (1, 1, 2, 2),  # kernel-0 skip: buffer only
    "enc.8x8_block0.conv0.weight": (32, 16, 3, 3), "enc.8x8_block0.skip.weight": (32, 16, 1, 1),
    "enc.8x8_block0.skip.bias": (32,), "enc.8x8_block0.norm2.weight": (32,),
    "enc.8x8_block0.qkv.weight": (96, 32, 1, 1), "enc.8x8_block0.qkv.bias": (96,),
    "enc.8x8_block0.proj.weight": (32, 32, 1, 1), "enc.8x8_block0.proj.bias": (32,),
    "dec.8x8_in0.qkv.weight": (96, 32, 1, 1), "dec.8x8_in1.conv1.weight": (32, 32, 3, 3),
    "dec.8x8_block0.norm0.weight": (64,), "dec.8x8_block0.conv0.weight": (32, 64, 3, 3),
    "dec.8x8_block0.skip.weight": (32, 64, 1, 1), "dec.8x8_block0.qkv.weight": (96, 32, 1, 1),
    "dec.8x8_block1.conv0.weight": (32, 48, 3, 3), "dec.8x8_block1.proj.weight": (32, 32, 1, 1),
    "dec.16x16_up.conv0.weight": (32, 32, 3, 3), "dec.16x16_up.conv0.resample_filter": (1, 1, 2, 2),
    "dec.16x16_up.skip.resample_filter": (1, 1, 2, 2),
    "dec.16x16_block0.conv0.weight": (16, 48, 3, 3), "dec.16x16_block0.skip.weight": (16, 48, 1, 1),
    "dec.16x16_block1.conv0.weight": (16, 32, 3, 3), "dec.16x16_block1.affine.weight": (32, 64),
    "out_norm.weight": (16,), "out_norm.bias": (16,),
    "out_conv.weight": (3, 16, 3, 3), "out_conv.bias": (3,),
}
# Keys EDM does NOT have for this config (no aux_* in ADM, no attention at 16x16, no skip on
# same-width blocks, no weight on kernel-0 skips, no map_augment without augment_dim).
EDM_ABSENT = [
    "dec.16x16_aux_conv.weight", "dec.16x16_aux_norm.weight", "map_augment.weight",
    "map_label.bias", "enc.16x16_block0.qkv.weight", "enc.16x16_block0.skip.weight",
    "enc.8x8_down.skip.weight", "dec.8x8_in1.qkv.weight", "dec.16x16_block1.qkv.weight",
    "enc.16x16_conv.resample_filter", "dec.8x8_block0.skip.resample_filter",
]


def _inputs(cfg: ADMUNetConfig, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, cfg.in_channels, cfg.img_resolution, cfg.img_resolution, generator=g)
    t = torch.randn(B, generator=g)
    c = torch.nn.functional.one_hot(torch.tensor([1, 7]), cfg.label_dim).float()
    return x, t, c


def _randomize_(model: torch.nn.Module, seed: int = 1) -> None:
    """Make EDM's zero-initialised layers (conv1, proj, out_conv) non-zero, xattn_ excluded."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "xattn_" not in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_output_shape_and_dtype():
    torch.manual_seed(0)
    model = ADMUNet(TINY).eval()
    x, t, c = _inputs(TINY)
    y = model(x, t, c)
    assert y.shape == (B, 3, 16, 16) and y.dtype == torch.float32
    mx = ADMUNet(dataclasses.replace(TINY, xattn_dim=XDIM)).eval()
    y2 = mx(x, t, c, latent_tokens=torch.randn(B, L, XDIM))
    assert y2.shape == (B, 3, 16, 16) and y2.dtype == torch.float32


def test_parameter_names_follow_edm_scheme():
    sd = ADMUNet(TINY).state_dict()
    for k, shape in EDM_SPEC.items():
        assert k in sd, k
        assert tuple(sd[k].shape) == shape, (k, tuple(sd[k].shape), shape)
    for k in EDM_ABSENT:
        assert k not in sd, k
    assert not any("xattn_" in k for k in sd)
    # EDM's fixed channels_per_head=64 gives 32 // 64 = 0 heads here: no attention modules at all.
    sd64 = ADMUNet(dataclasses.replace(TINY, channels_per_head=64)).state_dict()
    assert not any(k.endswith(("qkv.weight", "norm2.weight")) for k in sd64)
    # Cross-attention modules sit exactly in the blocks with self-attention.
    sdx = ADMUNet(dataclasses.replace(TINY, xattn_dim=XDIM)).state_dict()
    attn_blocks = {k.rsplit(".", 2)[0] for k in sd if k.endswith("qkv.weight")}
    xattn_blocks = {k.rsplit(".", 2)[0] for k in sdx if ".xattn_" in k}
    assert attn_blocks == xattn_blocks == {"enc.8x8_block0", "dec.8x8_in0", "dec.8x8_block0",
                                           "dec.8x8_block1"}
    assert tuple(sdx["dec.8x8_in0.xattn_kv.weight"].shape) == (64, XDIM)
    assert tuple(sdx["dec.8x8_in0.xattn_q.weight"].shape) == (32, 32, 1, 1)
    assert float(sdx["dec.8x8_in0.xattn_proj.weight"].abs().sum()) == 0.0
    assert float(sdx["dec.8x8_in0.xattn_proj.bias"].abs().sum()) == 0.0


def _pair():
    torch.manual_seed(0)
    base = ADMUNet(TINY).eval()
    _randomize_(base)
    torch.manual_seed(1)
    withx = ADMUNet(dataclasses.replace(TINY, xattn_dim=XDIM)).eval()
    missing = load_edm_state_dict(withx, base.state_dict())
    return base, withx, missing


def test_edm_weights_load_and_zero_init_xattn_is_exact():
    base, withx, missing = _pair()
    assert missing and all(".xattn_" in k for k in missing)
    assert len(missing) == 4 * 8  # 4 attention blocks x (norm, q, kv, proj) x (weight, bias)
    x, t, c = _inputs(TINY)
    lt = torch.randn(B, L, XDIM)
    with torch.no_grad():
        y0 = base(x, t, c)
        assert y0.abs().max() > 0  # randomised: non-trivial comparison
        assert torch.equal(withx(x, t, c, latent_tokens=lt), y0)
        assert torch.equal(withx(x, t, c), y0)
    # Also loads into a model without cross-attention (plain strict EDM load).
    fresh = ADMUNet(TINY)
    assert load_edm_state_dict(fresh, base.state_dict()) == []


def test_perturbed_xattn_proj_makes_output_depend_on_latents():
    _, withx, _ = _pair()
    with torch.no_grad():
        for name, p in withx.named_parameters():
            if ".xattn_proj." in name:
                p.normal_(0.0, 0.1)
    x, t, c = _inputs(TINY)
    lt1, lt2 = torch.randn(B, L, XDIM), torch.randn(B, L, XDIM)
    with torch.no_grad():
        y1 = withx(x, t, c, latent_tokens=lt1)
        y2 = withx(x, t, c, latent_tokens=lt2)
        y_none = withx(x, t, c)
    assert (y1 - y2).abs().max() > 1e-4
    assert (y1 - y_none).abs().max() > 1e-4
    # Each sample only sees its own tokens: changing sample 1's tokens leaves sample 0 unchanged.
    lt3 = lt1.clone()
    lt3[1] = lt2[1]
    with torch.no_grad():
        y3 = withx(x, t, c, latent_tokens=lt3)
    assert torch.allclose(y3[0], y1[0], atol=1e-6) and not torch.allclose(y3[1], y1[1])


def test_load_edm_state_dict_reports_bad_keys():
    base = ADMUNet(TINY)
    withx = ADMUNet(dataclasses.replace(TINY, xattn_dim=XDIM))
    sd = base.state_dict()

    missing = dict(sd)
    del missing["enc.8x8_block0.qkv.weight"]
    with pytest.raises(EDMStateDictError, match=r"missing non-xattn keys.*enc\.8x8_block0\.qkv\.weight"):
        load_edm_state_dict(withx, missing)

    wrong = dict(sd)
    wrong["out_conv.weight"] = torch.zeros(3, 16, 1, 1)
    with pytest.raises(EDMStateDictError, match=r"shape mismatches.*out_conv\.weight.*\(3, 16, 1, 1\)"):
        load_edm_state_dict(withx, wrong)

    extra = dict(sd)
    extra["enc.16x16_block0.qkv.weight"] = torch.zeros(48, 16, 1, 1)
    with pytest.raises(EDMStateDictError, match=r"unexpected keys.*enc\.16x16_block0\.qkv\.weight"):
        load_edm_state_dict(withx, extra)

    # EDMPrecond-style "model." prefix is stripped when asked.
    prefixed = {f"model.{k}": v for k, v in sd.items()}
    assert len(load_edm_state_dict(withx, prefixed, prefix="model.")) == 32
    with pytest.raises(EDMStateDictError, match="unexpected keys"):
        load_edm_state_dict(withx, prefixed)


def test_latent_token_width_is_checked():
    mx = ADMUNet(dataclasses.replace(TINY, xattn_dim=XDIM)).eval()
    x, t, c = _inputs(TINY)
    with pytest.raises(ValueError, match="latent_tokens"):
        mx(x, t, c, latent_tokens=torch.randn(B, L, XDIM + 1))
