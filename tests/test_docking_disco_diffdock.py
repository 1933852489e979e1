"""DisCo-DiffDock-S end to end on tiny models (bench.docking.disco_diffdock): stage-1 joint training input,
encoder pointers, the prior's freeze phase, per-sample seeded sampling, low-temperature SDE steps."""
import dataclasses
import math

import pytest
import torch

pytest.importorskip("e3nn")
pytest.importorskip("rdkit")
dd = pytest.importorskip("bench.docking.disco_diffdock")
from bench.docking import noise  # noqa: E402
from bench.docking.data import synthetic_complex  # noqa: E402
from bench.docking.disco_latents import PointerEncoderConfig, joint_nodes  # noqa: E402
from bench.docking.pose_diffusion import DockingTrainConfig, protein_centred  # noqa: E402
from bench.docking.score_model import ScoreModelConfig, make_batch  # noqa: E402
from bench.train import TrainConfig  # noqa: E402

F64 = torch.float64


@pytest.fixture(scope="module")
def complexes():
    return [synthetic_complex("CCOc1ccccc1C(=O)N", 12, 0, "a"), synthetic_complex("CC(C)CCO", 9, 1, "b")]


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = dd.DisCoDiffDockConfig(score=ScoreModelConfig.tiny(), encoder=PointerEncoderConfig.tiny())
    return dd.DisCoDiffDockModel(cfg, dtype=F64)


def test_config_sets_latent_input_width():
    cfg = dd.DisCoDiffDockConfig(score=ScoreModelConfig.tiny(), encoder=PointerEncoderConfig.tiny(m=3))
    assert cfg.score.extra_node_dim == 4 and cfg.m == 3
    with pytest.raises(ValueError, match="drop_p"):
        dd.DisCoDiffDockConfig(drop_p=1.0)


def test_pointer_input_dropout_and_gradient(complexes):
    model = _model()
    crystal = protein_centred(make_batch(complexes, dtype=F64))[0]
    nodes = joint_nodes(crystal)
    gumbel = torch.zeros(len(nodes.batch), 2, dtype=F64)
    x = model.pointer_input(crystal, nodes, gumbel, torch.tensor([False, True]))
    kept, dropped = nodes.batch == 0, nodes.batch == 1
    sums = x[kept, :2].sum(0)
    torch.testing.assert_close(sums, torch.ones(2, dtype=F64))            # a distribution over complex 0's nodes
    assert torch.all(x[dropped, :2] == 0) and torch.all(x[dropped, 2] == 1) and torch.all(x[kept, 2] == 0)
    x[kept, :2].pow(2).sum().backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_stage1_loss_trains_encoder_and_score_model(complexes, tmp_path):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = DockingTrainConfig(train=TrainConfig(steps=3, batch_size=2, lr=1e-3, log_every=1))
    info = dd.train_disco_diffdock(model, complexes, cfg, tmp_path / "s1")
    assert math.isfinite(info["final_loss"])
    after = model.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"encoder", "score_model"}
    again = _model(seed=1)   # a finished run loads from its cache, whatever the initialisation
    assert dd.train_disco_diffdock(again, complexes, cfg, tmp_path / "s1")["cached"]
    assert all(torch.equal(again.state_dict()[k], after[k]) for k in after)


def test_encoder_pointers_per_complex_seeds(complexes):
    model = _model()
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    both = dd.encoder_pointers(model.encoder, complexes, [g(3), g(4)])
    alone = dd.encoder_pointers(model.encoder, complexes[1:], [g(4)])
    assert torch.equal(both[1], alone[0])
    counts = [c.num_ligand_atoms + c.num_residues for c in complexes]
    assert all(0 <= int(z) < n for row, n in zip(both, counts) for z in row)


def test_prior_freeze_phase_keeps_trunk(complexes, tmp_path):
    model = _model()
    prior = dd.make_prior(model, hidden=8)
    assert prior.score_model is not model.score_model
    trunk0 = [p.detach().clone() for p in prior.trunk_parameters()]
    heads0 = [p.detach().clone() for p in prior.lig_heads.parameters()]
    cfg = dd.PriorTrainConfig(train=TrainConfig(steps=2, batch_size=2, lr=1e-2, log_every=1), freeze_epochs=5,
                              hidden=8)
    assert cfg.freeze_steps(len(complexes)) == 2           # every step is in the first 5 epochs
    info = dd.train_pointer_prior(prior, model.encoder, complexes, cfg, tmp_path / "prior")
    assert info["frozen_steps"] == 2 and math.isfinite(info["final_loss"])
    assert all(torch.equal(a, b) for a, b in zip(trunk0, prior.trunk_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(heads0, prior.lig_heads.parameters()))
    assert all(p.requires_grad for p in prior.trunk_parameters())   # unfrozen again afterwards
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4), freeze_epochs=1)
    dd.train_pointer_prior(prior, model.encoder, complexes, longer, tmp_path / "prior2")
    assert any(not torch.equal(a, b) for a, b in zip(trunk0, prior.trunk_parameters()))


def test_sample_disco_poses_per_sample_seeds(complexes):
    model = _model()
    prior = dd.make_prior(model, hidden=8)
    c = complexes[0]
    kw = dict(steps=4, actual_steps=None, batch_size=2)
    out, z = dd.sample_disco_poses(model, prior, c, seeds=[5, 6, 7], prior_temperature=2.0, **kw)
    one, z1 = dd.sample_disco_poses(model, prior, c, seeds=[6], prior_temperature=2.0, **kw)
    assert out.poses.shape == (3, c.num_ligand_atoms, 3) and out.nfe == 4
    assert torch.equal(z[1], z1[0])
    torch.testing.assert_close(out.poses[1], one.poses[0])
    assert int(z.max()) < c.num_ligand_atoms + c.num_residues
    with pytest.raises(ValueError, match="pointers"):
        dd.sample_poses(model.score_model, c, seeds=[1, 2], pointers=torch.zeros(3, 2, dtype=torch.long), **kw)


def test_low_temperature_step():
    score, z = torch.tensor([1.0, -2.0], dtype=F64), torch.tensor([0.5, 0.5], dtype=F64)
    off = noise.tempered_perturb(score, 2.0, 0.1, z, 3.0, 0.1, 19.0, noise.LowTemperature())
    torch.testing.assert_close(off, noise.sde_perturb(score, 2.0, 0.1, z))
    # T = 0.5, psi = 0.4, s = 0.5: sigma_data = sqrt(0.1 * 19); lambda = (sd + 3) / (sd + 6)
    sd = math.sqrt(0.1 * 19.0)
    lam = (sd + 3.0) / (sd + 6.0)
    want = 4.0 * 0.1 * (lam + 0.5 * 0.4 / 2) * score + 2.0 * math.sqrt(0.1 * 1.4) * z
    got = noise.tempered_perturb(score, 2.0, 0.1, z, 3.0, 0.1, 19.0, noise.LowTemperature(0.5, 0.4, 0.5))
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError):
        noise.LowTemperature(0.0)


def test_esm_preset_reaches_every_network(complexes):
    """With ESM embeddings attached, the preset's denoiser, encoder, prior and confidence trunk all take them."""
    import numpy as np

    from bench.docking.confidence import ConfidenceModel, predict_logits
    from bench.docking.presets import docking_preset
    from bench.distributed import Shard

    rng = np.random.default_rng(0)
    with_esm = [dataclasses.replace(c, esm=rng.normal(size=(c.num_residues, 6)).astype(np.float32))
                for c in complexes]
    p = docking_preset("smoke").with_esm(6)
    assert p.score.esm_dim == p.encoder.score_config().esm_dim == p.confidence.trunk.esm_dim == 6
    torch.manual_seed(0)
    model = dd.DisCoDiffDockModel(p.disco)
    loss = dd.disco_loss_fn(with_esm, DockingTrainConfig(train=TrainConfig(batch_size=2)))(
        model, torch.Generator().manual_seed(0), Shard())
    assert torch.isfinite(loss)
    z = dd.sample_pointers(dd.make_prior(model, 8), with_esm[0], [0, 1], temperature=1.0)
    assert z.shape == (2, 2)
    logits = predict_logits(ConfidenceModel(p.confidence), with_esm, [c.ligand_coords for c in with_esm])
    assert torch.isfinite(logits).all()
    # a model built without ESM refuses a batch that carries it, instead of silently ignoring it
    with pytest.raises(ValueError, match="esm_dim = 0"):
        dd.encoder_pointers(_model().encoder, with_esm, [torch.Generator().manual_seed(0)] * 2)
