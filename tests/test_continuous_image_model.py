"""Table 3's continuous-latent ablation inside the image model (bench/images/model.py, presets.py):
the KL term in the loss, the null latent, stage-2 latents, and that the new options leave every
earlier model's cache key as it was."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.disco.continuous import gaussian_latent
from bench.disco.latent_context import LatentContextConfig
from bench.images.model import ImageDiffusionModel, ImageModelConfig, draw_batch
from bench.images.presets import CONTINUOUS, image_preset
from bench.provenance import config_dict, config_hash

CONT = "continuous latent, KLD weight 0.1"


def test_new_options_keep_earlier_cache_keys():
    """continuous_dim and kld_weight at their defaults are left out of the hashed config: DisCo-Diff's and
    EDM's models trained before these options existed are still found in the cache."""
    p = image_preset("DisCo-Diff", "small")
    d = config_dict(p.model)
    assert "kld_weight" not in d and "continuous_dim" not in d["context"]
    assert "continuous_dim" not in config_dict(LatentContextConfig())
    c = config_dict(image_preset(CONT, "small").model)
    assert c["kld_weight"] == 0.1 and c["context"]["continuous_dim"] == 16
    # pinned: the small DisCo-Diff model's config hash from before the continuous options (c4bb80a)
    assert config_hash(d) == "c4e928de73af"


@pytest.mark.parametrize("scale,dims", [("smoke", 2 * 8), ("small", 4 * 16), ("paper", 10 * 100)])
def test_continuous_presets(scale, dims):
    for label, w in CONTINUOUS.items():
        p = image_preset(label, scale)
        c, e = p.model.context, p.model.encoder
        assert c.m * c.continuous_dim == dims and e.k == 2 * c.continuous_dim and p.model.kld_weight == w
        assert (p.prior.width, p.prior.depth, p.prior.heads) == (lambda a: (a.width, a.depth, a.heads))(
            image_preset("DisCo-Diff", scale).prior)   # "the same Transformer as the AR prior"
        assert p.init_from_edm == (scale == "paper")


def test_config_refuses_inconsistent_continuous_settings():
    p = image_preset(CONT, "smoke").model
    with pytest.raises(ValueError, match="kld_weight > 0"):
        dataclasses.replace(p, kld_weight=0.0)
    with pytest.raises(ValueError, match="k = 2d"):
        dataclasses.replace(p, encoder=dataclasses.replace(p.encoder, k=p.context.continuous_dim))
    d = image_preset("DisCo-Diff", "smoke").model
    with pytest.raises(ValueError, match="for continuous latents"):
        dataclasses.replace(d, kld_weight=0.1)


def _model(weight: float, seed: int = 0) -> ImageDiffusionModel:
    cfg = dataclasses.replace(image_preset(CONT, "smoke").model, kld_weight=weight)
    torch.manual_seed(seed)
    return ImageDiffusionModel(cfg)


def test_loss_adds_the_weighted_kl_term():
    a, b = _model(1.0), _model(0.25)
    b.load_state_dict(a.state_dict())
    cfg, loss = a.cfg, image_preset(CONT, "smoke").loss
    y = torch.rand(6, 1, 8, 8) * 2 - 1
    draw = draw_batch(cfg, loss, 6, torch.Generator().manual_seed(1))
    assert draw.gumbel.shape == (6, cfg.context.m, cfg.context.continuous_dim)   # N(0, 1), not Gumbel
    kld = gaussian_latent(a.encoder(y), draw.gumbel)[1]
    lab = torch.eye(10)[torch.arange(6)]
    assert torch.allclose(a(y, lab, draw, loss) - b(y, lab, draw, loss), 0.75 * kld, rtol=1e-4, atol=1e-3)


def test_dropped_latent_is_the_null_latent():
    """keep = 0: the denoiser sees the null latent, whatever the encoder says (guidance's D(null))."""
    m = _model(0.1)
    for p in m.denoiser.context.embed.parameters():   # make the embedding non-trivial
        torch.nn.init.normal_(p)
    y = torch.rand(2, 1, 8, 8) * 2 - 1
    lat = m.cfg.context.latent_shape
    x, s, lab = torch.randn(2, 1, 8, 8), torch.full((2,), 1.0), torch.eye(10)[:2]
    null = m.denoiser(x, s, latent=torch.zeros(2, *lat), class_labels=lab)
    u = gaussian_latent(m.encoder(y), torch.randn(2, lat[0], lat[1] - 1))[0]
    from bench.disco.continuous import with_presence
    opened = 0
    for name, prm in m.denoiser.denoiser.net.named_parameters():   # open the zero-initialised layers
        if prm.dim() > 1 and not prm.detach().abs().sum():        # (cross-attention and output projections)
            torch.nn.init.normal_(prm, std=0.1)
            opened += "xattn_proj" in name
    assert opened
    null = m.denoiser(x, s, latent=torch.zeros(2, *lat), class_labels=lab)
    assert not torch.allclose(m.denoiser(x, s, latent=with_presence(u), class_labels=lab), null)
    assert torch.equal(m.denoiser(x, s, latent=with_presence(u) * 0, class_labels=lab), null)


def test_stage2_latents_are_encoder_samples():
    m = _model(0.1)
    y = torch.rand(3, 1, 8, 8) * 2 - 1
    eps = torch.randn(3, m.cfg.context.m, m.cfg.context.continuous_dim)
    u = m.extract_latents(y, eps)
    assert u.dtype == torch.float32 and torch.equal(u, gaussian_latent(m.encoder(y), eps)[0])


def test_unconditional_presets():
    for label in ("EDM", "DisCo-Diff"):
        p = image_preset(label, "paper", conditional=False)
        assert p.model.unet.label_dim == 0 and not p.init_from_edm and p.train.steps == 610_352
        assert p.run_name.endswith("-uncond-paper")
        assert p.prior is None or p.prior.num_classes == 0
    assert image_preset("DisCo-Diff", "small").run_name == "disco-diff-small"   # the cache name of old runs
    assert isinstance(ImageModelConfig, type)
