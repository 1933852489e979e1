"""Image DisCo-Diff wiring: ADM U-Net + EDM preconditioning + latent context + guidance."""
import pytest
import torch

from bench.disco.image_denoiser import DisCoADMDenoiser
from bench.disco.latent_context import LatentContextConfig
from bench.disco.latents import guided, null_latent, one_hot
from bench.nets.adm_unet import ADMUNetConfig

CTX = LatentContextConfig(m=3, k=5, width=16, depth=1, heads=2)


def _model(seed=0):
    torch.manual_seed(seed)
    return DisCoADMDenoiser(ADMUNetConfig.tiny(xattn_dim=16), CTX).eval()


def _inputs(model, B=3):
    cfg = model.denoiser.net.cfg
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, cfg.in_channels, cfg.img_resolution, cfg.img_resolution, generator=g)
    y = torch.nn.functional.one_hot(torch.arange(B) % max(cfg.label_dim, 1), max(cfg.label_dim, 1)).float()
    z = one_hot(torch.randint(5, (B, 3), generator=g), 5)
    return x, (y if cfg.label_dim else None), z


def _as_if_trained(model, xattn=True):
    # EDM zero-initialises out_conv (a fresh net outputs 0) and we zero xattn_proj: give both
    # weights, as training would.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "out_conv" in name or (xattn and "xattn_proj" in name):
                p.normal_(0, 0.5)


def test_fresh_model_ignores_latents_then_uses_them():
    model = _model()
    x, y, z = _inputs(model)
    s = torch.tensor(1.3)
    _as_if_trained(model, xattn=False)
    with torch.no_grad():
        a = model(x, s, z, y)
        b = model(x, s, null_latent(3, 3, 5), y)
        assert torch.equal(a, b)                    # zero-init cross-attention: EDM's function
        _as_if_trained(model)
        assert not torch.allclose(model(x, s, z, y), model(x, s, null_latent(3, 3, 5), y))


def test_guidance_cfg0_is_conditional_and_cfg_moves_away_from_null():
    model = _model()
    _as_if_trained(model)
    x, y, z = _inputs(model)
    s = torch.tensor(0.7)
    D = lambda xx, ss, latent, class_labels: model(xx, ss, latent, class_labels)  # noqa: E731
    with torch.no_grad():
        cond = D(x, s, z, y)
        assert torch.allclose(guided(D, 0.0)(x, s, latent=z, class_labels=y), cond)
        uncond = D(x, s, torch.zeros_like(z), y)
        assert not torch.allclose(cond, uncond)
        # one batched call with the class labels doubled along with x and the latents
        assert torch.allclose(guided(D, 1.0)(x, s, latent=z, class_labels=y), 2 * cond - uncond, atol=1e-5)


def test_width_mismatch_is_refused():
    with pytest.raises(ValueError, match="xattn_dim"):
        DisCoADMDenoiser(ADMUNetConfig.tiny(xattn_dim=8), CTX)
