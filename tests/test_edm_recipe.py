"""EDM's training recipe where the paper says it follows EDM: the loss summed over pixels (EDM's
gradient scale), the NaN guard on gradients, the ImageNet-64 schedule, and the EMA when
fine-tuning. Each EDM fact is transcribed from NVlabs/edm (commit 008a4e5): training/loss.py
EDMLoss, training/training_loop.py, train.py and its README's imagenet-64x64-cond-adm line."""
import json
import math

import pytest
import torch

from baselines.edm.preset import IMAGENET64_TRAIN, edm_preset
from bench.diffusion.loss import EDMLossConfig, loss_weight
from bench.images.model import ImageDiffusionModel, ImageModelConfig, draw_batch
from bench.images.presets import image_preset
from bench.nets.adm_unet import ADMUNetConfig
from bench.train import TrainConfig, fit


def _edm_scratch_gradient(model: ImageDiffusionModel, y, labels, draw, cfg: EDMLossConfig):
    """EDM's training step, transcribed: EDMLoss gives weight * (D(y + n) - y)^2 per element;
    training_loop does loss.sum().mul(loss_scaling / batch_gpu_total).backward() (loss_scaling 1)."""
    model.zero_grad()
    n = draw.noise * draw.sigma.reshape(-1, 1, 1, 1)
    D_yn = model.denoiser(y + n, draw.sigma, class_labels=labels)
    loss = loss_weight(draw.sigma, cfg.sigma_data).reshape(-1, 1, 1, 1) * (D_yn - y) ** 2
    loss.sum().mul(1 / y.shape[0]).backward()
    return [p.grad.clone() for p in model.parameters()]


def test_image_training_gradient_is_edms_sum_over_pixels():
    torch.manual_seed(0)
    cfg = ImageModelConfig(ADMUNetConfig.tiny())
    model = ImageDiffusionModel(cfg).double()
    loss = EDMLossConfig()
    gen = torch.Generator().manual_seed(1)
    draw = draw_batch(cfg, loss, batch=4, generator=gen)
    draw.noise, draw.sigma = draw.noise.double(), draw.sigma.double()
    y = torch.rand(4, 3, 16, 16, dtype=torch.float64, generator=gen) * 2 - 1
    labels = torch.eye(10, dtype=torch.float64)[torch.tensor([0, 3, 3, 9])]
    want = _edm_scratch_gradient(model, y, labels, draw, loss)

    model.zero_grad()
    model(y, labels, draw, loss).mean().backward()     # the training step of bench.images.pipeline
    got = [p.grad.clone() for p in model.parameters()]
    assert sum(g.abs().sum() for g in want) > 0
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-14)
    # the per-pixel mean this replaces is C*H*W = 768 times smaller
    model.zero_grad()
    (model(y, labels, draw, loss).mean() / (3 * 16 * 16)).backward()
    mean_grads = [p.grad.clone() for p in model.parameters()]
    ratio = sum(w.abs().sum() for w in want) / sum(m.abs().sum() for m in mean_grads)
    assert float(ratio) == pytest.approx(768, rel=1e-9)


def _toy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
    x = torch.randn(64, 2)
    calls = []

    def loss_fn(m, gen, shard):
        calls.append(1)
        idx = torch.randint(len(x), (16,), generator=gen)
        loss = (m(x[idx]) ** 2).mean()
        return loss * math.nan if len(calls) == 3 else loss   # the third step's loss is NaN
    return model, loss_fn


def test_one_nan_loss_leaves_the_weights_finite_and_is_logged(tmp_path, capsys):
    model, loss_fn = _toy()
    cfg = TrainConfig(steps=8, batch_size=16, lr=1e-2, log_every=2, checkpoint_every=100)
    info = fit(model, loss_fn, cfg, tmp_path, {"net": "toy"}, progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert info["nonfinite_steps"] == 1 and math.isfinite(info["final_loss"])
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e.get("event") == "nonfinite_loss"] == [3]
    assert "non-finite loss (nan) at step 3" in capsys.readouterr().out


def test_without_the_guard_one_nan_loss_poisons_the_weights():
    # what the guard prevents: Adam steps on NaN gradients make every touched weight NaN for good
    model, loss_fn = _toy()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        opt.zero_grad()
        loss_fn(model, gen, None).backward()
        opt.step()
    assert not all(torch.isfinite(p).all() for p in model.parameters())


def test_imagenet64_recipe_is_edms():
    t = IMAGENET64_TRAIN
    assert (t.batch_size, t.lr, t.lr_rampup_kimg, t.ema_halflife_kimg) == (4096, 1e-4, 10_000, 50_000)
    # training_loop.py: steps until cur_nimg >= 2500 Mimg, so the last batch passes the mark
    assert t.steps == 610_352 and (t.steps - 1) * 4096 < 2.5e9 <= t.steps * 4096
    assert edm_preset("paper").unet.dropout == 0.10 and edm_preset("paper").published
    # fine-tuning from EDM's network: EDM's --transfer sets ema_rampup_ratio = None
    for label in ("DisCo-Diff", "DisCo-Diff (hierarchical)"):
        p = image_preset(label, "paper")
        assert p.init_from_edm and p.train.ema_rampup_ratio is None and p.train.lr == 1e-4
    # from scratch below paper scale, the ramp-up stays as EDM trains from scratch
    assert image_preset("DisCo-Diff", "small").train.ema_rampup_ratio == 0.05
