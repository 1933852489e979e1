"""Per-residue ESM embeddings for DiffDock-S: Complex.esm, load_esm_embeddings, attach_esm, make_batch."""
import argparse
import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
from bench.docking.data import (Complex, DockingDataError, attach_esm, load_esm_embeddings,  # noqa: E402
                                synthetic_complex)

D = 6  # embedding width in the tests (ESM2 650M: 1280)


@pytest.fixture(scope="module")
def pair():
    return [synthetic_complex("CC(=O)Nc1ccc(OCC(O)CN)cc1", 12, 0, "1abc", shell=(4, 14)),
            synthetic_complex("CCOC(=O)c1ccccc1NCCc1ccncc1", 9, 1, "2xyz", shell=(4, 14))]


def _emb(c, seed=0, d=D):
    return np.random.default_rng(seed).normal(size=(c.num_residues, d)).astype(np.float32)


def _with_chains(c, chains):
    return dataclasses.replace(c, chain_ids=np.asarray(list(chains)))


# ---------------------------------------------------------------------------------------- Complex.esm

def test_complex_validates_esm(pair):
    c = pair[0]
    ok = dataclasses.replace(c, esm=_emb(c).astype(np.float64))
    assert ok.esm.dtype == np.float32 and ok.esm.shape == (12, D)
    assert c.esm is None                                            # default: no embeddings
    with pytest.raises(DockingDataError, match=r"1abc: ESM embeddings for 11 residues, but the complex has 12"):
        dataclasses.replace(c, esm=_emb(c)[:11])
    with pytest.raises(DockingDataError, match=r"1abc: .*\[residues, dim\]"):
        dataclasses.replace(c, esm=np.zeros(12, np.float32))
    bad = _emb(c)
    bad[4, 2] = np.nan
    with pytest.raises(DockingDataError, match=r"1abc: .*NaN/inf in 1 of 12 residues \(first: residue 4\)"):
        dataclasses.replace(c, esm=bad)


# ------------------------------------------------------------------------------------------ files

@pytest.mark.parametrize("fmt", ["pt-tensor", "pt-numpy", "npz"])
def test_round_trip(pair, tmp_path, fmt):
    if fmt == "pt-numpy" and not hasattr(torch.serialization, "safe_globals"):
        pytest.skip("numpy arrays in a weights-only .pt need torch >= 2.5")
    want = {c.name: _emb(c, k) for k, c in enumerate(pair)}
    if fmt == "npz":
        path = tmp_path / "esm.npz"
        np.savez(path, **want)
    else:
        path = tmp_path / "esm.pt"
        torch.save({k: torch.from_numpy(v) if fmt == "pt-tensor" else v for k, v in want.items()}, path)
    got = load_esm_embeddings(path)
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert isinstance(got[k], np.ndarray)
        np.testing.assert_array_equal(got[k], v)
    out = attach_esm(pair, got)
    assert [c.name for c in out] == [c.name for c in pair] and all(c.esm is None for c in pair)  # copies
    for c in out:
        np.testing.assert_array_equal(c.esm, want[c.name])


def test_pt_bfloat16_and_str_path(pair, tmp_path):
    path = tmp_path / "esm.pt"
    torch.save({"1abc": torch.ones(12, D, dtype=torch.bfloat16)}, path)
    got = load_esm_embeddings(str(path))
    assert got["1abc"].dtype == np.float32 and np.all(got["1abc"] == 1.0)


def test_file_errors(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_esm_embeddings(missing)
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(DockingDataError, match="bad.pt: cannot read"):
        load_esm_embeddings(tmp_path / "bad.pt")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DockingDataError, match="bad.npz"):
        load_esm_embeddings(tmp_path / "bad.npz")
    torch.save([torch.zeros(3, 2)], tmp_path / "list.pt")
    with pytest.raises(DockingDataError, match="holds a list"):
        load_esm_embeddings(tmp_path / "list.pt")
    torch.save({"1abc": {"representations": {33: torch.zeros(3, 2)}}}, tmp_path / "raw.pt")
    with pytest.raises(DockingDataError, match="'1abc': a dict"):
        load_esm_embeddings(tmp_path / "raw.pt")
    torch.save({}, tmp_path / "empty.pt")
    with pytest.raises(DockingDataError, match="no embeddings"):
        load_esm_embeddings(tmp_path / "empty.pt")
    (tmp_path / "esm.h5").write_bytes(b"")
    with pytest.raises(DockingDataError, match="not supported"):
        load_esm_embeddings(tmp_path / "esm.h5")


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"1abc": argparse.Namespace(x=1)}, tmp_path / "evil.pt")  # weights_only refuses arbitrary classes
    with pytest.raises(DockingDataError, match="weights-only"):
        load_esm_embeddings(tmp_path / "evil.pt")


# ------------------------------------------------------------------------------------ attach_esm

def test_per_chain_keys_are_concatenated_in_index_order(pair):
    c = _with_chains(pair[0], "AAAABBBBBCCC")
    e = _emb(c)
    # Inserted out of order; chain_3 is an empty chain (DiffDock numbers chains without residues too).
    emb = {"1abc_chain_2": e[9:], "1abc_chain_0": e[:4], "1abc_chain_3": np.zeros((0, D)), "1abc_chain_1": e[4:9],
           "1abcd_chain_0": np.zeros((99, D))}                     # another complex whose name starts alike
    (out,) = attach_esm([c], emb)
    np.testing.assert_array_equal(out.esm, e)


def test_chain_index_sorted_numerically(pair):
    names = "ABCDEFGHIJK"                                     # 11 chains: chain_10 must come after chain_9
    c = _with_chains(pair[0], names + "K")                    # 12 residues, the last chain has two
    e = _emb(c)
    emb = {f"1abc_chain_{i}": e[i:i + 1] for i in range(10)} | {"1abc_chain_10": e[10:]}
    (out,) = attach_esm([c], dict(sorted(emb.items())))       # lexicographic order in the file
    np.testing.assert_array_equal(out.esm, e)


@pytest.mark.parametrize("indices", [(0, 1, 3), (0, 1, 30), (2, 5, 7), (0, 9, 10)])
def test_gaps_in_chain_indices(pair, indices):
    c = _with_chains(pair[0], "AAAABBBBBCCC")
    e = _emb(c)
    emb = dict(zip((f"1abc_chain_{i}" for i in indices), (e[:4], e[4:9], e[9:])))
    (out,) = attach_esm([c], emb)
    np.testing.assert_array_equal(out.esm, e)


def test_non_contiguous_chain_gets_its_own_rows(pair):
    c = _with_chains(pair[1], "AABBBAACC")                    # chain A reappears after B
    a, b, cc = (np.full((n, D), v, np.float32) for n, v in ((4, 1.0), (3, 2.0), (2, 3.0)))
    (out,) = attach_esm([c], {"2xyz_chain_0": a, "2xyz_chain_1": b, "2xyz_chain_2": cc})
    assert out.esm[:, 0].tolist() == [1, 1, 2, 2, 2, 1, 1, 3, 3]


def test_plain_key_wins_over_chain_keys(pair):
    c = _with_chains(pair[0], "A" * 12)
    e = _emb(c)
    (out,) = attach_esm([c], {"1abc": e, "1abc_chain_0": np.zeros((5, D))})
    np.testing.assert_array_equal(out.esm, e)


def test_length_mismatch_names_complex_and_counts(pair):
    c = pair[0]
    with pytest.raises(DockingDataError, match=r"^1abc: .*has 10 rows, expected 12"):
        attach_esm([c], {"1abc": _emb(c)[:10]})
    with pytest.raises(DockingDataError,
                       match=r"^1abc: .*hold 14 rows \(1abc_chain_0: 8, 1abc_chain_1: 6\), expected 12"):
        attach_esm([c], {"1abc_chain_0": np.zeros((8, D)), "1abc_chain_1": np.zeros((6, D))})
    extra = {"1abc_chain_0": np.zeros((5, D)), "1abc_chain_1": np.zeros((7, D)), "1abc_chain_3": np.zeros((2, D))}
    with pytest.raises(DockingDataError, match=r"^1abc: .*hold 14 rows .*1abc_chain_3: 2\), expected 12"):
        attach_esm([c], extra)                                     # a chain after a gap is not ignored
    chained = _with_chains(c, "A" * 5 + "B" * 7)
    with pytest.raises(DockingDataError, match=r"^1abc: .*do not match its chains \{'A': 5, 'B': 7\}"):
        attach_esm([chained], {"1abc_chain_0": np.zeros((7, D)), "1abc_chain_1": np.zeros((5, D))})


def test_missing_key_names_complex(pair):
    with pytest.raises(DockingDataError, match=r"^2xyz: no ESM embedding .* its 9 residues"):
        attach_esm(pair, {"1abc": _emb(pair[0])})
    with pytest.raises(DockingDataError, match=r"^1abc: ESM embedding '1abc' has shape \(12,\)"):
        attach_esm(pair[:1], {"1abc": np.zeros(12)})


def test_width_checks(pair):
    emb = {"1abc": _emb(pair[0], d=D), "2xyz": _emb(pair[1], d=D + 1)}
    with pytest.raises(DockingDataError, match=rf"^2xyz: ESM embeddings of width {D + 1}, expected {D}"):
        attach_esm(pair, emb)
    with pytest.raises(DockingDataError, match=rf"^1abc: ESM embeddings of width {D}, expected 1280"):
        attach_esm(pair, emb, dim=1280)
    assert attach_esm(pair[1:], emb, dim=D + 1)[0].esm.shape == (9, D + 1)


# ------------------------------------------------------------------------------------ make_batch

@pytest.fixture(scope="module")
def with_esm(pair):
    return attach_esm(pair, {c.name: _emb(c, k) for k, c in enumerate(pair)})


def test_make_batch_uses_complex_esm(pair, with_esm):
    sm = pytest.importorskip("bench.docking.score_model")
    b = sm.make_batch(with_esm, dtype=torch.float64)
    assert b.rec_esm.dtype == torch.float64
    assert torch.equal(b.rec_esm, torch.from_numpy(np.concatenate([c.esm for c in with_esm])).double())
    assert sm.make_batch(pair).rec_esm is None                          # none have esm: none in the batch
    explicit = [np.ones((c.num_residues, 3)) for c in with_esm]         # the argument overrides Complex.esm
    assert torch.all(sm.make_batch(with_esm, rec_esm=explicit).rec_esm == 1.0)
    with pytest.raises(ValueError, match="1 entries for 2 complexes"):
        sm.make_batch(with_esm, rec_esm=explicit[:1])


def test_make_batch_rejects_mixed_and_unequal_widths(pair, with_esm):
    sm = pytest.importorskip("bench.docking.score_model")
    with pytest.raises(ValueError, match=r"^2xyz: no ESM embeddings, but 1 of the 2"):
        sm.make_batch([with_esm[0], pair[1]])
    with pytest.raises(ValueError, match=r"^1abc: no ESM embeddings"):
        sm.make_batch([pair[0], with_esm[1]])
    wide = dataclasses.replace(with_esm[1], esm=_emb(pair[1], d=D + 2))
    with pytest.raises(ValueError, match=rf"2xyz: ESM embeddings of width {D + 2}, but 1abc's are {D} wide"):
        sm.make_batch([with_esm[0], wide])


def test_tiny_model_consumes_esm(with_esm):
    sm = pytest.importorskip("bench.docking.score_model")
    pytest.importorskip("e3nn")
    torch.manual_seed(0)
    model = sm.TensorProductScoreModel(sm.ScoreModelConfig.tiny(esm_dim=D), dtype=torch.float64).eval()
    b = sm.make_batch(with_esm, dtype=torch.float64)
    with torch.no_grad():
        out = model(b, 0.6)
        shifted = dataclasses.replace(b, rec_esm=b.rec_esm + 1.0)
        out2 = model(shifted, 0.6)
    assert out.tr.shape == (2, 3) and torch.isfinite(out.tr).all() and torch.isfinite(out.rot).all()
    assert not torch.allclose(out.tr, out2.tr)                         # the embeddings reach the scores
    with pytest.raises(ValueError, match=f"rec_esm \\[R, {D}\\]"):
        model(dataclasses.replace(b, rec_esm=None), 0.6)


def test_complex_constructor_keyword(pair):
    c = pair[1]
    made = Complex(name=c.name, ca_coords=c.ca_coords, residue_types=c.residue_types, ligand=c.ligand,
                   ligand_coords=c.ligand_coords, source=c.source, esm=_emb(c))
    assert made.esm.shape == (9, D) and made.chain_ids is None
