"""DisCo-DiffDock pointer latents (bench.docking.disco_latents): ragged softmax, Gumbel, pointer features,
dropout, encoder / prior permutation equivariance, prior normalisation, temperature, freezing."""
import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("e3nn")
pytest.importorskip("rdkit")
dl = pytest.importorskip("bench.docking.disco_latents")
from bench.docking import score_model as sm  # noqa: E402

F64 = torch.float64


# ------------------------------------------------------------------------------------ ragged helpers

def _ragged(seed=0, sizes=(3, 7, 1, 5), cols=2, shuffle=True):
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    if shuffle:
        batch = batch[torch.randperm(len(batch), generator=g)]
    return torch.randn(len(batch), cols, generator=g, dtype=F64) * 3, batch


def test_node_softmax_sums_to_one_and_matches_loop():
    logits, batch = _ragged()
    for tau in (1.0, 0.3):
        p = dl.node_softmax(logits, batch, tau)
        sums = torch.zeros(4, 2, dtype=F64).index_add_(0, batch, p)
        torch.testing.assert_close(sums, torch.ones(4, 2, dtype=F64))
        for b in range(4):
            m = batch == b
            torch.testing.assert_close(p[m], torch.softmax(logits[m] / tau, 0))
    # 1-D logits, huge values (stable), an empty complex via num_graphs
    p1 = dl.node_softmax(logits[:, 0] * 1e3, batch, num_graphs=5)
    assert torch.isfinite(p1).all()
    torch.testing.assert_close(torch.zeros(4, dtype=F64).index_add_(0, batch, p1), torch.ones(4, dtype=F64))


def test_node_argmax_and_local_index():
    logits, batch = _ragged(1)
    am = dl.node_argmax(logits, batch)
    loc = dl.local_index(batch)
    for b in range(4):
        idx = torch.nonzero(batch == b).squeeze(1)
        assert torch.equal(am[b], idx[logits[idx].argmax(0)])
        assert loc[idx].tolist() == list(range(len(idx)))


def test_gumbel_small_tau_is_one_hot_at_argmax_of_perturbed_logits():
    logits, batch = _ragged(2)
    w = dl.node_gumbel_softmax(logits, batch, tau=1e-4, generator=torch.Generator().manual_seed(5))
    g = dl.gumbel_noise(logits.shape, torch.Generator().manual_seed(5)).to(F64)
    am = dl.node_argmax(logits + g, batch)
    pos = torch.arange(len(logits))[:, None]
    want = (pos == am[batch]).to(F64)
    torch.testing.assert_close(w, want, atol=1e-6, rtol=0)
    # soft at tau = 1: per-complex sums 1; hard: exact one-hot, gradient flows
    lg = logits.clone().requires_grad_(True)
    h = dl.node_gumbel_softmax(lg, batch, 1.0, torch.Generator().manual_seed(5), hard=True)
    assert torch.equal(h.detach(), want)
    (h * torch.randn_like(h)).sum().backward()
    assert lg.grad.abs().sum() > 0


# ------------------------------------------------------------------------------- pointers and dropout

def test_pointer_features_binary_and_orders():
    counts = torch.tensor([3, 5, 2])
    z = torch.tensor([[0, 2], [4, 4], [1, 0]])
    f = dl.pointer_features(z, counts)
    assert f.shape == (10, 2) and set(f.unique().tolist()) <= {0.0, 1.0}
    assert f.sum(0).tolist() == [3.0, 3.0]
    assert torch.nonzero(f[:, 0]).squeeze(1).tolist() == [0, 7, 9]
    assert torch.nonzero(f[:, 1]).squeeze(1).tolist() == [2, 7, 8]
    # non-contiguous order (ligand block, then receptor block), local index = rank within complex
    nb = torch.tensor([0, 0, 1, 1, 2, 0, 1, 1, 1, 2])
    f2 = dl.pointer_features(z, counts, nb)
    assert torch.nonzero(f2[:, 0]).squeeze(1).tolist() == [0, 8, 9]
    with pytest.raises(ValueError):
        dl.pointer_features(torch.tensor([[3, 0], [0, 0], [0, 0]]), counts)


def test_drop_pointers_null_path_frequency():
    B, p = 4000, 0.1
    counts = torch.full((B,), 3)
    nb = torch.repeat_interleave(torch.arange(B), counts)
    f = dl.pointer_features(torch.zeros(B, 2, dtype=torch.long), counts)
    out = dl.drop_pointers(f, nb, p, torch.Generator().manual_seed(0))
    freq = out.dropped.double().mean().item()
    assert abs(freq - p) < 4 * (p * (1 - p) / B) ** 0.5
    d = out.dropped[nb]
    assert torch.all(out.features[d] == 0) and torch.all(out.null[d] == 1)
    assert torch.equal(out.features[~d], f[~d]) and torch.all(out.null[~d] == 0)
    x = out.node_input()
    assert x.shape == (3 * B, 3) and torch.equal(x[:, 2], out.null)
    none = dl.drop_pointers(f, nb, 0.0)
    assert not none.dropped.any() and torch.equal(none.features, f)


# ---------------------------------------------------------------------------------------- complexes

SMILES = "CC(=O)NC1CC1"


def _complex(perm_lig=None, perm_rec=None, n_res=6, seed=0):
    """Synthetic complex (residues 3-9 A from the ligand), its atoms / residues optionally renumbered."""
    from rdkit import Chem
    from bench.docking.data import synthetic_complex
    c = synthetic_complex(SMILES, n_res, seed, "t", shell=(3, 9))
    if perm_lig is not None:   # new atom k = old atom perm_lig[k]
        mol = Chem.RenumberAtoms(c.ligand, [int(i) for i in perm_lig])
        c = dataclasses.replace(c, ligand=mol, ligand_coords=mol.GetConformer().GetPositions())
    if perm_rec is not None:
        c = dataclasses.replace(c, ca_coords=c.ca_coords[perm_rec], residue_types=c.residue_types[perm_rec])
    return c


@pytest.fixture(scope="module")
def base():
    return _complex()


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return dl.PointerEncoder(dl.PointerEncoderConfig.tiny(), dtype=F64).eval()


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(1)
    score = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(extra_node_dim=dl.pointer_extra_dim(2)), dtype=F64)
    return dl.PointerPrior(score, m=2, hidden=16).eval()


def _perms(c):
    n, r = c.num_ligand_atoms, c.num_residues
    g = np.random.default_rng(7)
    return g.permutation(n), g.permutation(r)


def _joint_perm(pl, pr):
    """new joint node k (ligand block, then residues) = old node perm[k]."""
    return torch.as_tensor(np.concatenate([pl, len(pl) + pr]))


def test_encoder_logits_permute_with_nodes(encoder, base):
    pl, pr = _perms(base)
    b0 = sm.make_batch([base], dtype=F64)
    b1 = sm.make_batch([_complex(pl, pr)], dtype=F64)
    with torch.no_grad():
        l0, l1 = encoder(b0), encoder(b1)
    assert l0.shape == (base.num_ligand_atoms + base.num_residues, 2)
    torch.testing.assert_close(l1, l0[_joint_perm(pl, pr)], rtol=1e-9, atol=1e-10)
    assert l0.std() > 0


def test_encoder_two_complexes_and_gumbel_feeds_score_model(encoder, base):
    other = _complex(seed=3, n_res=4)
    b = sm.make_batch([base, other], dtype=F64)
    nodes = dl.joint_nodes(b)
    assert nodes.counts.tolist() == [base.num_ligand_atoms + 6, other.num_ligand_atoms + 4]
    w = encoder.sample(b, tau=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.zeros(2, 2, dtype=F64).index_add_(0, nodes.batch, w), torch.ones(2, 2, dtype=F64))
    # per-complex logits do not depend on the other complex in the batch
    with torch.no_grad():
        alone = encoder(sm.make_batch([base], dtype=F64))
        both = encoder(b)
    sel = nodes.batch == 0
    torch.testing.assert_close(both[sel], alone, rtol=1e-9, atol=1e-10)
    # the score model consumes [weights, null flag] and gradients reach the encoder
    torch.manual_seed(2)
    score = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(extra_node_dim=3), dtype=F64)
    enc = dl.PointerEncoder(dl.PointerEncoderConfig.tiny(), dtype=F64)
    w = enc.sample(b, 1.0, torch.Generator().manual_seed(1))
    dropped = dl.drop_pointers(w, nodes.batch, 0.5, torch.Generator().manual_seed(0))
    assert dropped.dropped.tolist() == [True, False]
    out = score(dl.with_node_extra(b, dropped.node_input(), nodes), 0.5)
    (out.tr.sum() + out.tor.sum()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.lig_head.parameters())


def test_null_flag_is_a_learned_vector_added_to_nodes(base):
    torch.manual_seed(4)
    score = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(extra_node_dim=3), dtype=F64)
    enc = score.lig_node_embedding
    cats = sm.make_batch([base]).lig_x
    extra = torch.zeros(len(cats), 8 + 3, dtype=F64)
    flagged = extra.clone()
    flagged[:, -1] = 1
    torch.testing.assert_close(enc(cats, flagged) - enc(cats, extra),
                               enc.mix.weight[:, -1].expand(len(cats), -1), rtol=1e-12, atol=1e-12)


def test_prior_pose_and_uniforms(base):
    b = sm.make_batch([base, _complex(seed=3, n_res=4)], dtype=F64)
    moved = dl.prior_ligand_pose(b, torch.Generator().manual_seed(0))
    for k in range(2):
        lm, rm = b.lig_batch == k, b.rec_batch == k
        torch.testing.assert_close(moved.lig_pos[lm].mean(0), b.rec_pos[rm].mean(0))
        torch.testing.assert_close(torch.cdist(moved.lig_pos[lm], moved.lig_pos[lm]),
                                   torch.cdist(b.lig_pos[lm], b.lig_pos[lm]))
    R = dl.random_rotations(5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=F64).expand(5, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(5, dtype=F64))
    u = dl.pointer_uniforms([3, 9, 3])
    assert u.shape == (3, 2) and torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])


def test_prior_distribution_permutes_with_nodes(prior, base):
    pl, pr = _perms(base)
    perm = _joint_perm(pl, pr)
    inv = torch.argsort(perm)
    b0, b1 = sm.make_batch([base], dtype=F64), sm.make_batch([_complex(pl, pr)], dtype=F64)
    z0 = torch.tensor([[2, 8]])                        # local pointers in the original order
    z1 = inv[z0]                                       # the same nodes in the permuted order
    with torch.no_grad():
        for i in range(2):
            p0 = dl.node_softmax(prior.logits(b0, z0, i), dl.joint_nodes(b0).batch)
            p1 = dl.node_softmax(prior.logits(b1, z1, i), dl.joint_nodes(b1).batch)
            torch.testing.assert_close(p1, p0[perm], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(prior.log_prob(b1, z1), prior.log_prob(b0, z0), rtol=1e-9, atol=1e-12)


def test_prior_log_prob_is_normalised_over_all_pairs(prior, base):
    n = base.num_ligand_atoms + base.num_residues
    pairs = torch.cartesian_prod(torch.arange(n), torch.arange(n))      # [n^2, 2]
    b = sm.make_batch([base] * len(pairs), dtype=F64)
    with torch.no_grad():
        lp = prior.log_prob(b, pairs)
    assert lp.shape == (n * n,) and torch.isfinite(lp).all()
    torch.testing.assert_close(lp.exp().sum(), torch.tensor(1.0, dtype=F64), rtol=1e-10, atol=1e-12)
    # latent 2 depends on latent 1: p(z_2 | z_1) differs between z_1 values
    cond = lp.reshape(n, n) - torch.logsumexp(lp.reshape(n, n), 1, keepdim=True)
    assert (cond[0] - cond[1]).abs().max() > 1e-6


def test_prior_sampling_temperature_and_seeds(prior, base):
    b = sm.make_batch([base, _complex(seed=3, n_res=4)], dtype=F64)
    nodes = dl.joint_nodes(b)
    u = dl.pointer_uniforms([0, 1])
    z_arg = prior.sample(b, u, temperature=0.0)
    with torch.no_grad():
        want0 = nodes.local[dl.node_argmax(prior.logits(b, z_arg, 0, nodes), nodes.batch)]
        want1 = nodes.local[dl.node_argmax(prior.logits(b, z_arg, 1, nodes), nodes.batch)]
    assert torch.equal(z_arg[:, 0], want0) and torch.equal(z_arg[:, 1], want1)
    for uu in (u, torch.tensor([[0.001, 0.999], [0.999, 0.001]], dtype=F64)):
        assert torch.equal(prior.sample(b, uu, temperature=1e-6), z_arg)
    z = prior.sample(b, u, 1.0)
    assert torch.equal(z, prior.sample(b, u, 1.0))                     # same seeds, same pointers
    assert bool((z >= 0).all()) and bool((z < nodes.counts[:, None]).all())


def test_inverse_cdf_matches_searchsorted():
    logits, batch = _ragged(4, cols=1)
    nodes = dl.JointNodes(batch, dl.local_index(batch), torch.bincount(batch), 0)
    p = dl.node_softmax(logits[:, 0], batch)
    u = torch.tensor([0.0, 0.37, 0.999999, 0.5], dtype=F64)
    k = dl.inverse_cdf(p, nodes, u)
    for b in range(4):
        cdf = torch.cumsum(p[batch == b], 0)                 # local order = given order here
        assert int(k[b]) == min(int(torch.searchsorted(cdf, u[b], right=True)), len(cdf) - 1)


def test_freeze_convs_blocks_trunk_gradients_only(base):
    torch.manual_seed(5)
    score = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(extra_node_dim=3), dtype=F64)
    prior = dl.PointerPrior(score, m=2, hidden=8)
    b = sm.make_batch([base], dtype=F64)
    z = torch.tensor([[1, 4]])
    prior.freeze_convs(True)
    (-prior.log_prob(b, z).sum()).backward()
    assert all(p.grad is None for p in score.conv_layers.parameters())
    assert all(p.grad is None for p in score.lig_node_embedding.parameters())
    for heads in (prior.lig_heads, prior.rec_heads):
        assert all(p.grad is not None for p in heads.parameters())
    assert any(p.grad.abs().sum() > 0 for p in prior.rec_heads[1].parameters())
    prior.zero_grad(set_to_none=True)
    prior.freeze_convs(False)
    (-prior.log_prob(b, z).sum()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in score.conv_layers.parameters())


def test_frozen_trunk_keeps_its_batch_norm_statistics(base):
    torch.manual_seed(6)
    score = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(extra_node_dim=3, batch_norm=True), dtype=F64)
    prior = dl.PointerPrior(score, m=2, hidden=8)
    b = sm.make_batch([base, base], dtype=F64)
    z = torch.tensor([[1, 4], [0, 2]])
    stats = lambda: [t.clone() for t in score.conv_layers.buffers()]   # noqa: E731
    before = stats()
    assert before, "the tiny score model has batch norm"
    prior.freeze_convs(True)
    prior.train()                                    # as the training loop does
    assert not score.conv_layers.training and prior.lig_heads.training
    prior.log_prob(b, z)
    assert all(torch.equal(a, c) for a, c in zip(before, stats()))
    prior.freeze_convs(False)
    assert score.conv_layers.training
    prior.log_prob(b, z)
    assert any(not torch.equal(a, c) for a, c in zip(before, stats()))


def test_prior_rejects_wrong_extra_dim():
    score = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(extra_node_dim=2), dtype=F64)
    with pytest.raises(ValueError, match="extra_node_dim"):
        dl.PointerPrior(score, m=2)
