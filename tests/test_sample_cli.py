"""`python -m bench sample`: no sampler flag is silently ignored. A flag the chosen sampler (or
checkpoint) would not use exits 2 with one clear line on stderr; a flag that is accepted changes
the images. --threads sets torch's intra-op threads."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.diffusion.preconditioning import EDMPrecond
from bench.diffusion.samplers import RestartConfig, Stochasticity
from bench.images.checkpoints import DenoiserCheckpoint
from bench.images.sample import main as sample_main
from bench.images.sampling import SamplerSpec, generate
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig

ROOT = Path(__file__).resolve().parents[1]


def _checkpoint(path, label_dim=3):
    """A small EDM-layout denoiser whose output depends on the net (non-zero output layer)."""
    cfg = ADMUNetConfig(img_resolution=8, in_channels=1, out_channels=1, label_dim=label_dim, model_channels=16,
                        channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,), channels_per_head=8, dropout=0.0)
    torch.manual_seed(0)
    net = EDMPrecond(ADMUNet(cfg), 0.5)
    with torch.no_grad():
        net.net.out_conv.weight.normal_(0, 0.05)
    DenoiserCheckpoint(cfg, 0.5, net.state_dict(), source="test").save(path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "edm.pt")


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run(ckpt, out, *flags):
    """The CLI in this process: (exit code, images or None)."""
    code = sample_main(["--checkpoint", str(ckpt), "--out", str(out), "--seeds", "0-1", *flags])
    return code, (np.load(out)["images"] if code == 0 else None)


def test_ignored_flag_is_refused_through_the_cli_in_a_subprocess(ckpt, tmp_path):
    out = tmp_path / "x.npz"
    r = subprocess.run([sys.executable, "-m", "bench", "sample", "--checkpoint", str(ckpt), "--out", str(out),
                        "--steps", "2", "--S_churn", "40"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --S_churn") and "--sampler edm-sde" in lines[0]
    assert not out.exists()
    # the same flags with the sampler that uses them run
    r = subprocess.run([sys.executable, "-m", "bench", "sample", "--checkpoint", str(ckpt), "--out", str(out),
                        "--steps", "2", "--S_churn", "40", "--sampler", "edm-sde", "--threads", "1"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.exists() and "NFE 3" in r.stdout


@pytest.mark.parametrize("flags,message", [
    (["--S_churn", "40"], "--sampler edm-sde"),
    (["--sampler", "euler", "--S_churn", "40"], "--sampler edm-sde"),
    (["--S_noise", "1.003"], "--sampler edm-sde (with --S_churn > 0) or --sampler restart"),
    (["--S_min", "0.05", "--S_max", "50"], "--S_min, --S_max act only with"),
    (["--sampler", "edm-sde"], "needs --S_churn > 0"),
    (["--sampler", "edm-sde", "--S_churn", "0", "--S_noise", "1.003"], "needs --S_churn > 0"),
    (["--sampler", "edm-sde", "--S_churn", "40", "--S_min", "5", "--S_max", "1"], "--S_min <= --S_max"),
    (["--sampler", "restart", "--S_churn", "10"], "--S_churn is not a Restart setting"),
    (["--sampler", "restart", "--steps", "18"], "main grid is 36 steps"),
    (["--sampler", "restart", "--restart-nfe", "39", "--steps", "36"], "main grid is 14 steps"),
    (["--sampler", "restart", "--S_min", "2", "--S_max", "1"], "bad Restart noise settings"),
    (["--restart-nfe", "203"], "needs --sampler restart"),
    (["--sampler", "edm-sde", "--S_churn", "40", "--restart-nfe", "203"], "needs --sampler restart"),
    (["--temperature", "0.5"], "no discrete latents"),
    (["--cfg", "1"], "no discrete latents"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_flags_the_sampler_would_ignore_exit_2_with_one_line(ckpt, tmp_path, capsys, keep_threads, flags, message):
    code, _ = _run(ckpt, tmp_path / "x.npz", *flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "x.npz").exists()


def test_class_idx_on_an_unconditional_network_is_refused(tmp_path, capsys):
    c = _checkpoint(tmp_path / "uncond.pt", label_dim=0)
    code, _ = _run(c, tmp_path / "x.npz", "--steps", "2", "--class-idx", "0")
    assert code == 2 and "unconditional" in capsys.readouterr().err


def test_churn_flags_take_effect_with_edm_sde(ckpt, tmp_path, keep_threads):
    steps = ["--steps", "4", "--threads", "1"]
    _, det = _run(ckpt, tmp_path / "heun.npz", *steps)
    code, sde = _run(ckpt, tmp_path / "sde.npz", *steps, "--sampler", "edm-sde", "--S_churn", "40")
    assert code == 0 and not np.array_equal(sde, det)
    _, sde_noise = _run(ckpt, tmp_path / "sde2.npz", *steps, "--sampler", "edm-sde", "--S_churn", "40",
                        "--S_noise", "1.2")
    assert not np.array_equal(sde_noise, sde)
    # a churn window [S_min, S_max] that holds no grid level: gamma = 0 at every step = Heun
    _, outside = _run(ckpt, tmp_path / "sde3.npz", *steps, "--sampler", "edm-sde", "--S_churn", "40",
                      "--S_min", "100", "--S_max", "200")
    assert np.array_equal(outside, det)
    _, inside = _run(ckpt, tmp_path / "sde4.npz", *steps, "--sampler", "edm-sde", "--S_churn", "40",
                     "--S_min", "0.05", "--S_max", "50")
    assert not np.array_equal(inside, det)


def test_restart_flags_take_effect(ckpt, tmp_path, keep_threads):
    base = ["--sampler", "restart", "--restart-nfe", "39", "--threads", "1"]
    code, ref = _run(ckpt, tmp_path / "r.npz", *base)
    assert code == 0 and int(np.load(tmp_path / "r.npz")["nfe"]) == 39
    code, same = _run(ckpt, tmp_path / "r36.npz", *base, "--steps", "14")   # the setting's own grid: accepted
    assert code == 0 and np.array_equal(same, ref)
    _, noise = _run(ckpt, tmp_path / "rn.npz", *base, "--S_noise", "1.0")
    assert not np.array_equal(noise, ref)
    # a churn window holding none of the restart grids' levels: no restart_gamma churn
    _, window = _run(ckpt, tmp_path / "rw.npz", *base, "--S_min", "5", "--S_max", "10")
    assert not np.array_equal(window, ref)
    _, explicit = _run(ckpt, tmp_path / "rs.npz", *base, "--S_noise", "1.003", "--S_min", "0.01", "--S_max", "1")
    assert np.array_equal(explicit, ref)   # the setting's own values, given explicitly


def test_threads_flag_sets_torch_threads(ckpt, tmp_path, keep_threads):
    torch.set_num_threads(2)
    code, _ = _run(ckpt, tmp_path / "t.npz", "--steps", "2", "--threads", "1")
    assert code == 0 and torch.get_num_threads() == 1


def test_sampler_spec_refuses_settings_it_would_ignore():
    from baselines.edm.sampler import RESTART_IMAGENET64

    r = RESTART_IMAGENET64[203]
    assert SamplerSpec().steps == 18 and SamplerSpec("restart", restart=r).steps == 36
    assert SamplerSpec("restart", 36, restart=r).num_steps == 36
    with pytest.raises(ValueError, match="36 steps"):
        SamplerSpec("restart", 18, restart=r)
    with pytest.raises(ValueError, match="edm-sde"):
        SamplerSpec("heun", 18, churn=Stochasticity(S_churn=40))
    with pytest.raises(ValueError, match="RestartConfig"):
        SamplerSpec("restart", churn=Stochasticity(S_noise=1.003), restart=r)
    with pytest.raises(ValueError, match="S_churn > 0"):
        SamplerSpec("edm-sde", 18)
    with pytest.raises(ValueError, match="discrete latents"):
        generate(lambda x, s, **c: x, [0], SamplerSpec("heun", 2, temperature=0.5), img_shape=(1, 2, 2))
    assert isinstance(r, RestartConfig)


def test_fp16_and_the_network_sigma_range_are_the_checkpoints_unless_overridden(tmp_path):
    path = _checkpoint(tmp_path / "fp16.pt")
    ck = DenoiserCheckpoint.load(path)
    ck.use_fp16, ck.sigma_min, ck.sigma_max = True, 0.002, 1.0    # as an imported EDM pickle might say
    ck.save(path)
    code, narrow = _run(path, tmp_path / "a.npz", "--steps", "3")   # fp16 is a CUDA matter: on CPU fp32, as EDM
    assert code == 0
    code, wide = _run(path, tmp_path / "b.npz", "--steps", "3", "--net-sigma-range", "0", "inf")
    assert code == 0 and not np.array_equal(narrow, wide)          # the clamp to [0.002, 1] acted; off here
    code, _ = _run(path, tmp_path / "c.npz", "--steps", "3", "--fp16")
    assert code == 2 and not (tmp_path / "c.npz").exists()          # fp16 on the CPU would be ignored: refused
    code, same = _run(path, tmp_path / "d.npz", "--steps", "3", "--no-fp16")
    assert code == 0 and np.array_equal(same, narrow)
    code, _ = _run(path, tmp_path / "e.npz", "--net-sigma-range", "2", "1")
    assert code == 2
