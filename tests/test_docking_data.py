"""PDBBind loading for DiffDock: splits, processed-layout loader, offline complexes, ligand features."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.docking import data as dd

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def Chem():
    return pytest.importorskip("rdkit.Chem")


# ------------------------------------------------------------------------------ without RDKit

def test_module_imports_without_rdkit():
    code = ("import sys; sys.modules['rdkit'] = None\n"
            "import bench.docking.data as d\n"
            "try:\n    d.read_ligand('x.sdf')\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'pip install -e ".[docking]"' in out.stdout


@pytest.mark.parametrize("call", [lambda: dd.offline_complexes(), lambda: dd.ligand_features(None),
                                  lambda: dd.rotatable_bonds(None), lambda: dd.etkdg_conformer(None)])
def test_missing_rdkit_says_how_to_install(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(dd.MissingDockingDependency, match=r'pip install -e "\.\[docking\]"'):
        call()


# ------------------------------------------------------------------------------------ splits

def test_split_counts_and_relations():
    test, unseen = dd.load_split("timesplit_test"), dd.load_split("timesplit_test_no_rec_overlap")
    train, val = dd.load_split("train"), dd.load_split("val")
    assert (len(test), len(unseen), len(train), len(val)) == (363, 144, 16379, 968)
    assert dd.load_split("test") == test and dd.load_split("unseen") == unseen
    assert set(unseen) <= set(test)
    assert not (set(test) & set(train)) and not (set(test) & set(val)) and not (set(train) & set(val))
    assert test[:3] == ["6qqw", "6d08", "6jap"]


def test_unknown_split_is_an_error():
    with pytest.raises(dd.DockingDataError, match="unknown split"):
        dd.load_split("timesplit_everything")


# --------------------------------------------------------------------------- synthetic layout

def _atom(serial, name, resname, chain, resseq, xyz, record="ATOM  ", altloc=" ", element=""):
    x, y, z = xyz
    return (f"{record}{serial:5d} {name:<4s}{altloc}{resname:>3s} {chain}{resseq:4d}    "
            f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          {element:>2s}")


def _protein_pdb() -> tuple[str, np.ndarray, list[int]]:
    """ALA, HIS-variant HIE, a non-standard ATOM residue, one residue without C (dropped), an altloc,
    a water and a ligand HETATM (ignored), a second MODEL (ignored)."""
    lines, cas, types, s = ["MODEL        1"], [], [], 1
    residues = [("ALA", "A", 1, True), ("HIE", "A", 2, True), ("XYZ", "B", 7, True), ("GLY", "B", 8, False)]
    for k, (res, chain, num, complete) in enumerate(residues):
        base = np.array([3.8 * k, 1.0, -2.0])
        names = ["N", "CA", "C", "O"] if complete else ["N", "CA"]
        for j, name in enumerate(names):
            xyz = base + [0.0, 0.5 * j, 0.25 * j]
            lines.append(_atom(s, name, res, chain, num, xyz, altloc="A" if (k == 0 and name == "CA") else " "))
            s += 1
            if k == 0 and name == "CA":  # altloc B of the same atom, further away: must be ignored
                lines.append(_atom(s, name, res, chain, num, xyz + 9.0, altloc="B"))
                s += 1
            if name == "CA" and complete:
                cas.append(xyz)
        if complete:
            types.append(dd.residue_index(res))
    lines.append(_atom(s, "O", "HOH", "A", 100, (0, 0, 0), record="HETATM", element="O"))
    lines.append(_atom(s + 1, "C1", "LIG", "A", 101, (1, 1, 1), record="HETATM", element="C"))
    lines += ["ENDMDL", "MODEL        2", _atom(1, "CA", "ALA", "A", 1, (50, 50, 50)), "ENDMDL", "END"]
    return "\n".join(lines) + "\n", np.asarray(cas, dtype=np.float32), types


def _ligand_molblock(Chem, smiles="CC(=O)Nc1ccccc1", seed=7):
    from rdkit.Chem import AllChem
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return Chem.MolToMolBlock(mol), mol


ETHANOL_MOL2 = """@<TRIPOS>MOLECULE
ethanol
 9 8 0 0 0
SMALL
NO_CHARGES

@<TRIPOS>ATOM
      1 C1     -0.7540    0.0140    0.0040 C.3   1 LIG1   0.0
      2 C2      0.7540   -0.0140    0.0020 C.3   1 LIG1   0.0
      3 O1      1.2290    1.3160   -0.0020 O.3   1 LIG1   0.0
      4 H1     -1.1240   -1.0140    0.0030 H     1 LIG1   0.0
      5 H2     -1.1130    0.5380    0.8900 H     1 LIG1   0.0
      6 H3     -1.1190    0.5320   -0.8850 H     1 LIG1   0.0
      7 H4      1.1230   -0.5370    0.8850 H     1 LIG1   0.0
      8 H5      1.1170   -0.5300   -0.8880 H     1 LIG1   0.0
      9 H6      2.1910    1.2930   -0.0040 H     1 LIG1   0.0
@<TRIPOS>BOND
     1     1     2 1
     2     2     3 1
     3     1     4 1
     4     1     5 1
     5     1     6 1
     6     2     7 1
     7     2     8 1
     8     3     9 1
"""


def _layout(tmp_path, Chem, pdb_id="1abc", protein_name="protein_processed", sdf=True, mol2=False):
    folder = tmp_path / pdb_id
    folder.mkdir()
    text, cas, types = _protein_pdb()
    (folder / f"{pdb_id}_{protein_name}.pdb").write_text(text)
    block, mol = _ligand_molblock(Chem)
    if sdf:
        (folder / f"{pdb_id}_ligand.sdf").write_text(block + "$$$$\n")
    if mol2:
        (folder / f"{pdb_id}_ligand.mol2").write_text(ETHANOL_MOL2)
    return folder, cas, types, mol


def test_load_processed_complex(tmp_path, Chem):
    folder, cas, types, mol = _layout(tmp_path, Chem)
    c = dd.load_pdbbind_complex(tmp_path, "1abc")
    assert c.name == "1abc" and str(folder) in c.source
    np.testing.assert_allclose(c.ca_coords, cas, atol=1e-3)
    assert c.ca_coords.dtype == np.float32 and c.residue_types.dtype == np.int64
    assert c.residue_types.tolist() == types == [0, 8, dd.UNKNOWN_RESIDUE]
    assert c.chain_ids.tolist() == ["A", "A", "B"]
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    assert c.num_ligand_atoms == len(heavy) == 10
    assert all(a.GetAtomicNum() > 1 for a in c.ligand.GetAtoms())
    np.testing.assert_allclose(c.ligand_coords, mol.GetConformer().GetPositions()[heavy], atol=1e-3)
    assert Chem.MolToSmiles(c.ligand) == Chem.MolToSmiles(Chem.MolFromSmiles("CC(=O)Nc1ccccc1"))


def test_protein_fallback_and_mol2_fallback(tmp_path, Chem):
    folder, *_ = _layout(tmp_path, Chem, protein_name="protein", sdf=False, mol2=True)
    c = dd.load_pdbbind_complex(tmp_path, "1abc")
    assert Chem.MolToSmiles(c.ligand) == "CCO" and c.num_residues == 3
    # An .sdf RDKit cannot sanitise (pentavalent carbon) falls back to the .mol2 as in DiffDock's read_mol.
    bad = Chem.MolToMolBlock(Chem.MolFromSmiles("C(C)(C)(C)(C)C", sanitize=False))
    (folder / "1abc_ligand.sdf").write_text(bad + "$$$$\n")
    assert Chem.MolToSmiles(dd.load_pdbbind_complex(tmp_path, "1abc").ligand) == "CCO"


def test_clear_errors_name_the_file(tmp_path, Chem):
    with pytest.raises(dd.DockingDataError, match="complex directory not found"):
        dd.load_pdbbind_complex(tmp_path, "9zzz")
    folder = tmp_path / "2abc"
    folder.mkdir()
    with pytest.raises(dd.DockingDataError, match=r"2abc_protein_processed\.pdb: protein file missing"):
        dd.load_pdbbind_complex(tmp_path, "2abc")
    (folder / "2abc_protein_processed.pdb").write_text(_protein_pdb()[0])
    with pytest.raises(dd.DockingDataError, match=r"2abc_ligand\.sdf: ligand file missing.*2abc_ligand\.mol2: "
                                                  r"ligand file missing"):
        dd.load_pdbbind_complex(tmp_path, "2abc")
    bad = Chem.MolToMolBlock(Chem.MolFromSmiles("C(C)(C)(C)(C)C", sanitize=False))
    (folder / "2abc_ligand.sdf").write_text(bad + "$$$$\n")
    with pytest.raises(dd.DockingDataError, match=r"2abc_ligand\.sdf: RDKit cannot sanitise"):
        dd.load_pdbbind_complex(tmp_path, "2abc")
    (folder / "2abc_ligand.sdf").write_text("not a molfile\n$$$$\n")
    with pytest.raises(dd.DockingDataError, match=r"2abc_ligand\.sdf: RDKit cannot parse"):
        dd.load_pdbbind_complex(tmp_path, "2abc")
    flat = Chem.MolToMolBlock(Chem.MolFromSmiles("CC(=O)Nc1ccccc1"))  # 2D: z = 0 everywhere
    (folder / "2abc_ligand.sdf").write_text(flat + "$$$$\n")
    with pytest.raises(dd.DockingDataError, match="not 3D"):
        dd.load_pdbbind_complex(tmp_path, "2abc")
    (folder / "2abc_protein_processed.pdb").write_text("HETATM    1  O   HOH A   1       0.000   0.000   0.000\n")
    with pytest.raises(dd.DockingDataError, match=r"2abc_protein_processed\.pdb: no protein residue"):
        dd.load_pdbbind_complex(tmp_path, "2abc")


def test_cut_ligand_from_whole_entry(tmp_path, Chem):
    _, mol = _ligand_molblock(Chem, "OC(=O)c1ccccc1")
    heavy = [a for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    pos = mol.GetConformer().GetPositions()
    text, _, _ = _protein_pdb()
    lines = [ln for ln in text.splitlines() if ln.startswith("ATOM") and "MODEL" not in ln][:8]
    for copy, chain in ((0.0, "A"), (20.0, "B")):  # two copies; the chain B one is 20 A away
        for k, a in enumerate(heavy):
            el = a.GetSymbol().upper()
            lines.append(_atom(100 + k, f"{el}{k}", "BZO", chain, 300, pos[a.GetIdx()] + copy,
                               record="HETATM", element=el))
    path = tmp_path / "entry.pdb"
    path.write_text("\n".join(lines) + "\nEND\n")
    first = dd.cut_ligand(path, "BZO", "OC(=O)c1ccccc1")
    assert Chem.MolToSmiles(first) == "O=C(O)c1ccccc1"
    np.testing.assert_allclose(first.GetConformer().GetPositions(), pos[[a.GetIdx() for a in heavy]], atol=1e-3)
    second = dd.cut_ligand(path, "BZO", "OC(=O)c1ccccc1", chain="B")
    np.testing.assert_allclose(second.GetConformer().GetPositions() - 20.0,
                               first.GetConformer().GetPositions(), atol=1e-3)
    with pytest.raises(dd.DockingDataError, match="no HETATM residue XXX"):
        dd.cut_ligand(path, "XXX", "C")
    with pytest.raises(dd.DockingDataError, match="template has 6"):
        dd.cut_ligand(path, "BZO", "c1ccccc1")


# ------------------------------------------------------------------------------- offline set

@pytest.fixture(scope="module")
def offline():
    pytest.importorskip("rdkit")
    found = dd.offline_complexes(warn=False)
    if not found.complexes:
        pytest.skip("no offline complex on this machine: " + "; ".join(f"{n}: {r}" for n, r in found.skipped))
    return found


def test_offline_complexes_are_complete_and_explained(offline):
    names = [e.name for e in dd.OFFLINE_TABLE]
    assert len(set(names)) == len(names)
    assert sorted([c.name for c in offline.complexes] + [n for n, _ in offline.skipped]) == sorted(names)
    assert all(reason for _, reason in offline.skipped)


def test_offline_complexes_are_sane(offline, Chem):
    for c in offline.complexes:
        entry = next(e for e in dd.OFFLINE_TABLE if e.name == c.name)
        assert c.num_residues > 100 and 10 <= c.num_ligand_atoms <= 60, c.name
        assert (c.residue_types < dd.UNKNOWN_RESIDUE).mean() > 0.98, c.name
        d = np.linalg.norm(c.ligand_coords[:, None] - c.ca_coords[None], axis=-1)
        assert 2.5 < d.min() < 5.0, (c.name, d.min())  # in a pocket, not clashing with a C-alpha
        assert (d.min(axis=0) < 8.0).sum() >= 15, c.name  # surrounded by residues
        np.testing.assert_allclose(c.ligand_coords, c.ligand.GetConformer().GetPositions(), atol=1e-4)
        if entry.smiles is not None:
            tmpl = Chem.MolFromSmiles(entry.smiles)
            assert Chem.MolToSmiles(c.ligand, isomericSmiles=False) == Chem.MolToSmiles(tmpl, isomericSmiles=False)


def test_crop_to_pocket_keeps_exactly_the_residues_near_the_ligand(offline):
    c = offline.complexes[0]
    esm = np.arange(c.num_residues * 3, dtype=np.float32).reshape(-1, 3)   # row i = residue i, to follow rows
    c = dd.Complex(**{**c.__dict__, "esm": esm})
    cut = dd.crop_to_pocket(c, 12.0)
    d = np.linalg.norm(c.ca_coords[:, None] - c.ligand_coords[None], axis=-1).min(1)
    kept = np.flatnonzero(d < 12.0)
    assert 0 < cut.num_residues == len(kept) < c.num_residues
    np.testing.assert_array_equal(cut.ca_coords, c.ca_coords[kept])
    np.testing.assert_array_equal(cut.residue_types, c.residue_types[kept])
    np.testing.assert_array_equal(cut.esm, esm[kept])
    if c.chain_ids is not None:
        np.testing.assert_array_equal(cut.chain_ids, c.chain_ids[kept])
    np.testing.assert_array_equal(cut.ligand_coords, c.ligand_coords)   # the ligand is untouched
    assert cut.ligand is c.ligand and c.num_residues == len(esm)        # and the input is not modified
    with pytest.raises(dd.DockingDataError, match=rf"{c.name}: no C-alpha within 0.5 A"):
        dd.crop_to_pocket(c, 0.5)
    with pytest.raises(ValueError, match="radius must be > 0"):
        dd.crop_to_pocket(c, 0.0)


def test_offline_reports_missing_sources(tmp_path):
    pytest.importorskip("rdkit")
    found = dd.offline_complexes(names=["1hpv", "0xxx"], debian_root=tmp_path, warn=False)
    assert found.complexes == []
    reasons = dict(found.skipped)
    assert "apt-get install pymol-data" in reasons["1hpv"] and reasons["0xxx"] == "not in OFFLINE_TABLE"
    with pytest.warns(UserWarning, match="1hpv"):
        dd.offline_complexes(names=["1hpv"], debian_root=tmp_path)


def test_offline_reports_missing_pip_package(monkeypatch):
    pytest.importorskip("rdkit")
    real = dd.importlib.util.find_spec
    monkeypatch.setattr(dd.importlib.util, "find_spec", lambda name: None if name == "posebusters" else real(name))
    found = dd.offline_complexes(names=["1ia1"], warn=False)
    assert found.complexes == [] and "pip package 'posebusters' not installed" in found.skipped[0][1]


# ------------------------------------------------------------------------------ featurisation

def test_ligand_features_columns(Chem):
    mol = Chem.MolFromSmiles("C[NH3+].c1ccc2c(c1)CC2")  # methylammonium + benzocyclobutene
    f = dd.ligand_features(mol)
    assert f.shape == (mol.GetNumAtoms(), 16) and f.dtype == np.int64
    assert (f >= 0).all() and (f < np.asarray(dd.LIGAND_FEATURE_DIMS)).all()
    col = {name: i for i, (name, _) in enumerate(dd.LIGAND_FEATURES)}
    c, n = f[0], f[1]
    assert c[col["atomic_num"]] == 5 and n[col["atomic_num"]] == 6  # index = Z - 1
    assert c[col["degree"]] == 4 and c[col["num_h"]] == 3  # total degree counts hydrogens
    assert n[col["formal_charge"]] == 6 and c[col["formal_charge"]] == 5  # -5..5 -> 0..10
    assert c[col["hybridisation"]] == 2  # SP3
    arom = [a.GetIdx() for a in mol.GetAtoms() if a.GetIsAromatic()]
    assert len(arom) == 6 and (f[arom, col["aromatic"]] == 1).all() and (f[arom, col["hybridisation"]] == 1).all()
    fused = [a.GetIdx() for a in mol.GetAtoms() if a.IsInRingSize(4) and a.IsInRingSize(6)]
    assert len(fused) == 2 and (f[fused, col["num_rings"]] == 2).all()
    assert (f[fused, col["in_ring4"]] == 1).all() and (f[fused, col["in_ring6"]] == 1).all()
    onehot = dd.ligand_features_onehot(f)
    assert onehot.shape == (mol.GetNumAtoms(), sum(dd.LIGAND_FEATURE_DIMS)) and (onehot.sum(1) == 16).all()
    assert dd.ligand_features(Chem.MolFromSmiles("[Og]"))[0, col["atomic_num"]] == 117
    assert dd.ligand_features(Chem.MolFromSmiles("[*]"))[0, col["atomic_num"]] == 118  # Z = 0 -> misc


@pytest.mark.parametrize("smiles, count", [
    ("CCCC", 1), ("c1ccccc1-c1ccccc1", 1), ("C1CCCCC1", 0), ("CC(=O)NC", 1),  # amide C-N counts
    ("C(=C/c1ccccc1)\\c1ccccc1", 3),  # the C=C between the rings counts: bond order is not a criterion
    ("CC#CC", 1), ("C", 0), ("CC", 0),
])
def test_rotatable_bonds_diffdock_rule(Chem, smiles, count):
    mol = Chem.MolFromSmiles(smiles)
    rot = dd.rotatable_bonds(mol)
    assert rot.shape == (count, 2)
    # Same set as "non-ring bond, both ends of heavy degree > 1" (any bond order) ...
    rule = {frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())) for b in mol.GetBonds() if not b.IsInRing()
            and b.GetBeginAtom().GetDegree() > 1 and b.GetEndAtom().GetDegree() > 1}
    assert {frozenset(map(int, uv)) for uv in rot} == rule


def test_rotatable_bonds_orientation_and_single_bond_variant(Chem):
    mol = Chem.MolFromSmiles("CCCCc1ccccc1")  # butylbenzene
    for u, v in dd.rotatable_bonds(mol):
        em = Chem.RWMol(mol)
        em.RemoveBond(int(u), int(v))
        frags = Chem.GetMolFrags(em)
        side_v = next(f for f in frags if v in f)
        side_u = next(f for f in frags if u in f)
        assert len(side_v) <= len(side_u)  # v on the smaller (rotated) side
    # ... but not the same as "single bonds only" when a multiple bond links two fragments.
    stilbene = Chem.MolFromSmiles("C(=C/c1ccccc1)\\c1ccccc1")
    single = [b for b in stilbene.GetBonds() if not b.IsInRing() and b.GetBondType() == Chem.BondType.SINGLE]
    assert len(single) == 2 and len(dd.rotatable_bonds(stilbene)) == 3


def test_rotatable_bonds_match_torsion_module(Chem, offline):
    torsion = pytest.importorskip("bench.docking.torsion")
    mols = [c.ligand for c in offline.complexes] + [Chem.MolFromSmiles(s) for s in ("CCCCc1ccccc1", "CC(=O)NC")]
    for mol in mols:
        edges = np.asarray([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]).reshape(-1, 2)
        bonds, _ = torsion.find_rotatable_bonds(edges, mol.GetNumAtoms())
        assert {frozenset(map(int, b)) for b in bonds} == {frozenset(map(int, b)) for b in dd.rotatable_bonds(mol)}


def test_etkdg_conformer(Chem):
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")  # paracetamol
    a, b, c = dd.etkdg_conformer(mol, seed=1), dd.etkdg_conformer(mol, seed=1), dd.etkdg_conformer(mol, seed=2)
    assert mol.GetNumConformers() == 0  # input untouched
    assert [x.GetSymbol() for x in a.GetAtoms()] == [x.GetSymbol() for x in mol.GetAtoms()]
    assert a.GetNumAtoms() == mol.GetNumAtoms() and a.GetNumConformers() == 1
    pa, pb, pc = (m.GetConformer().GetPositions() for m in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert np.abs(pa - pc).max() > 1e-3
    assert np.ptp(pa[:, 2]) > 0.1 or np.ptp(pa[:, 1]) > 0.1
    for bond in a.GetBonds():
        d = np.linalg.norm(pa[bond.GetBeginAtomIdx()] - pa[bond.GetEndAtomIdx()])
        assert 1.1 < d < 1.6
