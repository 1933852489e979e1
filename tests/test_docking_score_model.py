"""DiffDock-S score model (bench.docking.score_model): graph helpers, batching, symmetries, heads, size."""
import dataclasses
import math

import numpy as np
import pytest
import torch

sm = pytest.importorskip("bench.docking.score_model")
from bench.docking import so3, torus  # noqa: E402
from bench.docking.noise import t_to_sigma  # noqa: E402

F64 = torch.float64


# ------------------------------------------------------------------------------------- graph helpers

def _brute_radius(x, y, r, k=None, exclude_self=False, offset=(0, 0)):
    """Set of (i, j): j within r of y_i (j != i when exclude_self), k nearest kept."""
    out = set()
    for i in range(len(y)):
        d = [(float((x[j] - y[i]).norm()), j) for j in range(len(x)) if not (exclude_self and i == j)]
        d = sorted(p for p in d if p[0] < r)
        if k is not None:
            d = d[:k]
        out |= {(i + offset[0], j + offset[1]) for _, j in d}
    return out


def _edges(e):
    return set(map(tuple, e.T.tolist()))


@pytest.mark.parametrize("k", [None, 3])
def test_radius_graph_matches_brute_force(k):
    g = torch.Generator().manual_seed(0)
    sizes = [7, 0, 12, 5]
    x = torch.rand(sum(sizes), 3, generator=g, dtype=F64) * 4
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    want, s = set(), 0
    for n in sizes:
        want |= _brute_radius(x[s:s + n], x[s:s + n], 2.0, k, exclude_self=True, offset=(s, s))
        s += n
    e = sm.radius_graph(x, 2.0, k, batch)
    assert e.dtype == torch.long and e.shape[0] == 2
    assert e.shape[1] == len(want) and _edges(e) == want
    assert _edges(sm.radius_graph(x[:7], 2.0, k)) == _brute_radius(x[:7], x[:7], 2.0, k, exclude_self=True)
    if k is None:   # without a cap the graph is symmetric
        assert _edges(e) == {(j, i) for i, j in want}


@pytest.mark.parametrize("k", [None, 2])
def test_radius_matches_brute_force_with_per_graph_cutoff(k):
    g = torch.Generator().manual_seed(1)
    nx, ny = [6, 9, 4], [3, 0, 5]
    x = torch.rand(sum(nx), 3, generator=g, dtype=F64) * 5
    y = torch.rand(sum(ny), 3, generator=g, dtype=F64) * 5
    bx = torch.repeat_interleave(torch.arange(3), torch.tensor(nx))
    by = torch.repeat_interleave(torch.arange(3), torch.tensor(ny))
    r = torch.tensor([1.5, 3.0, 4.0], dtype=F64)
    want, sx, sy = set(), 0, 0
    for b in range(3):
        want |= _brute_radius(x[sx:sx + nx[b]], y[sy:sy + ny[b]], float(r[b]), k, offset=(sy, sx))
        sx, sy = sx + nx[b], sy + ny[b]
    e = sm.radius(x, y, r, k, bx, by)
    assert _edges(e) == want and e.shape[1] == len(want)
    assert _edges(sm.radius(x, y, 2.5)) == _brute_radius(x, y, 2.5)
    assert int(e[0].max()) < len(y) and int(e[1].max()) < len(x)       # [y index, x index]


def test_graph_helpers_reject_unsorted_batch():
    x = torch.rand(4, 3)
    with pytest.raises(ValueError, match="sorted"):
        sm.radius_graph(x, 1.0, None, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="both"):
        sm.radius(x, x, 1.0, None, torch.zeros(4, dtype=torch.long), None)


def test_timestep_embedding_is_diffdock_sinusoidal():
    t = torch.tensor([0.0, 0.25, 1.0], dtype=F64)
    emb = sm.timestep_embedding(t, 32, scale=1000.0)
    assert emb.shape == (3, 32)
    assert torch.all(emb[0, :16] == 0) and torch.all(emb[0, 16:] == 1)
    w = torch.exp(-math.log(10000) / 15 * torch.arange(16, dtype=F64))
    assert torch.allclose(emb[1], torch.cat([torch.sin(250 * w), torch.cos(250 * w)]))
    assert sm.timestep_embedding(t, 7).shape == (3, 7)


# ---------------------------------------------------------------------------------------- complexes

def _synthetic(smiles, n_res, seed, name):
    pytest.importorskip("rdkit")
    from bench.docking.data import synthetic_complex

    return synthetic_complex(smiles, n_res, seed, name, shell=(4, 14))


@pytest.fixture(scope="module")
def complexes():
    """One real offline crystal complex when this machine has one, plus one synthetic complex."""
    pytest.importorskip("rdkit")
    pytest.importorskip("e3nn")
    from bench.docking.data import offline_complexes
    synth = _synthetic("CC(=O)Nc1ccc(OCC(O)CN)cc1", 50, 0, "synthA")
    real = offline_complexes(["1hpv", "1s3v", "5dpv"], warn=False).complexes
    return [real[0] if real else _synthetic("CCOC(=O)c1ccccc1NCCc1ccncc1", 70, 1, "synthB"), synth]


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("e3nn")
    torch.manual_seed(0)
    return sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(), dtype=F64).eval()


@pytest.fixture(scope="module")
def batch(complexes):
    return sm.make_batch(complexes, dtype=F64)


def _run(model, batch, t=0.6):
    with torch.no_grad():
        return model(batch, t)


def _move(batch, fn):
    return dataclasses.replace(batch, lig_pos=fn(batch.lig_pos), rec_pos=fn(batch.rec_pos))


def test_make_batch_layout(complexes, batch):
    n = [c.num_ligand_atoms for c in complexes]
    r = [c.num_residues for c in complexes]
    assert batch.lig_pos.shape == (sum(n), 3) and batch.lig_x.shape == (sum(n), 16)
    assert batch.rec_pos.shape == (sum(r), 3) and batch.rec_x.shape == (sum(r),)
    assert batch.lig_batch.tolist() == [0] * n[0] + [1] * n[1]
    assert batch.rec_batch.tolist() == [0] * r[0] + [1] * r[1]
    nb = [c.ligand.GetNumBonds() for c in complexes]
    assert batch.lig_bond_index.shape == (2, 2 * sum(nb))
    assert torch.all(batch.lig_bond_attr.sum(1) == 1)
    assert torch.equal(batch.lig_batch[batch.lig_bond_index[0]], batch.lig_batch[batch.lig_bond_index[1]])
    assert torch.equal(batch.tor_batch, batch.lig_batch[batch.tor_bonds[:, 1]])   # both ends in one ligand
    assert batch.num_graphs == 2 and batch.names == [c.name for c in complexes]
    assert batch.to(dtype=torch.float32).lig_pos.dtype == torch.float32
    assert batch.to(dtype=torch.float32).lig_x.dtype == torch.long


def test_forward_shapes_and_finite(model, batch):
    out = _run(model, batch)
    m = len(batch.tor_bonds)
    assert m > 0
    assert out.tr.shape == (2, 3) and out.rot.shape == (2, 3) and out.tor.shape == (m,)
    for t in (out.tr, out.rot, out.tor):
        assert t.dtype == F64 and torch.isfinite(t).all()
    assert out.tr.norm(dim=1).min() > 0 and out.tor.abs().max() > 0


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_rotation_equivariance(model, complexes, dtype):
    mdl = model if dtype == F64 else sm.TensorProductScoreModel(model.cfg).eval()
    if dtype != F64:
        mdl.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    b = sm.make_batch(complexes, dtype=dtype)
    out = _run(mdl, b)
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        rot = so3.rotvec_to_matrix(torch.randn(3, generator=g, dtype=F64) * 2).to(dtype)
        shift = torch.randn(3, generator=g, dtype=dtype) * 5
        moved = _run(mdl, _move(b, lambda p: p @ rot.T + shift))
        tol = dict(rtol=1e-9, atol=1e-9) if dtype == F64 else dict(rtol=1e-3, atol=1e-3)
        scale = dict(tr=out.tr.abs().max(), rot=out.rot.abs().max(), tor=out.tor.abs().max())
        torch.testing.assert_close(moved.tr / scale["tr"], out.tr @ rot.T / scale["tr"], **tol)
        torch.testing.assert_close(moved.rot / scale["rot"], out.rot @ rot.T / scale["rot"], **tol)
        torch.testing.assert_close(moved.tor / scale["tor"], out.tor / scale["tor"], **tol)


def test_translation_invariance(model, batch):
    out = _run(model, batch)
    moved = _run(model, _move(batch, lambda p: p + torch.tensor([13.0, -7.0, 2.5], dtype=F64)))
    for a, b in ((out.tr, moved.tr), (out.rot, moved.rot), (out.tor, moved.tor)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_inversion_parity(model, batch):
    """x -> -x: the translation score (1o) flips, the rotation score (1e) does not; DiffDock's own output
    slicing (1o + 1e sums) has no definite parity."""
    out, inv = _run(model, batch), _run(model, _move(batch, lambda p: -p))
    torch.testing.assert_close(inv.tr, -out.tr, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(inv.rot, out.rot, rtol=1e-9, atol=1e-12)
    mixed = sm.TensorProductScoreModel(dataclasses.replace(model.cfg, diffdock_output_slices=True), dtype=F64).eval()
    mixed.load_state_dict(model.state_dict())
    a, b = _run(mixed, batch), _run(mixed, _move(batch, lambda p: -p))
    assert not torch.allclose(b.tr, -a.tr, atol=1e-6) and not torch.allclose(b.rot, a.rot, atol=1e-6)


def test_receptor_permutation_invariance(model, batch):
    g = torch.Generator().manual_seed(4)
    counts = torch.bincount(batch.rec_batch).tolist()
    starts = np.cumsum([0] + counts[:-1]).tolist()
    perm = torch.cat([torch.randperm(n, generator=g) + s for n, s in zip(counts, starts)])   # within complexes
    assert not torch.equal(perm, torch.arange(len(perm)))
    permuted = dataclasses.replace(batch, rec_pos=batch.rec_pos[perm], rec_x=batch.rec_x[perm])
    out, p = _run(model, batch), _run(model, permuted)
    for a, b in ((out.tr, p.tr), (out.rot, p.rot), (out.tor, p.tor)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_batch_equals_single_complexes_with_per_complex_times(model, complexes, batch):
    t = torch.tensor([0.3, 0.8], dtype=F64)
    out = _run(model, batch, t)
    m0 = int((batch.tor_batch == 0).sum())
    for k, c in enumerate(complexes):
        one = _run(model, sm.make_batch([c], dtype=F64), float(t[k]))
        torch.testing.assert_close(out.tr[k], one.tr[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(out.rot[k], one.rot[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(out.tor[:m0] if k == 0 else out.tor[m0:], one.tor, rtol=1e-9, atol=1e-12)


def test_sigma_scaling(model, batch):
    """tr / sigma_tr, rot * so3.score_norm(sigma_rot), tor * sqrt(E[s^2](sigma_tor)) (score_model.py)."""
    raw = sm.TensorProductScoreModel(dataclasses.replace(model.cfg, scale_by_sigma=False), dtype=F64).eval()
    raw.load_state_dict(model.state_dict())
    t = torch.tensor([0.2, 0.9], dtype=F64)
    a, b = _run(model, batch, t), _run(raw, batch, t)
    s_tr, s_rot, s_tor = t_to_sigma(t, t, t, model.cfg.noise)
    torch.testing.assert_close(a.tr, b.tr / s_tr[:, None])
    torch.testing.assert_close(a.rot, b.rot * so3.score_norm(s_rot)[:, None])
    torch.testing.assert_close(a.tor, b.tor * torus.mean_sq_score(s_tor[batch.tor_batch]).sqrt())


def test_dynamic_cross_cutoff(model, complexes):
    """A residue 45 A from the ligand (and > 15 A from every residue) is outside 3 sigma_tr + 20 at t = 0
    (20.3 A) and inside at t = 1 (77 A)."""
    c = complexes[1]
    far = c.ligand_coords.mean(0) + np.array([45.0, 0, 0])
    assert np.linalg.norm(c.ca_coords - far, axis=1).min() > 15
    extra = dataclasses.replace(c, ca_coords=np.vstack([c.ca_coords, far]),
                                residue_types=np.append(c.residue_types, 3))
    b0, b1 = sm.make_batch([c], dtype=F64), sm.make_batch([extra], dtype=F64)
    for t, same in ((0.0, True), (1.0, False)):
        a, b = _run(model, b0, t), _run(model, b1, t)
        assert torch.allclose(a.tr, b.tr, rtol=1e-12, atol=0) is same
    static = sm.TensorProductScoreModel(dataclasses.replace(model.cfg, dynamic_max_cross=False,
                                                            cross_max_distance=30.0), dtype=F64).eval()
    static.load_state_dict(model.state_dict())
    assert torch.equal(_run(static, b0, 1.0).tr, _run(static, b1, 1.0).tr)


def test_rigid_ligand_has_no_torsion_scores(model):
    c = _synthetic("c1ccc2ccccc2c1", 30, 5, "naphthalene")
    out = _run(model, sm.make_batch([c], dtype=F64))
    assert out.tor.shape == (0,) and out.tr.shape == (1, 3)


def test_extra_node_features_hook(complexes):
    torch.manual_seed(0)
    cfg = sm.ScoreModelConfig.tiny(extra_node_dim=2)
    m = sm.TensorProductScoreModel(cfg, dtype=F64).eval()
    b = sm.make_batch(complexes, dtype=F64)
    with pytest.raises(ValueError, match="lig_extra"):
        m(b, 0.5)
    zeros = dataclasses.replace(b, lig_extra=torch.zeros(len(b.lig_pos), 2, dtype=F64),
                                rec_extra=torch.zeros(len(b.rec_pos), 2, dtype=F64))
    lig = torch.zeros(len(b.lig_pos), 2, dtype=F64)
    lig[3, 0] = 1.0                                          # a binary pointer latent on one ligand atom
    pointed = dataclasses.replace(zeros, lig_extra=lig)
    a, p = _run(m, zeros), _run(m, pointed)
    assert not torch.allclose(a.tr[0], p.tr[0]) and torch.allclose(a.tr[1], p.tr[1])   # graph 0 only
    assert m.lig_node_embedding.mix.in_features == cfg.ns + cfg.sigma_embed_dim + 2
    assert m.rec_edge_embedding[0].in_features == cfg.sigma_embed_dim + cfg.distance_embed_dim + 4


def test_node_features_are_what_forward_convolves_to(model, batch):
    """node_features is the last conv layer's output inside forward (ligand atoms, then residues);
    node_scalars its 0e + 0o channels (the confidence model's and the DisCo latents' input)."""
    seen = []
    handle = model.conv_layers[-1].register_forward_hook(lambda mod, inp, out: seen.append(out))
    try:
        _run(model, batch, 0.4)
    finally:
        handle.remove()
    with torch.no_grad():
        h, s = model.node_features(batch, 0.4), model.node_scalars(batch, 0.4)
    assert h.shape == (len(batch.lig_pos) + len(batch.rec_pos), model.conv_layers[-1].out_irreps.dim)
    assert torch.equal(h, seen[0])
    ns = model.cfg.ns
    assert s.shape[1] == sm.scalar_dim(model.cfg) == 2 * ns
    assert torch.equal(s, torch.cat([h[:, :ns], h[:, -ns:]], 1))


def test_backward_train_mode_with_batch_norm(complexes):
    torch.manual_seed(1)
    m = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(batch_norm=True, dropout=0.1)).train()
    b = sm.make_batch(complexes)
    out = m(b, torch.tensor([0.4, 0.7]))
    loss = out.tr.pow(2).sum() + out.rot.pow(2).sum() + out.tor.pow(2).sum()
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    with_grad = sum(p.numel() for p in m.parameters() if p.grad is not None and p.grad.abs().sum() > 0)
    assert with_grad > 0.8 * m.num_parameters()


def test_irrep_sequence_and_heads(model):
    assert sm.irrep_sequence(24, 6) == ["24x0e", "24x0e + 6x1o", "24x0e + 6x1o + 6x1e",
                                        "24x0e + 6x1o + 6x1e + 24x0o"]
    ns, nv = model.cfg.ns, model.cfg.nv
    assert str(model.conv_layers[0].in_irreps) == f"{ns}x0e"
    assert str(model.conv_layers[-1].out_irreps) == f"{ns}x0e+{nv}x1o+{nv}x1e+{ns}x0o"
    assert str(model.final_conv.out_irreps) == "2x1o+2x1e"
    assert str(model.tor_bond_conv.tp.irreps_in2) == "1x1o+1x2o+1x2e+1x3o"   # (0e + 1o) x 2e
    assert all(len(c.fc) == 4 for c in model.conv_layers)


def test_config_validation():
    with pytest.raises(ValueError):
        sm.ScoreModelConfig(ns=0)
    with pytest.raises(ValueError):
        sm.ScoreModelConfig(sh_lmax=0)
    with pytest.raises(ValueError):
        sm.ScoreModelConfig(use_second_order_repr=True, sh_lmax=1)
    with pytest.raises(ValueError):
        sm.ScoreModelConfig(dropout=1.0)


def test_paper_preset_parameter_count(capsys):
    pytest.importorskip("e3nn")
    cfg = sm.ScoreModelConfig.small()
    assert (cfg.ns, cfg.nv, cfg.num_conv_layers, cfg.sh_lmax) == (24, 6, 5, 1)
    assert (cfg.sigma_embed_dim, cfg.distance_embed_dim, cfg.embedding_scale) == (32, 32, 1000.0)
    assert (cfg.lig_max_radius, cfg.rec_radius, cfg.rec_max_neighbors, cfg.cross_max_distance) == (5, 15, 24, 80)
    assert cfg.dynamic_max_cross and cfg.batch_norm and cfg.dropout == 0.1
    assert cfg.noise.tor_sigma_min == 0.03 and cfg.noise.tr_sigma_max == 19.0
    n = sm.TensorProductScoreModel(cfg).num_parameters()
    with capsys.disabled():
        print(f"\nDiffDock-S score model (paper preset): {n:,} parameters")
    assert 3e5 < n < 5e6
    assert n == 2_075_436   # regression: changes only if the architecture does
