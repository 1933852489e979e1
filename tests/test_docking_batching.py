"""Complex graphs as torch_geometric HeteroData and their Batch (bench.docking.score_model.complex_graph,
make_batch, DockingBatch.from_pyg): index offsets, batched = per-complex forward pass, the ligand cache."""
import numpy as np
import pytest
import torch

sm = pytest.importorskip("bench.docking.score_model")
pytest.importorskip("rdkit")
pyg_data = pytest.importorskip("torch_geometric.data")
from bench.docking.data import ligand_features, rotatable_bonds, synthetic_complex  # noqa: E402

F64 = torch.float64
# torsions, none (the methyl side of toluene is one atom), torsions: the third complex's offsets skip a
# complex without rotatable bonds
SMILES = ["CC(=O)Nc1ccc(OCC(O)CN)cc1", "Cc1ccccc1", "CCOC(=O)c1ccccc1NCCc1ccncc1"]


@pytest.fixture(scope="module")
def complexes():
    return [synthetic_complex(s, n, k, f"c{k}", shell=(4, 14)) for k, (s, n) in enumerate(zip(SMILES, (30, 12, 40)))]


def test_complex_graph_layout(complexes):
    c = complexes[0]
    g = sm.complex_graph(c, dtype=F64)
    assert isinstance(g, pyg_data.HeteroData) and g.name == c.name
    assert set(g.node_types) == {"ligand", "receptor"}
    assert set(g.edge_types) == {sm.LIG_BOND, sm.TOR_BOND}
    n, r = c.num_ligand_atoms, c.num_residues
    assert g["ligand"].num_nodes == n and g["receptor"].num_nodes == r
    assert g["ligand"].pos.shape == (n, 3) and g["ligand"].pos.dtype == F64
    assert torch.equal(g["ligand"].x, torch.as_tensor(ligand_features(c.ligand)))
    assert g["receptor"].x.shape == (r,) and "esm" not in g["receptor"]
    assert g[sm.LIG_BOND].edge_index.shape == (2, 2 * c.ligand.GetNumBonds())
    assert g[sm.LIG_BOND].edge_attr.shape == (2 * c.ligand.GetNumBonds(), sm.NUM_BOND_TYPES)
    assert torch.equal(g[sm.TOR_BOND].edge_index.T, torch.as_tensor(rotatable_bonds(c.ligand)))
    assert sm.complex_graph(complexes[1])[sm.TOR_BOND].edge_index.shape == (2, 0)
    with pytest.raises(ValueError, match="ligand pose of shape"):
        sm.complex_graph(c, ligand_pos=np.zeros((n + 1, 3)))


def test_batch_offsets_bond_and_rotatable_bond_indices(complexes):
    b = sm.make_batch(complexes, dtype=F64)
    n = [c.num_ligand_atoms for c in complexes]
    off = np.concatenate([[0], np.cumsum(n)[:-1]])
    bonds = torch.cat([torch.as_tensor(sm.ligand_bond_graph(c.ligand)[0]) + int(o) for c, o in zip(complexes, off)], 1)
    tors = [torch.as_tensor(rotatable_bonds(c.ligand)) for c in complexes]
    assert [len(t) for t in tors][1] == 0 and all(len(t) for t in tors[::2])
    assert torch.equal(b.lig_bond_index, bonds)
    assert torch.equal(b.tor_bonds, torch.cat([t + int(o) for t, o in zip(tors, off)]))
    assert b.tor_bonds.shape == (sum(map(len, tors)), 2)
    assert torch.equal(b.tor_batch, torch.cat([torch.full((len(t),), k) for k, t in enumerate(tors)]))
    assert torch.equal(b.lig_batch[b.tor_bonds[:, 0]], b.lig_batch[b.tor_bonds[:, 1]])
    assert b.lig_batch.tolist() == sum(([k] * m for k, m in enumerate(n)), [])
    assert b.rec_batch.tolist() == sum(([k] * c.num_residues for k, c in enumerate(complexes)), [])
    assert b.names == [c.name for c in complexes] and b.num_graphs == 3


def test_node_store_index_is_not_offset_by_batch():
    """Why rotatable bonds are an edge store: HeteroData.__inc__ offsets "index" keys of edge stores only."""
    graphs = []
    for n in (3, 4):
        g = pyg_data.HeteroData()
        g["ligand"].x = torch.zeros(n)
        g["ligand"].tor_index = torch.tensor([[0, 1]])
        g[sm.TOR_BOND].edge_index = torch.tensor([[0], [1]])
        graphs.append(g)
    b = pyg_data.Batch.from_data_list(graphs)
    assert b["ligand"].tor_index.tolist() == [[0, 1], [0, 1]]            # not offset
    assert b[sm.TOR_BOND].edge_index.tolist() == [[0, 3], [1, 4]]         # offset by the first ligand's 3 atoms


def test_from_pyg_reads_a_dataloader_batch(complexes):
    loader = pytest.importorskip("torch_geometric.loader")
    graphs = [sm.complex_graph(c, dtype=F64) for c in complexes[:2]]
    batches = list(loader.DataLoader(graphs, batch_size=2))
    assert len(batches) == 1
    first = sm.DockingBatch.from_pyg(batches[0])
    want = sm.make_batch(complexes[:2], dtype=F64)
    for name in ("lig_pos", "lig_x", "lig_batch", "lig_bond_index", "lig_bond_attr", "tor_bonds", "rec_pos",
                 "rec_x", "rec_batch"):
        assert torch.equal(getattr(first, name), getattr(want, name)), name
    assert first.names == want.names and first.num_graphs == 2


def test_batched_forward_equals_each_complex_alone(complexes):
    pytest.importorskip("e3nn")
    torch.manual_seed(0)
    model = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(), dtype=F64).eval()
    t = torch.tensor([0.3, 0.55, 0.8], dtype=F64)
    b = sm.make_batch(complexes, dtype=F64)
    with torch.no_grad():
        out = model(b, t)
        alone = [model(sm.make_batch([c], dtype=F64), float(t[k])) for k, c in enumerate(complexes)]
    assert out.tr.shape == (3, 3) and out.rot.shape == (3, 3) and out.tor.shape == (len(b.tor_bonds),)
    for k, one in enumerate(alone):
        torch.testing.assert_close(out.tr[k], one.tr[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out.rot[k], one.rot[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out.tor[b.tor_batch == k], one.tor, rtol=1e-10, atol=1e-12)
    assert len(alone[1].tor) == 0 and torch.isfinite(out.tor).all()


def test_ligand_cache_matches_fresh_featurisation_and_is_not_aliased(complexes):
    c = complexes[0]
    b = sm.make_batch([c], dtype=F64)
    b.lig_x.zero_()                                   # batch tensors are copies: the cache is untouched
    b.lig_bond_index.zero_()
    b.tor_bonds.zero_()
    again = sm.make_batch([c], dtype=F64)
    assert torch.equal(again.lig_x, torch.as_tensor(ligand_features(c.ligand)))
    assert torch.equal(again.lig_bond_index, torch.as_tensor(sm.ligand_bond_graph(c.ligand)[0]))
    assert torch.equal(again.tor_bonds, torch.as_tensor(rotatable_bonds(c.ligand)))


def test_scatter_mean():
    src = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=F64)
    out = sm.scatter_mean(src, torch.tensor([2, 0, 2]), 4)
    assert out.tolist() == [[3.0, 4.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]
