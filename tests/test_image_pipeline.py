"""Image pipeline: stage 1/2 on the smoke preset, exact resume, DDP = one process, sampling CLI
(per-sample seeds, counted NFE, EDM's draw order), group-hierarchical latents, bad inputs."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.images import DatasetError
from bench.diffusion.preconditioning import EDMPrecond
from bench.disco.latent_context import LatentContext, LatentContextConfig
from bench.images.checkpoints import DenoiserCheckpoint
from bench.images.model import ImageDiffusionModel
from bench.images.pipeline import load_preset_dataset, to_checkpoint, train_prior, train_stage1
from bench.images.presets import image_preset
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig

ROOT = Path(__file__).resolve().parents[1]


def _short(label, steps=6, batch=8):
    p = image_preset(label, "smoke")
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, steps=steps, batch_size=batch, checkpoint_every=2))
    if p.prior_train is not None:
        p = dataclasses.replace(p, prior_train=dataclasses.replace(p.prior_train, steps=steps, batch_size=16))
    return p


def _weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


@pytest.fixture(scope="module")
def digits():
    return load_preset_dataset(image_preset("DisCo-Diff", "smoke"))


def test_stage1_resume_is_exact_with_ema(tmp_path, digits):
    p = _short("DisCo-Diff", steps=8)
    full = train_stage1(p, digits, tmp_path / "a", progress=False)
    part = train_stage1(p, digits, tmp_path / "b", progress=False, stop_after=3)
    assert part.info["stopped_at"] == 3
    resumed = train_stage1(p, digits, tmp_path / "b", progress=False)
    assert resumed.info["resumed_from"] == 3
    for (k, a), b in zip(_weights(full.model).items(), _weights(resumed.model).values()):
        assert torch.equal(a, b), k
    for a, b in zip(_weights(full.ema).values(), _weights(resumed.ema).values()):
        assert torch.equal(a, b)
    log = [json.loads(l) for l in (full.run_dir / "log.jsonl").read_text().splitlines()]
    assert log and all("examples_per_s" in r for r in log)
    assert json.loads((full.run_dir / "config.json").read_text())["model"]["model"]["tau"] == 1.0


def test_stage2_codes_and_prior_then_sample_cli_with_guidance(tmp_path, digits):
    p = _short("DisCo-Diff")
    s1 = train_stage1(p, digits, tmp_path, progress=False)
    s2 = train_prior(p, s1, digits, progress=False)
    assert s2.codes.shape == (len(digits), p.prior.m) and s2.codes.max() < p.prior.k
    assert np.isfinite(s2.info["final_loss"])
    ckpt = tmp_path / "disco.pt"
    to_checkpoint(p, s1, s2).save(ckpt)
    out = tmp_path / "s.npz"
    r = subprocess.run([sys.executable, "-m", "bench", "sample", "--checkpoint", str(ckpt), "--seeds", "0-3",
                        "--steps", "3", "--cfg", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    d = np.load(out)
    assert d["images"].shape == (4, 1, 8, 8) and d["images"].dtype == np.uint8
    assert d["latents"].shape == (4, p.prior.m) and int(d["nfe"]) == 5   # guidance: one batched call
    assert out.with_suffix(".png").exists()


def _edm_checkpoint(path, seed=0):
    """A small EDM-layout denoiser with non-zero output layer (so images depend on the net)."""
    cfg = ADMUNetConfig(img_resolution=8, in_channels=1, out_channels=1, label_dim=3, model_channels=16,
                        channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,), channels_per_head=8, dropout=0.0)
    torch.manual_seed(seed)
    net = EDMPrecond(ADMUNet(cfg), 0.5)
    with torch.no_grad():
        net.net.out_conv.weight.normal_(0, 0.05)
    DenoiserCheckpoint(cfg, 0.5, net.state_dict(), source="test").save(path)
    return net


def _sample(ckpt, out, *extra):
    return subprocess.run([sys.executable, "-m", "bench", "sample", "--checkpoint", str(ckpt), "--out", str(out),
                           *extra], cwd=ROOT, capture_output=True, text=True)


def _reference_edm_generate(net, seeds, steps, label_dim):
    """EDM generate.py's order, written out independently: per seed, a generator draws the
    initial noise [C,H,W] then the class label; deterministic Heun on EDM's time steps."""
    from bench.diffusion.discretisation import edm_sigma_steps

    out = []
    t = edm_sigma_steps(steps)
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        x = torch.randn(1, 1, 8, 8, generator=g).double() * t[0]
        y = torch.eye(label_dim)[torch.randint(label_dim, (), generator=g)][None]
        for i in range(steps):
            d = (x - net(x.float(), t[i].float(), class_labels=y).double()) / t[i]
            x_next = x + (t[i + 1] - t[i]) * d
            if i < steps - 1:
                d2 = (x_next - net(x_next.float(), t[i + 1].float(), class_labels=y).double()) / t[i + 1]
                x_next = x + (t[i + 1] - t[i]) * (d + d2) / 2
            x = x_next
        out.append((x * 127.5 + 128).clip(0, 255).to(torch.uint8)[0].numpy())
    return np.stack(out)


def test_sample_cli_seeds_independent_of_batch_and_match_edm_order(tmp_path):
    net = _edm_checkpoint(tmp_path / "edm.pt").eval()
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    r = _sample(tmp_path / "edm.pt", a, "--seeds", "0-5", "--steps", "4", "--batch", "6")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "NFE 7" in r.stdout
    r = _sample(tmp_path / "edm.pt", b, "--seeds", "3-5", "--steps", "4", "--batch", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    ia, ib = np.load(a)["images"], np.load(b)["images"]
    assert np.array_equal(ia[3:], ib)
    assert len({x.tobytes() for x in ia}) == 6          # different seeds, different images
    with torch.no_grad():
        ref = _reference_edm_generate(net, range(6), 4, 3)
    assert np.abs(ref.astype(int) - ia.astype(int)).max() <= 1   # float rounding at the uint8 cut


def test_sample_cli_stochastic_and_restart_samplers(tmp_path):
    _edm_checkpoint(tmp_path / "edm.pt")
    r = _sample(tmp_path / "edm.pt", tmp_path / "sde.npz", "--seeds", "0-1", "--steps", "4", "--sampler", "edm-sde",
                "--S_churn", "40", "--S_min", "0.05", "--S_max", "50", "--S_noise", "1.003", "--class-idx", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    d = np.load(tmp_path / "sde.npz")
    assert d["class_labels"].tolist() == [2, 2] and int(d["nfe"]) == 7


@pytest.mark.parametrize("args,message", [
    (["--checkpoint", "missing.pt"], "no such checkpoint"),
    (["--cfg", "1"], "no discrete latents"),
    (["--class-idx", "7"], "out of range"),
    (["--seeds", "5-2"], "bad seed range"),
])
def test_sample_cli_bad_inputs_exit_2(tmp_path, args, message):
    _edm_checkpoint(tmp_path / "edm.pt")
    base = {"--checkpoint": str(tmp_path / "edm.pt"), "--out": str(tmp_path / "x.npz"), "--steps": "2"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = str(tmp_path / v) if k == "--checkpoint" else v
    r = subprocess.run([sys.executable, "-m", "bench", "sample", *sum(base.items(), ())], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "x.npz").exists()


def test_corrupt_checkpoint_is_refused_clearly(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = _sample(bad, tmp_path / "x.npz")
    assert r.returncode == 2 and "not a readable DisCo-Bench checkpoint" in r.stderr


def test_conditional_preset_refuses_unlabelled_data(digits):
    with pytest.raises(DatasetError, match="needs labels"):
        dataclasses.replace(digits, labels=None).check(8, 1, conditional=True)
    with pytest.raises(DatasetError, match="8x8"):
        digits.check(32, 1, conditional=True)


def test_group_hierarchical_latents_reach_only_their_resolution():
    p = image_preset("DisCo-Diff (hierarchical)", "smoke")
    ctx = LatentContext(p.model.context).eval()
    m, k = p.model.context.m, p.model.context.k
    w = torch.nn.functional.one_hot(torch.randint(k, (2, m)), k).float()
    tokens = ctx(w)
    assert set(tokens) == {4, 8} and tokens[4].shape == (2, m // 2, p.model.context.width)
    w2 = w.clone()
    w2[:, m // 2:] = torch.roll(w2[:, m // 2:], 1, dims=-1)   # change only the second group
    tokens2 = ctx(w2)
    assert torch.equal(tokens[4], tokens2[4]) and not torch.equal(tokens[8], tokens2[8])
    model = ImageDiffusionModel(p.model).eval()
    x, sigma, y = torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0]), torch.eye(10)[:2]
    with torch.no_grad():   # zero-initialised cross-attention: exactly the latent-free function
        base = model.denoiser.denoiser(x, sigma, class_labels=y)
        assert torch.equal(model.denoiser(x, sigma, w, y), base)
        for mod in model.denoiser.modules():
            if hasattr(mod, "xattn_proj"):
                mod.xattn_proj.weight.normal_(0, 0.1)
        model.denoiser.denoiser.net.out_conv.weight.normal_(0, 0.1)   # EDM zero-inits it too
        assert not torch.equal(model.denoiser(x, sigma, w, y), model.denoiser(x, sigma, w2, y))
    with pytest.raises(ValueError, match="cross-attention only at"):
        from bench.disco.image_denoiser import DisCoADMDenoiser

        DisCoADMDenoiser(p.model.unet, dataclasses.replace(p.model.context, group_resolutions=(2, 8)))


def test_a_latent_group_at_a_resolution_without_attention_heads_is_refused():
    from bench.disco.image_denoiser import DisCoADMDenoiser

    p = image_preset("DisCo-Diff (hierarchical)", "small")
    # 16x16 carries 32 channels: at 64 channels per head (EDM's ADM) it has 0 heads, so no cross-
    # attention, while 8x8 (64 channels) keeps 1 head; the group for 16x16 would change nothing
    unet = dataclasses.replace(p.model.unet, channel_mult=(1, 2, 4), channels_per_head=64)
    with pytest.raises(ValueError, match=r"cross-attention only at \[8\]"):
        DisCoADMDenoiser(unet, p.model.context)
    DisCoADMDenoiser(unet, dataclasses.replace(p.model.context, m=4, group_resolutions=(8,)))   # 8x8 alone is fine


DDP_SCRIPT = """
import dataclasses, sys, torch
from bench.distributed import init_from_env
from bench.images.pipeline import load_preset_dataset, train_stage1
from bench.images.presets import image_preset
shard, device = init_from_env("cpu")
torch.set_num_threads(1)
p = image_preset("DisCo-Diff", "smoke")
p = dataclasses.replace(p, train=dataclasses.replace(p.train, steps=4, batch_size=8, checkpoint_every=2))
s1 = train_stage1(p, load_preset_dataset(p), sys.argv[1], shard=shard, progress=False)
if shard.is_main:
    torch.save(s1.model.state_dict(), sys.argv[2])
"""


def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "c1"), str(tmp_path / "one.pt")],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "c2"), str(tmp_path / "two.pt")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    # Equal up to float rounding: DDP averages the two halves' gradients in another order than one
    # process sums the batch, and Adam's m / sqrt(v) turns that rounding on near-zero gradients into
    # differences of ~2e-5 after 4 steps at lr 1e-3 (EDM's loss, summed over the 64 pixels, makes the
    # gradients large beside Adam's eps, which damped it under the per-pixel mean: atol was 1e-5).
    for k in a:
        assert torch.allclose(a[k], b[k], atol=5e-5, rtol=1e-4), k
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a)


SMOKE_3B = "not held"   # at smoke the latents do not yet lower the high-sigma loss (issue 14 audit)


def test_figure10_harness_through_the_cli(tmp_path):
    """The whole image pipeline at smoke scale: both models, stage 2, loss vs sigma, samples."""
    r = subprocess.run([sys.executable, "-m", "bench", "figure10", "--scale", "smoke", "--out", str(tmp_path / "res"),
                        "--cache", str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    smoke = tmp_path / "res" / "smoke"
    for f in ["figure10.csv", "figure10.md", "figure10.png", "figure10_data.npz",
              "figure10_samples_EDM.png", "figure10_samples_DisCo_Diff.png"]:
        assert (smoke / f).exists(), f
    import csv

    rows = list(csv.DictReader(open(smoke / "figure10.csv")))
    losses = [r for r in rows if r["metric"] == "loss"]
    assert len(losses) == 2 * 16 and all(np.isfinite(float(r["value"])) for r in losses)
    assert {r["nfe"] for r in rows if r["metric"] == "sample_images_per_s"} == {"11"}   # Heun, 6 steps
    # claim 3's numbers: one per group of held-out images (4 x 64 of the 256), whose mean is the curve's
    d = np.load(smoke / "figure10_data.npz")
    for model, key in (("EDM", "loss__EDM"), ("DisCo-Diff", "loss__DisCo-Diff")):
        high = [float(r["value"]) for r in rows if r["metric"] == "loss_high_sigma" and r["method"] == model]
        assert len(high) == 4 and np.mean(high) == pytest.approx(d[key][d["sigmas"] >= 10.0].mean(), rel=1e-9)
    (v,) = [v for v in csv.DictReader(open(smoke / "claims.csv")) if v["claim_id"] == "3b"]
    # pinned at seed 0 (smoke numbers mean nothing; the pin catches an unintended change of the pipeline)
    assert (v["verdict"], v["replicates"]) == (SMOKE_3B, "4 held-out image groups of one training run vs "
                                                         "4 held-out image groups of one training run")
    assert v["interval"].endswith("paired")


def test_figure10_paper_dry_run_prints_parameter_counts():
    r = subprocess.run([sys.executable, "-m", "bench", "figure10", "--scale", "paper", "--dry-run"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "denoiser 295,899,267" in r.stdout and "encoder 85,346,636" in r.stdout and "295.90 M" in r.stdout
    from baselines.edm.preset import ADM_IMAGENET64_PUBLISHED_PARAMS as EDM_ADM_IMAGENET64_PUBLISHED

    # our EDM ADM agrees with EDM's published count to the precision it is given (0.01 M)
    assert abs(295_899_267 - EDM_ADM_IMAGENET64_PUBLISHED) <= 0.005e6


def test_import_edm_through_the_cli_refuses_a_non_pickle(tmp_path):
    bad = tmp_path / "x.pkl"
    bad.write_bytes(b"\x00garbage")
    r = subprocess.run([sys.executable, "-m", "bench", "import-edm", str(bad), "--out", str(tmp_path / "o.pt")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "error:" in r.stderr
    assert not (tmp_path / "o.pt").exists()


def test_unconditional_disco_trains_and_samples(tmp_path, digits):
    """label_dim = 0 (no class input) and an unconditional prior (a learned start token)."""
    p = _short("DisCo-Diff")
    unet = dataclasses.replace(p.model.unet, label_dim=0)
    p = dataclasses.replace(p, model=dataclasses.replace(p.model, unet=unet),
                            prior=dataclasses.replace(p.prior, num_classes=0))
    s1 = train_stage1(p, dataclasses.replace(digits, labels=None, num_classes=0), tmp_path, progress=False)
    s2 = train_prior(p, s1, dataclasses.replace(digits, labels=None, num_classes=0), progress=False)
    from bench.images.sampling import SamplerSpec, generate

    g = generate(s1.ema.denoiser, [0, 1, 2], SamplerSpec("euler", 3), img_shape=(1, 8, 8), prior=s2.prior,
                 latent_shape=(p.prior.m, p.prior.k))
    assert g.images.shape == (3, 1, 8, 8) and g.class_labels is None and g.nfe == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_training_on_cuda(tmp_path, digits):
    p = _short("DisCo-Diff")
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, bf16=True))
    s1 = train_stage1(p, digits, tmp_path, device=torch.device("cuda"), progress=False)
    assert np.isfinite(s1.info["final_loss"])
    assert all(v.dtype == torch.float32 for v in s1.model.state_dict().values() if v.is_floating_point())


def test_harness_under_torchrun_two_processes_rank0_writes(tmp_path):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "bench", "figure10", "--scale", "smoke", "--out", str(tmp_path / "res"),
                        "--cache", str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("figure10: ") == 1          # one writer
    assert (tmp_path / "res" / "smoke" / "figure10.csv").exists()


def test_fine_tuning_from_edm_starts_at_edms_function(tmp_path, digits, monkeypatch):
    """App. D: DisCo-Diff starts from EDM's pre-trained network; its zero-initialised
    cross-attention makes it compute EDM's function before any step, whatever the latent."""
    from bench.images.pipeline import EDM64_CHECKPOINT_ENV

    p = _short("DisCo-Diff", steps=0)
    p = dataclasses.replace(p, init_from_edm=True)
    base_cfg = dataclasses.replace(p.model.unet, xattn_dim=0)
    torch.manual_seed(1)
    edm = EDMPrecond(ADMUNet(base_cfg), 0.5).eval()
    with torch.no_grad():
        edm.net.out_conv.weight.normal_(0, 0.05)
    DenoiserCheckpoint(base_cfg, 0.5, edm.state_dict()).save(tmp_path / "edm.pt")
    with pytest.raises(DatasetError, match=EDM64_CHECKPOINT_ENV):
        train_stage1(p, digits, tmp_path / "a", progress=False)
    monkeypatch.setenv(EDM64_CHECKPOINT_ENV, str(tmp_path / "edm.pt"))
    s1 = train_stage1(p, digits, tmp_path / "b", progress=False)
    x, sigma, y = torch.randn(3, 1, 8, 8), torch.tensor([0.5, 2.0, 20.0]), torch.eye(10)[:3]
    w = torch.nn.functional.one_hot(torch.randint(p.model.context.k, (3, p.model.context.m)), p.model.context.k).float()
    with torch.no_grad():
        assert torch.equal(s1.model.denoiser(x, sigma, w, y), edm(x, sigma, class_labels=y))
