"""DisCo-Diff ViT encoder (App. D): image -> m categorical latents with k logits each."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.nets.vit_encoder import ViTEncoder, ViTEncoderConfig

torch.set_num_threads(1)

TINY = ViTEncoderConfig.tiny()
B = 3


def _x(cfg: ViTEncoderConfig = TINY, seed: int = 0, batch: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, cfg.in_channels, cfg.img_resolution, cfg.img_resolution, generator=g)


def _model(cfg: ViTEncoderConfig = TINY, seed: int = 0) -> ViTEncoder:
    torch.manual_seed(seed)
    return ViTEncoder(cfg).eval()


def test_output_shape_and_finite():
    logits = _model()(_x())
    assert logits.shape == (B, TINY.m, TINY.k)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("shape", [(B, 3, 8, 8), (B, 1, 16, 16), (B, 1, 8, 4), (1, 8, 8)])
def test_wrong_input_shape_raises(shape):
    model = _model()
    with pytest.raises(ValueError, match=r"\[B, 1, 8, 8\]"):
        model(torch.randn(*shape))


@pytest.mark.parametrize("kwargs, word", [
    (dict(img_resolution=9), "divisible by patch"),
    (dict(width=30), "divisible by heads"),
    (dict(m=0), "m "),
    (dict(k=1), "k "),
])
def test_config_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        dataclasses.replace(TINY, **kwargs)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.m = 3  # type: ignore[misc]


def test_tokens_differ():
    logits = _model()(_x())                               # [B, m, k]
    for i in range(TINY.m):
        for j in range(i + 1, TINY.m):
            assert not torch.allclose(logits[:, i], logits[:, j], atol=1e-4)


def test_batch_independence():
    model = _model()
    x = _x()
    x2 = x.clone()
    x2[1] = torch.randn_like(x2[1]) * 3.0 + 1.0           # change only sample j = 1
    with torch.no_grad():
        a, b = model(x), model(x2)
    assert not torch.allclose(a[1], b[1], atol=1e-4)      # sample j did change
    for i in (0, 2):
        torch.testing.assert_close(a[i], b[i], rtol=1e-5, atol=1e-5)
    # And a sample alone gives the same logits as inside the batch.
    with torch.no_grad():
        torch.testing.assert_close(model(x[2:3])[0], a[2], rtol=1e-5, atol=1e-5)


def test_gradient_reaches_patch_embedding():
    model = _model().train()
    model(_x()).sum().backward()
    for p in (model.patch_embed.weight, model.patch_embed.bias, model.pos_embed,
              model.latent_tokens, model.token_bias):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert model.patch_embed.weight.grad.abs().sum() > 0


def test_imagenet64_config_and_param_count():
    cfg = ViTEncoderConfig.imagenet64()
    assert (cfg.img_resolution, cfg.in_channels, cfg.patch, cfg.width, cfg.depth, cfg.heads,
            cfg.m, cfg.k) == (64, 3, 8, 768, 12, 12, 10, 100)
    assert cfg.num_patches == 64
    with torch.device("meta"):                            # no memory/time for 85M weights
        model = ViTEncoder(cfg)
    n = sum(p.numel() for p in model.parameters())
    D, N, L, F = 768, 64, 12, 3072
    per_layer = (3 * D * D + 3 * D) + (D * D + D) + (D * F + F) + (F * D + D) + 4 * D
    expected = (3 * 64 * D + D) + N * D + 2 * 10 * D + L * per_layer + 2 * D + (D * 100 + 100) + 1000
    print(f"ViTEncoder imagenet64 parameters: {n:,}")
    assert n == expected
    assert 84e6 < n < 87e6                                 # ViT-Base scale
