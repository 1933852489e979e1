"""Docking RMSD: spyrmsd (DiffDock's evaluation) vs RDKit automorphisms vs rdMolAlign.CalcRMS, the timeout
fallback, and the success rates of Table 4."""
import sys
import threading
import time

import numpy as np
import pytest

from bench.docking import rmsd as dr

Chem = pytest.importorskip("rdkit.Chem")
pytest.importorskip("spyrmsd")

from rdkit.Chem import rdMolAlign  # noqa: E402
from rdkit.Geometry import Point3D  # noqa: E402

from bench.docking import data as dd  # noqa: E402

TOL = 1e-4


def with_coords(mol, xyz):
    """Copy of ``mol`` whose conformer 0 holds ``xyz`` (one is added when it has none)."""
    out = Chem.Mol(mol)
    if out.GetNumConformers() == 0:
        out.AddConformer(Chem.Conformer(out.GetNumAtoms()), assignId=True)
    conf = out.GetConformer()
    for i, p in enumerate(np.asarray(xyz, dtype=np.float64)):
        conf.SetAtomPosition(i, Point3D(*map(float, p)))
    return out


def shuffled(mol, xyz, rng):
    """The molecule with pose ``xyz``, its atoms renumbered by a random permutation: (mol, coords)."""
    perm = rng.permutation(mol.GetNumAtoms())
    out = Chem.RenumberAtoms(with_coords(mol, xyz), perm.tolist())  # new atom i = old atom perm[i]
    coords = out.GetConformer().GetPositions()
    np.testing.assert_allclose(coords, np.asarray(xyz)[perm])
    return out, coords


def worker_gone(timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(t.name == "bench-symmrmsd" and t.is_alive() for t in threading.enumerate()):
            return True
        time.sleep(0.01)
    return False


@pytest.fixture(scope="module")
def offline():
    complexes = dd.offline_complexes(warn=False).complexes
    if not complexes:
        pytest.skip("no offline complex on this machine")
    return complexes


# ------------------------------------------------------------------- three independent RMSDs agree

def test_offline_ligands_spyrmsd_automorphisms_and_calcrms_agree(offline):
    rng = np.random.default_rng(0)
    for c in offline:
        mol, ref = c.ligand, c.ligand_coords.astype(np.float64)
        ref_mol = with_coords(mol, ref)
        autos = dr.graph_matches(mol)
        assert (autos == np.arange(len(ref))).all(axis=1).any(), c.name  # the identity is an automorphism
        # Poses: noise around the crystal pose, and the most displacing automorphism applied plus noise
        # (pose atom j sits where reference atom m(j) is), so that symmetry matters for the second.
        worst = autos[np.argmax(dr.plain_rmsd(ref, ref[autos]))]
        poses = np.stack([ref + rng.normal(0, 1.0, ref.shape) + [0.5, -0.3, 0.2],
                          ref[worst] + rng.normal(0, 0.3, ref.shape)])
        batch = dr.symmetry_rmsd(mol, ref, poses)
        assert batch.method == "spyrmsd" and not batch.used_fallback and batch.values.shape == (2,)
        np.testing.assert_allclose(dr.automorphism_rmsd(mol, ref, poses), batch.values, atol=TOL)
        for pose, expected in zip(poses, batch.values):
            prb, prb_coords = shuffled(mol, pose, rng)
            spy = dr.symmetry_rmsd(mol, ref, prb_coords, mol_pred=prb)
            ours = dr.automorphism_rmsd(mol, ref, prb_coords, mol_pred=prb)
            rd = rdMolAlign.CalcRMS(prb, ref_mol)  # symmetry-aware, in place (no alignment)
            assert spy.method == "spyrmsd" and spy.values.shape == () and ours.shape == ()
            assert abs(float(spy.values) - expected) < TOL, c.name
            assert abs(float(ours) - float(spy.values)) < TOL, c.name
            assert abs(rd - float(spy.values)) < TOL, (c.name, rd, float(spy.values))
            assert float(spy.values) <= float(dr.plain_rmsd(ref, pose)) + 1e-12
        if len(autos) > 1:  # symmetric ligand: the swapped pose is far in plain RMSD, close once corrected
            assert dr.plain_rmsd(ref, poses[1]) > batch.values[1] + 0.3, c.name


# ------------------------------------------------------------------------------ symmetric molecule

@pytest.mark.parametrize("smiles", ["OC(=O)c1ccccc1", "[O-]C(=O)c1ccccc1"])
def test_carboxyl_oxygen_swap_costs_nothing_once_corrected(smiles):
    mol = dd.etkdg_conformer(Chem.MolFromSmiles(smiles), seed=0)
    ref = mol.GetConformer().GetPositions()
    o1, o2 = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 8]
    pred = ref.copy()
    pred[[o1, o2]] = ref[[o2, o1]]  # the two oxygens trade places
    d = np.linalg.norm(ref[o1] - ref[o2])
    plain = float(dr.plain_rmsd(ref, pred))
    assert plain == pytest.approx(np.sqrt(2 * d ** 2 / len(ref)))
    assert plain > 0.5

    spy = dr.symmetry_rmsd(mol, ref, pred)
    assert spy.method == "spyrmsd" and float(spy.values) == pytest.approx(0.0, abs=1e-9)
    assert float(dr.automorphism_rmsd(mol, ref, pred)) == pytest.approx(0.0, abs=1e-9)
    # 2 (carboxyl O) x 2 (ring flip) automorphisms of the heavy-atom graph, bond orders ignored.
    assert len(dr.graph_matches(mol)) == 4
    ref_mol, prb = with_coords(mol, ref), with_coords(mol, pred)
    assert rdMolAlign.CalcRMS(prb, ref_mol) == pytest.approx(0.0, abs=1e-9)
    # RDKit matches bond orders and charges unless it symmetrizes conjugated terminal groups: then the
    # swap is not a symmetry and its RMSD is the plain one.
    assert rdMolAlign.CalcRMS(prb, ref_mol, symmetrizeConjugatedTerminalGroups=False) == pytest.approx(plain)

    # Plus noise and a shuffled atom order: all three still agree and stay below the plain RMSD.
    rng = np.random.default_rng(1)
    noisy = pred + rng.normal(0, 0.2, pred.shape)
    prb, prb_coords = shuffled(mol, noisy, rng)
    spy = float(dr.symmetry_rmsd(mol, ref, prb_coords, mol_pred=prb).values)
    assert float(dr.automorphism_rmsd(mol, ref, prb_coords, mol_pred=prb)) == pytest.approx(spy, abs=TOL)
    assert rdMolAlign.CalcRMS(prb, ref_mol) == pytest.approx(spy, abs=TOL)
    assert spy < float(dr.plain_rmsd(ref, noisy)) - 0.3


def test_hydrogens_are_dropped_and_bad_inputs_raise():
    mol = Chem.AddHs(Chem.MolFromSmiles("OC(=O)c1ccccc1"))
    heavy = np.asarray([a.GetAtomicNum() != 1 for a in mol.GetAtoms()])
    rng = np.random.default_rng(2)
    ref, pred = rng.normal(size=(mol.GetNumAtoms(), 3)), rng.normal(size=(3, mol.GetNumAtoms(), 3))
    res = dr.symmetry_rmsd(mol, ref, pred)
    heavy_mol = Chem.RemoveHs(mol)
    np.testing.assert_allclose(res.values, dr.symmetry_rmsd(heavy_mol, ref[heavy], pred[:, heavy]).values)
    np.testing.assert_allclose(res.values, dr.automorphism_rmsd(mol, ref, pred), atol=TOL)
    with pytest.raises(ValueError, match="coords_ref"):
        dr.symmetry_rmsd(mol, ref[:-1], pred)
    with pytest.raises(ValueError, match="coords_pred"):
        dr.symmetry_rmsd(mol, ref, pred[:, :-1])
    with pytest.raises(ValueError, match="heavy atoms"):
        dr.symmetry_rmsd(mol, ref, pred[0][heavy][:-1], mol_pred=Chem.MolFromSmiles("OC(=O)C1CCCC1"))


def test_failed_pose_is_nan_and_others_are_kept():
    mol = Chem.MolFromSmiles("OC(=O)c1ccccc1")
    rng = np.random.default_rng(3)
    ref, pred = rng.normal(size=(9, 3)), rng.normal(size=(3, 9, 3))
    pred[1, 4] = np.nan
    res = dr.symmetry_rmsd(mol, ref, pred)
    assert res.method == "spyrmsd" and np.isnan(res.values[1]) and np.isfinite(res.values[[0, 2]]).all()
    np.testing.assert_allclose(res.values[[0, 2]], dr.symmetry_rmsd(mol, ref, pred[[0, 2]]).values)
    np.testing.assert_allclose(dr.automorphism_rmsd(mol, ref, pred), res.values, atol=TOL)


# ---------------------------------------------------------------------------------- fallbacks

def test_timeout_falls_back_to_plain_rmsd_and_stops_the_worker():
    # 4 tert-butyls on one carbon: 4! * (3!)^4 = 31104 automorphisms, about 1-2 s of spyrmsd.
    mol = Chem.MolFromSmiles("CC(C)(C)C(C(C)(C)C)(C(C)(C)C)C(C)(C)C")
    assert len(dr.graph_matches(mol)) == 31104
    rng = np.random.default_rng(4)
    ref, pred = rng.normal(size=(17, 3)), rng.normal(size=(2, 17, 3))
    start = time.perf_counter()
    res = dr.symmetry_rmsd(mol, ref, pred, timeout_s=0.05)
    assert time.perf_counter() - start < 1.0
    assert res.used_fallback and res.method == "fallback:plain (timeout: spyrmsd ran past 0.05 s)"
    np.testing.assert_allclose(res.values, dr.plain_rmsd(ref, pred))
    assert worker_gone(), "the timed-out spyrmsd worker is still running"
    # The cross-check gets the symmetric value, which is below the plain one.
    assert (dr.automorphism_rmsd(mol, ref, pred) <= res.values + 1e-12).all()


def test_timeout_with_a_hanging_spyrmsd(monkeypatch):
    import spyrmsd.rmsd

    def hang(*args, **kwargs):
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(spyrmsd.rmsd, "symmrmsd", hang)
    mol = Chem.MolFromSmiles("OC(=O)c1ccccc1")
    ref, pred = np.zeros((9, 3)), np.ones((9, 3))
    res = dr.symmetry_rmsd(mol, ref, pred, timeout_s=0.01)
    assert res.method.startswith("fallback:plain (timeout") and float(res.values) == pytest.approx(np.sqrt(3))
    assert worker_gone()


def test_spyrmsd_error_and_missing_spyrmsd_are_recorded(monkeypatch):
    ethanol, ether = Chem.MolFromSmiles("CCO"), Chem.MolFromSmiles("COC")  # same atoms, other graph
    ref, pred = np.eye(3), np.eye(3)[::-1] * 2
    res = dr.symmetry_rmsd(ethanol, ref, pred, mol_pred=ether)
    assert res.method.startswith("fallback:plain (spyrmsd failed") and "NonIsomorphicGraphs" in res.method
    assert float(res.values) == pytest.approx(float(dr.plain_rmsd(ref, pred)))
    with pytest.raises(ValueError, match="not isomorphic"):
        dr.automorphism_rmsd(ethanol, ref, pred, mol_pred=ether)

    monkeypatch.setitem(sys.modules, "spyrmsd", None)
    res = dr.symmetry_rmsd(ethanol, ref, pred)
    assert res.method.startswith("fallback:plain (spyrmsd not installed")
    assert float(res.values) == pytest.approx(float(dr.plain_rmsd(ref, pred)))


def test_graph_match_limit_is_an_error():
    mol = Chem.MolFromSmiles("CC(C)(C)C(C)(C)C(C)(C)C")  # 144 automorphisms
    with pytest.raises(RuntimeError, match="max_matches"):
        dr.graph_matches(mol, max_matches=100)
    assert len(dr.graph_matches(mol, max_matches=145)) == 144


# ------------------------------------------------------------------------------ success rates

def test_success_rates_count_failed_complexes():
    nan = np.nan
    rmsds = np.array([
        [3.0, 1.5, 4.0, 5.0, 6.0, 7.0],   # most confident is 1.5: top-1 success
        [3.0, 4.0, 5.0, 6.0, 7.0, 1.0],   # 1.0 is least confident: only the oracle succeeds
        [nan, nan, nan, nan, nan, nan],   # failed complex: fails everything, stays in the denominator
        [2.5, nan, 1.9, 2.0, 9.0, 8.0],   # failed sample ranked first; 1.9 is the 3rd most confident
    ])
    conf = np.array([
        [0.1, 0.9, 0.2, 0.3, 0.4, 0.5],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [nan, nan, nan, nan, nan, nan],
        [0.5, 0.9, 0.5, 0.6, nan, 0.1],   # tie 0.5: sample 0 before sample 2 (stable); NaN ranks last
    ])
    out = dr.success_rates(rmsds, conf)
    assert out["top1"] == pytest.approx(1 / 4)
    assert out["top5"] == pytest.approx(2 / 4)
    assert out["all_samples"] == pytest.approx(3 / 4)
    assert out["per_sample"] == pytest.approx(3 / 24)
    assert (out["n_complexes"], out["n_samples"], out["n_failed_complexes"], out["n_failed_samples"]) == (4, 6, 1, 7)
    # top-1 RMSDs 1.5, 3.0, inf (failed complex), inf (failed sample ranked first); best 1.5, 1.0, inf, 1.9
    assert out["median_top1"] == np.inf and out["median_best"] == pytest.approx(1.7)
    assert dr.success_rates(rmsds[:2], conf[:2])["median_top1"] == pytest.approx(2.25)

    # Complex 3 ranks 0.9 (nan), 0.6 (2.0, not < 2), then the tie at 0.5 in sample order: 2.5, then 1.9.
    assert dr.success_rates(rmsds, conf, top_k=3)["top3"] == pytest.approx(1 / 4)
    assert dr.success_rates(rmsds, conf, top_k=4)["top4"] == pytest.approx(2 / 4)
    # Without confidences the samples' own order ranks (first sample = top-1).
    plain = dr.success_rates(rmsds)
    assert plain["top1"] == 0.0 and plain["top5"] == pytest.approx(2 / 4)
    assert np.isnan(dr.success_rates(rmsds[:, :3], conf[:, :3])["top5"])  # fewer samples than k
    with pytest.raises(ValueError, match="ranking"):
        dr.success_rates(rmsds, conf[:, :5])
