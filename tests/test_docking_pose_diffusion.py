"""DiffDock pose diffusion (bench.docking.pose_diffusion): noising targets, loss, fit, reverse sampling."""
import dataclasses
import math

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("e3nn")
pd = pytest.importorskip("bench.docking.pose_diffusion")
from bench.docking import so3, torus  # noqa: E402
from bench.docking.data import etkdg_conformer, synthetic_complex  # noqa: E402
from bench.docking.noise import PoseNoiseConfig  # noqa: E402
from bench.docking.score_model import ScoreModelConfig, TensorProductScoreModel  # noqa: E402
from bench.docking.torsion import torsion_angles, torsion_quadruplets  # noqa: E402
from bench.distributed import Shard  # noqa: E402
from bench.train import TrainConfig, fit  # noqa: E402

F64 = torch.float64
# so3.sample_angle clamps eps to its table (>= 5e-4, as DiffDock MIN_EPS), so the rotation floor is 6e-4 here
TINY_SIGMA = PoseNoiseConfig(tr_sigma_min=1e-5, rot_sigma_min=6e-4, tor_sigma_min=1e-5)


def _synthetic(smiles, n_res, seed, name):
    """Residues 4-12 A around a point 20 A off the ligand on every axis: the protein centre is not the ligand's."""
    return synthetic_complex(smiles, n_res, seed, name, shell=(4, 12), offset=20.0)


@pytest.fixture(scope="module")
def cx():
    return _synthetic("CC(=O)Nc1ccc(OCC(O)CN)cc1", 24, 0, "synthA")   # 16 heavy atoms, 6 torsions


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TensorProductScoreModel(ScoreModelConfig.tiny(num_conv_layers=2), dtype=F64).eval()


def _bond_lengths(pos, mol):
    pos = torch.as_tensor(np.asarray(pos), dtype=F64)
    ij = torch.tensor([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()])
    return (pos[ij[:, 0]] - pos[ij[:, 1]]).norm(dim=-1)


# ------------------------------------------------------------------------------------------ noising

def test_noised_targets_match_formulas(cx):
    cfg = PoseNoiseConfig()
    t = torch.tensor([0.05, 0.5, 0.95], dtype=F64)
    nb = pd.noise_complex([cx, cx, cx], t, [torch.Generator().manual_seed(s) for s in range(3)], cfg)
    tr_s, rot_s, tor_s = (cfg.tr_sigma_min ** (1 - t) * cfg.tr_sigma_max ** t,
                          cfg.rot_sigma_min ** (1 - t) * cfg.rot_sigma_max ** t,
                          cfg.tor_sigma_min ** (1 - t) * cfg.tor_sigma_max ** t)
    torch.testing.assert_close(nb.tr_sigma, tr_s)
    torch.testing.assert_close(nb.tr_score, -nb.tr_update / tr_s[:, None] ** 2)
    torch.testing.assert_close(nb.rot_score, so3.score_vec(nb.rot_update, nb.rot_sigma))
    m = len(nb.batch.tor_bonds) // 3
    assert m == 6 and nb.tor_update.shape == (3 * m,)
    torch.testing.assert_close(nb.tor_sigma, tor_s.repeat_interleave(m))
    torch.testing.assert_close(nb.tor_score, torus.score(nb.tor_update, nb.tor_sigma))
    torch.testing.assert_close(nb.rot_score_norm, so3.score_norm(rot_s))
    torch.testing.assert_close(nb.tor_score_norm2, torus.mean_sq_score(nb.tor_sigma))
    # the translation update is the centroid shift (torsions are Kabsch-aligned onto the rigid move)
    crystal = torch.as_tensor(cx.ligand_coords, dtype=F64) - nb.centre[0]
    n = cx.num_ligand_atoms
    for b in range(3):
        shift = nb.batch.lig_pos[b * n:(b + 1) * n].mean(0) - crystal.mean(0)
        torch.testing.assert_close(shift, nb.tr_update[b], atol=1e-5, rtol=0)
        torch.testing.assert_close(nb.tr_score[b], -shift / tr_s[b] ** 2, atol=1e-5 / tr_s[b] ** 2, rtol=1e-6)
    # per-complex generators: a complex's noise does not depend on the rest of the batch
    alone = pd.noise_complex(cx, t[1:2], torch.Generator().manual_seed(1), cfg)
    torch.testing.assert_close(alone.batch.lig_pos, nb.batch.lig_pos[n:2 * n])
    torch.testing.assert_close(alone.tor_update, nb.tor_update[m:2 * m])


def test_translation_score_is_the_gradient_of_its_gaussian_density(cx):
    """tr_score = grad_u log N(u; 0, sigma_tr^2 I_3) at the drawn update, by central differences of scipy's
    log-density (the rotation and torsion scores have their own finite-difference tests in test_docking_math)."""
    from scipy.stats import multivariate_normal
    cfg = PoseNoiseConfig()
    t = torch.tensor([0.05, 0.5, 0.95], dtype=F64)
    nb = pd.noise_complex([cx] * 3, t, [torch.Generator().manual_seed(10 + s) for s in range(3)], cfg)
    for b in range(3):
        sigma, u = float(nb.tr_sigma[b]), nb.tr_update[b].numpy()
        logp = multivariate_normal(mean=np.zeros(3), cov=sigma ** 2 * np.eye(3)).logpdf
        h = 1e-3 * sigma
        grad = np.array([(logp(u + h * e) - logp(u - h * e)) / (2 * h) for e in np.eye(3)])
        np.testing.assert_allclose(nb.tr_score[b].numpy(), grad, rtol=1e-6, atol=1e-9 / sigma ** 2)


def test_small_sigma_rotation_and_torsion_are_recovered_from_pose(cx):
    """Rotation only (tiny tr/tor sigma): the Kabsch rotation crystal -> noisy is exp(rot_update). Torsion only
    (tiny rigid sigma), one rotatable bond: its dihedral changes by -update (torsion.py's convention)."""
    rot_only = dataclasses.replace(TINY_SIGMA, rot_sigma_min=0.3, rot_sigma_max=0.31)
    nb = pd.noise_complex(cx, 0.0, torch.Generator().manual_seed(3), rot_only)
    crystal = torch.as_tensor(cx.ligand_coords, dtype=F64) - nb.centre[0]
    a, b = crystal - crystal.mean(0), nb.batch.lig_pos - nb.batch.lig_pos.mean(0)
    u, _, vt = torch.linalg.svd(a.T @ b)
    d = torch.sign(torch.linalg.det(vt.T @ u.T))
    rot = vt.T @ torch.diag(torch.stack([torch.ones_like(d), torch.ones_like(d), d])) @ u.T
    torch.testing.assert_close(so3.matrix_to_rotvec(rot), nb.rot_update[0], atol=1e-4, rtol=0)

    one = _synthetic("CC(=O)c1ccccc1", 12, 2, "acetophenone")               # one rotatable bond
    tor_only = dataclasses.replace(TINY_SIGMA, tor_sigma_min=0.4, tor_sigma_max=0.41)
    nb = pd.noise_complex(one, 0.0, torch.Generator().manual_seed(4), tor_only)
    assert nb.tor_update.shape == (1,) and abs(float(nb.tor_update[0])) > 1e-3
    quad = torsion_quadruplets(np.asarray([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in one.ligand.GetBonds()]),
                               nb.batch.tor_bonds.numpy())
    before = torsion_angles(torch.as_tensor(one.ligand_coords, dtype=F64), quad)
    after = torsion_angles(nb.batch.lig_pos, quad)
    torch.testing.assert_close(torus.wrap(after - before), torus.wrap(-nb.tor_update), atol=1e-4, rtol=0)


def test_noise_at_t0_is_tiny_and_keeps_bond_lengths(cx):
    crystal = torch.as_tensor(cx.ligand_coords, dtype=F64)
    nb = pd.noise_complex(cx, 0.0, torch.Generator().manual_seed(0), TINY_SIGMA)
    assert (nb.batch.lig_pos + nb.centre[0] - crystal).norm(dim=-1).max() < 1e-2   # ~6e-4 rad x 6 A
    nb = pd.noise_complex(cx, 1.0, torch.Generator().manual_seed(0), PoseNoiseConfig())
    moved = nb.batch.lig_pos + nb.centre[0]
    assert (moved - crystal).norm(dim=-1).mean() > 1.0
    torch.testing.assert_close(_bond_lengths(moved, cx.ligand), _bond_lengths(crystal, cx.ligand), atol=1e-5, rtol=0)
    # no_torsion: rigid noise only, internal distances all preserved
    nb = pd.noise_complex(cx, 1.0, torch.Generator().manual_seed(0), PoseNoiseConfig(), no_torsion=True)
    assert nb.tor_update.numel() == 0 and nb.tor_score.numel() == 0
    torch.testing.assert_close(torch.cdist(nb.batch.lig_pos, nb.batch.lig_pos), torch.cdist(crystal, crystal),
                               atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------- loss / fit

def test_loss_formula_and_base(cx, model):
    nb = pd.noise_complex([cx, cx], torch.tensor([0.3, 0.8]), torch.Generator().manual_seed(5), model.cfg.noise)
    parts = pd.score_matching_loss(model, nb)
    assert torch.isfinite(parts.loss) and parts.loss.ndim == 0
    with torch.no_grad():
        out = model(nb.batch, nb.t)
    tr = ((out.tr - nb.tr_score) ** 2 * nb.tr_sigma[:, None] ** 2).mean()
    rot = (((out.rot - nb.rot_score) / nb.rot_score_norm[:, None]) ** 2).mean()
    tor = ((out.tor - nb.tor_score) ** 2 / nb.tor_score_norm2).mean()
    torch.testing.assert_close(parts.loss.detach(), 0.33 * (tr + rot + tor))
    torch.testing.assert_close(parts.tr_base, (nb.tr_score ** 2 * nb.tr_sigma[:, None] ** 2).mean())
    rigid = pd.noise_complex([cx, cx], torch.tensor([0.3, 0.8]), torch.Generator().manual_seed(5), model.cfg.noise,
                             no_torsion=True)
    assert float(pd.score_matching_loss(model, rigid).tor) == 0.0
    parts.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad(set_to_none=True)


def test_sample_t_beta():
    g = torch.Generator().manual_seed(0)
    t = pd.sample_t(20000, 2.0, 1.0, g)
    assert 0 <= t.min() and t.max() <= 1 and abs(t.mean().item() - 2 / 3) < 0.01   # Beta(2, 1) mean
    assert abs(pd.sample_t(20000, 1.0, 1.0, g).mean().item() - 0.5) < 0.01
    with pytest.raises(ValueError):
        pd.DockingTrainConfig(t_alpha=2.0, t_beta=2.0)


def test_fit_decreases_loss_on_one_complex(cx, tmp_path):
    """bench.train.fit on a fixed noised batch of one complex: the loss is finite and falls (gradients reach
    all three heads through the weighting)."""
    torch.manual_seed(1)
    m = TensorProductScoreModel(ScoreModelConfig.tiny(num_conv_layers=2), dtype=F64)
    nb = pd.noise_complex([cx] * 4, torch.linspace(0.2, 0.8, 4), torch.Generator().manual_seed(7), m.cfg.noise)
    losses = []

    def loss_fn(model, generator, shard):
        loss = pd.score_matching_loss(model, nb).loss
        losses.append(float(loss.detach()))
        return loss

    res = fit(m, loss_fn, TrainConfig(steps=30, batch_size=4, lr=1e-2, log_every=10), tmp_path / "fixed",
              {"test": "fixed"}, progress=False)
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses) and math.isfinite(res["final_loss"])
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def test_train_score_model_draws_and_caches(cx, tmp_path):
    torch.manual_seed(2)
    m = TensorProductScoreModel(ScoreModelConfig.tiny(num_conv_layers=2), dtype=F64)
    w0 = [p.detach().clone() for p in m.parameters()]
    cfg = pd.DockingTrainConfig(train=TrainConfig(steps=3, batch_size=2, lr=1e-3, log_every=1))
    # the loss function is a function of the generator state; two shards of a global batch of 2 identical
    # complexes average to the one-process loss (the DDP contract of bench.train)
    fn = pd.docking_loss_fn([cx], cfg)
    m.eval()
    with torch.no_grad():
        whole = fn(m, torch.Generator().manual_seed(3), Shard())
        again = fn(m, torch.Generator().manual_seed(3), Shard())
        halves = [fn(m, torch.Generator().manual_seed(3), Shard(r, 2)) for r in range(2)]
    torch.testing.assert_close(whole, again)
    torch.testing.assert_close(whole, (halves[0] + halves[1]) / 2)
    res = pd.train_score_model(m, [cx], cfg, tmp_path / "run")
    assert math.isfinite(res["final_loss"]) and not res["cached"] and not m.training
    assert any(not torch.equal(a, b) for a, b in zip(w0, m.parameters()))
    assert pd.train_score_model(m, [cx], cfg, tmp_path / "run")["cached"]     # fit's cache: loaded


# ----------------------------------------------------------------------------------------- sampling

def test_sampling_nfe_seeds_and_rigidity(cx, model):
    conf = etkdg_conformer(cx.ligand, seed=0).GetConformer().GetPositions()
    kw = dict(steps=20, actual_steps=18, conformer=conf)
    a = pd.sample_poses(model, cx, seeds=[11, 12, 13], batch_size=3, **kw)
    assert a.nfe == 18 and a.model_calls == 18
    assert a.poses.shape == (3, cx.num_ligand_atoms, 3) and torch.isfinite(a.poses).all()
    b = pd.sample_poses(model, cx, n_samples=2, seeds=[99, 12], batch_size=2, **kw)
    c = pd.sample_poses(model, cx, seeds=[12], **kw)
    torch.testing.assert_close(b.poses[1], a.poses[1], atol=1e-8, rtol=0)
    torch.testing.assert_close(c.poses[0], a.poses[1], atol=1e-8, rtol=0)
    assert (a.poses[0] - a.poses[2]).abs().max() > 1e-3
    d = pd.sample_poses(model, cx, seeds=[1, 2, 3], batch_size=2, steps=6, actual_steps=None, conformer=conf)
    assert d.nfe == 6 and d.model_calls == 12
    # rigid + torsion moves only: bond lengths, and all distances inside each fragment left when the rotatable
    # bonds are cut, are the conformer's
    ref = _bond_lengths(conf, cx.ligand)
    from bench.docking.data import rotatable_bonds
    from bench.docking.torsion import _components
    rot = {tuple(sorted(b)) for b in rotatable_bonds(cx.ligand).tolist()}
    kept = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in cx.ligand.GetBonds()
            if tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) not in rot]
    frag = torch.as_tensor(_components(np.asarray(kept), cx.num_ligand_atoms))
    same = frag[:, None] == frag[None, :]
    conf_d = torch.cdist(torch.as_tensor(conf), torch.as_tensor(conf))
    for p in torch.cat([a.poses, d.poses]):
        torch.testing.assert_close(_bond_lengths(p, cx.ligand), ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.cdist(p, p)[same], conf_d[same], atol=1e-6, rtol=0)
    # the ODE path draws no noise after the start: same seed, same pose
    e1 = pd.sample_poses(model, cx, seeds=[5], steps=4, actual_steps=None, ode=True, conformer=conf)
    e2 = pd.sample_poses(model, cx, seeds=[5], steps=4, actual_steps=None, ode=True, conformer=conf)
    torch.testing.assert_close(e1.poses, e2.poses)
    with pytest.raises(ValueError):
        pd.sample_poses(model, cx, n_samples=3, seeds=[1, 2], conformer=conf)
    assert not model.training
