"""Training loop: exact resume, cache reuse, clear errors on mismatched or corrupt checkpoints."""
import pytest
import torch

from bench.train import CheckpointMismatch, TrainConfig, fit, run_dir_for


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
    x = torch.randn(256, 2)
    y = x[:, :1] * 2 - x[:, 1:]

    def loss_fn(m, gen, shard):
        idx = torch.randint(len(x), (32,), generator=gen)
        noise = 0.1 * torch.randn(32, 1, generator=gen)
        return ((m(x[idx]) - y[idx] - noise) ** 2).mean()
    return model, loss_fn


CFG = TrainConfig(steps=60, batch_size=32, lr=1e-2, seed=3, checkpoint_every=20, log_every=10)


def test_killed_and_resumed_equals_uninterrupted(tmp_path):
    m1, loss1 = _setup()
    fit(m1, loss1, CFG, tmp_path / "a", {"net": "toy"}, progress=False)
    m2, loss2 = _setup()
    info = fit(m2, loss2, CFG, tmp_path / "b", {"net": "toy"}, progress=False, stop_after=25)
    assert info["stopped_at"] == 25 and (tmp_path / "b" / "checkpoint.pt").exists()
    m3, loss3 = _setup()  # a fresh process would rebuild the model from scratch
    info = fit(m3, loss3, CFG, tmp_path / "b", {"net": "toy"}, progress=False)
    assert info["resumed_from"] == 25
    for p, q in zip(m1.state_dict().values(), m3.state_dict().values()):
        assert torch.equal(p, q)
    assert not (tmp_path / "b" / "checkpoint.pt").exists()


def test_finished_run_is_reused_not_retrained(tmp_path):
    m1, loss1 = _setup()
    fit(m1, loss1, CFG, tmp_path, {"net": "toy"}, progress=False)
    m2, _ = _setup()
    info = fit(m2, lambda m, g, s: pytest.fail("retrained"), CFG, tmp_path, {"net": "toy"}, progress=False)
    assert info["cached"]
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_mismatched_config_is_refused(tmp_path):
    m, loss = _setup()
    fit(m, loss, CFG, tmp_path, {"net": "toy"}, progress=False)
    with pytest.raises(CheckpointMismatch, match="differs"):
        fit(m, loss, CFG, tmp_path, {"net": "other"}, progress=False)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    m, loss = _setup()
    fit(m, loss, CFG, tmp_path, {"net": "toy"}, progress=False)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="not a readable"):
        fit(m, loss, CFG, tmp_path, {"net": "toy"}, progress=False)


def test_run_dir_depends_on_config(tmp_path):
    a = run_dir_for(tmp_path, "x", {"w": 1}, CFG)
    assert a == run_dir_for(tmp_path, "x", {"w": 1}, CFG)
    assert a != run_dir_for(tmp_path, "x", {"w": 2}, CFG)


from bench.train import ema_beta, lr_at  # noqa: E402


def test_lr_rampup_and_ema_beta_follow_edm():
    cfg = TrainConfig(lr=2e-4, batch_size=8, lr_rampup_kimg=1.0, ema_halflife_kimg=0.5, ema_rampup_ratio=0.05)
    assert lr_at(cfg, 0) == 0 and lr_at(cfg, 500) == pytest.approx(1e-4) and lr_at(cfg, 5000) == 2e-4
    assert ema_beta(cfg, 0) == 0                                     # EMA starts as a copy of the net
    assert ema_beta(cfg, 1000) == pytest.approx(0.5 ** (8 / 50))     # ramp-up: h = 0.05 * 1000
    assert ema_beta(cfg, 10**7) == pytest.approx(0.5 ** (8 / 500))   # h capped at 500 images
    assert lr_at(TrainConfig(lr=1e-3), 0) == 1e-3                    # ramp-up off


def test_ema_resume_is_exact_and_required(tmp_path):
    import copy
    cfg = TrainConfig(steps=40, batch_size=32, lr=1e-2, seed=3, checkpoint_every=10, log_every=10,
                      lr_rampup_kimg=0.3, ema_halflife_kimg=0.2)
    m1, loss1 = _setup()
    e1 = copy.deepcopy(m1)
    fit(m1, loss1, cfg, tmp_path / "a", {"net": "toy"}, progress=False, ema=e1)
    m2, loss2 = _setup()
    e2 = copy.deepcopy(m2)
    fit(m2, loss2, cfg, tmp_path / "b", {"net": "toy"}, progress=False, stop_after=15, ema=e2)
    m3, loss3 = _setup()
    e3 = copy.deepcopy(m3)
    fit(m3, loss3, cfg, tmp_path / "b", {"net": "toy"}, progress=False, ema=e3)
    for a, b in zip(list(e1.state_dict().values()) + list(m1.state_dict().values()),
                    list(e3.state_dict().values()) + list(m3.state_dict().values())):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(e1.state_dict().values(), m1.state_dict().values()))
    with pytest.raises(ValueError, match="ema"):
        fit(m1, loss1, cfg, tmp_path / "c", {"net": "toy"}, progress=False)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    m, loss = _setup()
    fit(m, loss, CFG, tmp_path, {"net": "toy"}, progress=False)
    other = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.SiLU(), torch.nn.Linear(8, 1))
    with pytest.raises(CheckpointMismatch, match="do not fit"):
        fit(other, loss, CFG, tmp_path, {"net": "toy"}, progress=False)
