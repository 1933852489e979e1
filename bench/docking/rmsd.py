"""Ligand RMSD for docking (Table 4: PDBBind top-1 RMSD < 2 A) and success rates over sampled poses.

DiffDock's evaluation (gcorso/DiffDock ``evaluate.py`` and ``utils/utils.py`` / ``utils/molecules_utils.py``
``get_symmetry_rmsd``), which this module follows:

* The RMSD is symmetry-corrected, over heavy atoms (the molecule goes through ``RemoveAllHs``), computed
  *in place*: no superposition and no centring. It is ``spyrmsd.rmsd.symmrmsd(coords_ref, [pose, ...],
  atomicnums, atomicnums, adjacency, adjacency)`` with spyrmsd's defaults ``center=False, minimize=False,
  cache=True``: the minimum over the graph isomorphisms of the molecular graph (nodes = heavy atoms
  labelled by atomic number, edges = bonds of any order) of the plain RMSD.
* The call runs under ``time_limit(10)`` (SIGALRM); on a timeout or any other error DiffDock prints
  "Using non corrected RMSD" and uses the plain RMSD in the given atom order instead.
* A complex that fails altogether gets RMSD 10000 for every sample (and confidence -10000), so it counts
  as a failure in every success rate: the denominator is always the number of complexes.
* Top-1 is the sample with the highest confidence (``np.argsort(confidence)[::-1]``), top-5 the best
  RMSD among the five most confident, and the "all samples" oracle the best RMSD over all samples
  (DiffDock's ``min_rmsds_below_2``).

Here the time limit runs the spyrmsd call in a daemon worker thread (no signals, so it works off the main
thread too); on a timeout the result records the fallback and the worker is asked to stop (see
``_cancel_thread``). ``automorphism_rmsd`` is an independent cross-check of the same quantity that
enumerates the graph matches with RDKit's substructure matcher instead of spyrmsd.
"""
from __future__ import annotations

import ctypes
import dataclasses
import threading
import time
from typing import Any, Callable

import numpy as np

from bench.docking.data import import_rdkit  # RDKit on first use; MissingDockingDependency says how to install

DEFAULT_TIMEOUT_S = 10.0  # DiffDock: time_limit(10) around get_symmetry_rmsd
SUCCESS_THRESHOLD = 2.0   # Angstrom, Table 4 "top-1 RMSD < 2 A"
METHOD_SPYRMSD = "spyrmsd"
FALLBACK_PREFIX = "fallback:plain"


@dataclasses.dataclass
class RMSDResult:
    """RMSDs (Angstrom) of predicted poses to the reference and which method produced them.

    ``values`` has the shape of ``coords_pred`` without its last two axes: [K] for [K, N, 3] poses, a 0-d
    array for one [N, 3] pose. NaN for a pose with non-finite coordinates. ``method`` is ``"spyrmsd"``
    or ``"fallback:plain (<reason>)"`` (plain RMSD in the given atom order, no symmetry correction).
    """

    values: np.ndarray
    method: str

    @property
    def used_fallback(self) -> bool:
        return self.method.startswith(FALLBACK_PREFIX)


# ------------------------------------------------------------------------------------------ helpers

def _heavy_mask(mol) -> np.ndarray:
    return np.asarray([a.GetAtomicNum() != 1 for a in mol.GetAtoms()], dtype=bool)


def _as_poses(coords, n_atoms: int, what: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """float64 [K, N, 3] and the leading shape to give results back in."""
    c = np.asarray(coords, dtype=np.float64)
    if c.ndim < 2 or c.shape[-2:] != (n_atoms, 3):
        raise ValueError(f"{what}: expected [..., {n_atoms}, 3] coordinates, got shape {c.shape}")
    return c.reshape(-1, n_atoms, 3), c.shape[:-2]


def _reference(coords, n_atoms: int) -> np.ndarray:
    ref = np.asarray(coords, dtype=np.float64)
    if ref.shape != (n_atoms, 3):
        raise ValueError(f"coords_ref: expected [{n_atoms}, 3], got shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError("coords_ref: non-finite reference coordinates")
    return ref


def _prepare(mol, coords_ref, coords_pred, mol_pred):
    """Heavy-atom reference [N, 3], poses [K, N, 3], the two heavy masks and the output shape."""
    mol_pred = mol if mol_pred is None else mol_pred
    ref = _reference(coords_ref, mol.GetNumAtoms())
    pred, shape = _as_poses(coords_pred, mol_pred.GetNumAtoms(), "coords_pred")
    heavy_ref, heavy_pred = _heavy_mask(mol), _heavy_mask(mol_pred)
    if heavy_ref.sum() != heavy_pred.sum():
        raise ValueError(f"reference has {heavy_ref.sum()} heavy atoms, prediction {heavy_pred.sum()}: "
                         "not the same ligand")
    if heavy_ref.sum() == 0:
        raise ValueError("ligand has no heavy atom")
    return ref[heavy_ref], pred[:, heavy_pred], heavy_ref, heavy_pred, mol_pred, shape


def plain_rmsd(coords_ref, coords_pred) -> np.ndarray:
    """RMSD in the given atom order, no symmetry, no alignment: ``sqrt(mean_i |pred_i - ref_i|^2)``.

    coords_ref [N, 3]; coords_pred [..., N, 3] -> [...] (float64).
    """
    ref = np.asarray(coords_ref, dtype=np.float64)
    pred = np.asarray(coords_pred, dtype=np.float64)
    if ref.ndim != 2 or pred.shape[-2:] != ref.shape:
        raise ValueError(f"shapes {ref.shape} and {pred.shape} do not match ([N, 3] and [..., N, 3])")
    return np.sqrt(((pred - ref) ** 2).sum(-1).mean(-1))


# -------------------------------------------------------------------- running with a time limit

class _Cancelled(BaseException):
    """Raised asynchronously inside a worker that ran past its time limit (BaseException, so that a
    library's ``except Exception`` does not swallow it)."""


def _cancel_thread(thread: threading.Thread) -> bool:
    """Ask ``thread`` to stop by raising _Cancelled in it (CPython ``PyThreadState_SetAsyncExc``).

    Best effort: the exception is delivered the next time the thread runs Python bytecode. spyrmsd's
    networkx matcher is pure Python and its rustworkx matcher calls a Python node-match function for
    every candidate pair, so both stop promptly; a long stretch inside C code stops only after it
    returns. A thread that cannot be stopped is a daemon and does not keep the interpreter alive.
    """
    if thread.ident is None or not thread.is_alive():
        return False
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Cancelled))
    if n > 1:  # cannot happen for a valid ident; undo as the CPython docs ask
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), None)
        return False
    return n == 1


def _call_with_timeout(fn: Callable[[], Any], timeout_s: float | None) -> tuple[str, Any]:
    """("ok", value), ("error", exception) or ("timeout", None). ``timeout_s=None``: no limit, inline."""
    if timeout_s is None:
        try:
            return "ok", fn()
        except Exception as e:
            return "error", e
    if not timeout_s >= 0:
        raise ValueError(f"timeout_s must be >= 0 or None, got {timeout_s}")
    box: dict[str, Any] = {}

    def work():
        try:
            box["value"] = fn()
        except _Cancelled:
            box["cancelled"] = True
        except BaseException as e:  # handed to the caller, which records it
            box["error"] = e
        finally:
            box["finished"] = True

    worker = threading.Thread(target=work, name="bench-symmrmsd", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not box.get("finished"):
        _cancel_thread(worker)
        return "timeout", None
    if "error" in box:
        return "error", box["error"]
    return "ok", box["value"]


# ----------------------------------------------------------------------------- spyrmsd (DiffDock)

def _graph(mol, heavy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers [N] and adjacency matrix [N, N] of the heavy-atom graph (spyrmsd's from_rdkit
    builds the same two arrays with GetAtomicNum and Chem.GetAdjacencyMatrix)."""
    Chem, _ = import_rdkit()

    z = np.asarray([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=int)
    adj = np.asarray(Chem.GetAdjacencyMatrix(mol), dtype=int).reshape(len(z), len(z))
    return z[heavy], adj[np.ix_(heavy, heavy)]


def symmetry_rmsd(mol, coords_ref, coords_pred, *, mol_pred=None,
                  timeout_s: float | None = DEFAULT_TIMEOUT_S) -> RMSDResult:
    """Symmetry-corrected heavy-atom RMSD of poses to the reference, without alignment (DiffDock).

    mol: RDKit molecule of the reference; coords_ref [N, 3] in its atom order (hydrogens, if the molecule
    has any, are dropped together with their coordinates). coords_pred [K, N, 3] or [N, 3] in the atom
    order of ``mol_pred`` (default: ``mol``); a molecule with another atom order is matched through the
    graph isomorphism. Calls ``spyrmsd.rmsd.symmrmsd(..., center=False, minimize=False, cache=True)`` in
    a worker limited to ``timeout_s`` seconds (None: no limit); when spyrmsd is missing, fails (e.g.
    NonIsomorphicGraphs) or runs out of time, the values are the plain RMSD in the given atom order and
    ``method`` says ``"fallback:plain (<reason>)"``. ValueError for inconsistent shapes or atom counts.
    """
    ref, pred, heavy_ref, heavy_pred, mol_pred, shape = _prepare(mol, coords_ref, coords_pred, mol_pred)
    finite = np.isfinite(pred).all(axis=(1, 2))
    values = np.full(len(pred), np.nan)

    def done(method: str) -> RMSDResult:
        return RMSDResult(values.reshape(shape), method)

    def fallback(reason: str) -> RMSDResult:
        values[finite] = plain_rmsd(ref, pred[finite])
        return done(f"{FALLBACK_PREFIX} ({reason})")

    try:
        from spyrmsd import rmsd as spy_rmsd
    except ImportError as e:
        return fallback(f"spyrmsd not installed: {e}")
    if not finite.any():
        return done(METHOD_SPYRMSD)
    z_ref, adj_ref = _graph(mol, heavy_ref)
    z_pred, adj_pred = _graph(mol_pred, heavy_pred)
    poses = [p for p in pred[finite]]

    def job():
        return spy_rmsd.symmrmsd(ref, poses, z_ref, z_pred, adj_ref, adj_pred,
                                 center=False, minimize=False, cache=True)

    start = time.perf_counter()
    status, out = _call_with_timeout(job, timeout_s)
    if status == "timeout":
        return fallback(f"timeout: spyrmsd ran past {timeout_s:g} s")
    if status == "error":
        return fallback(f"spyrmsd failed after {time.perf_counter() - start:.2f} s: "
                        f"{type(out).__name__}: {out}")
    out = np.asarray(out, dtype=np.float64).reshape(-1)
    if len(out) != int(finite.sum()) or not np.isfinite(out).all():
        return fallback(f"spyrmsd returned {out!r} for {int(finite.sum())} poses")
    values[finite] = out
    return done(METHOD_SPYRMSD)


# ------------------------------------------------------------------ RDKit automorphisms (cross-check)

def _plain_graph(mol, heavy: np.ndarray, query: bool):
    """Heavy-atom graph as an RDKit molecule: atoms carry only their atomic number, every bond is
    single (bond orders, charges, aromaticity, isotopes and chirality play no part, as in spyrmsd's
    graph). As a query (``query=True``) each atom is an atomic-number query, so a substructure match is a
    match of labelled graphs and nothing else (no ring-membership or charge conditions)."""
    Chem, _ = import_rdkit()
    from rdkit.Chem import rdqueries

    index = np.cumsum(heavy) - 1
    rw = Chem.RWMol()
    for atom in mol.GetAtoms():
        if heavy[atom.GetIdx()]:
            z = atom.GetAtomicNum()
            rw.AddAtom(rdqueries.AtomNumEqualsQueryAtom(z) if query else Chem.Atom(z))
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if heavy[i] and heavy[j]:
            rw.AddBond(int(index[i]), int(index[j]), Chem.BondType.SINGLE)
    return rw.GetMol()


def graph_matches(mol, mol_pred=None, max_matches: int = 1_000_000) -> np.ndarray:
    """[M, N] int64: every isomorphism of the heavy-atom graph of ``mol_pred`` (default ``mol``) onto
    that of ``mol``, row m mapping predicted atom j to reference atom ``row[j]`` (heavy-atom indices).

    ``GetSubstructMatches(query, uniquify=False, useChirality=False, maxMatches=max_matches)`` on the
    plain graphs of ``_plain_graph``. With ``mol_pred=None`` these are the automorphisms of ``mol``.
    ValueError when the graphs are not isomorphic; RuntimeError when ``max_matches`` is reached (the
    enumeration may be incomplete, so a minimum over it could be too high).
    """
    mol_pred = mol if mol_pred is None else mol_pred
    heavy_ref, heavy_pred = _heavy_mask(mol), _heavy_mask(mol_pred)
    target = _plain_graph(mol, heavy_ref, query=False)
    query = _plain_graph(mol_pred, heavy_pred, query=True)
    if (target.GetNumAtoms(), target.GetNumBonds()) != (query.GetNumAtoms(), query.GetNumBonds()):
        raise ValueError(f"heavy-atom graphs differ: {target.GetNumAtoms()} atoms / {target.GetNumBonds()} "
                         f"bonds vs {query.GetNumAtoms()} / {query.GetNumBonds()}")
    matches = target.GetSubstructMatches(query, uniquify=False, useChirality=False, maxMatches=int(max_matches))
    if not matches:
        raise ValueError("heavy-atom graphs are not isomorphic")
    if len(matches) >= max_matches:
        raise RuntimeError(f"{len(matches)} graph matches, the limit max_matches={max_matches}: the "
                           "enumeration may be incomplete; raise max_matches")
    # Same atom and bond counts: a substructure match is a bijection on atoms that maps bonds onto bonds.
    return np.asarray(matches, dtype=np.int64).reshape(len(matches), query.GetNumAtoms())


def automorphism_rmsd(mol, coords_ref, coords_pred, *, mol_pred=None, max_matches: int = 1_000_000,
                      chunk: int = 4096) -> np.ndarray:
    """Symmetry-corrected heavy-atom RMSD without alignment, from RDKit graph matches (``graph_matches``):
    ``min_m sqrt(mean_j |pred_j - ref_{m(j)}|^2)``. Same arguments and result shape as ``symmetry_rmsd``
    (values only; NaN for a pose with non-finite coordinates); independent of spyrmsd."""
    ref, pred, _, _, mol_pred, shape = _prepare(mol, coords_ref, coords_pred, mol_pred)
    matches = graph_matches(mol, mol_pred, max_matches=max_matches)
    out = np.full(len(pred), np.nan)
    for k, pose in enumerate(pred):
        if not np.isfinite(pose).all():
            continue
        best = np.inf
        for start in range(0, len(matches), chunk):
            permuted = ref[matches[start:start + chunk]]  # [m, N, 3]: reference atom matched to pose atom j
            best = min(best, float(((permuted - pose) ** 2).sum(-1).mean(-1).min()))
        out[k] = np.sqrt(best)
    return out.reshape(shape)


# ------------------------------------------------------------------------------------ success rates

def success_rates(rmsds, ranking=None, *, threshold: float = SUCCESS_THRESHOLD, top_k: int = 5) -> dict[str, Any]:
    """Fractions of complexes docked within ``threshold`` Angstrom (DiffDock's evaluate.py metrics).

    rmsds: [n_complexes, n_samples]; NaN (or inf) marks a failed sample, an all-NaN row a failed complex.
    ranking: [n_complexes, n_samples] confidence, higher = more confident; NaN ranks last. Ties keep the
    sample order (stable sort). None: the samples' own order (DiffDock without a confidence model).

    Returns a dict of fractions in [0, 1] (denominator: every complex; failures are never dropped):
      top1          - the most confident sample is < threshold
      top{top_k}    - the best of the ``top_k`` most confident samples is (NaN when n_samples < top_k)
      all_samples   - any sample is (oracle; DiffDock's min_rmsds_below_2)
      per_sample    - fraction of all (complex, sample) pairs below (DiffDock's rmsds_below_2)
    the medians over complexes (Angstrom; a failed sample or complex counts as +inf, the worst):
      median_top1   - of the most confident sample's RMSD (DiffDock's reported median RMSD)
      median_best   - of the best sample's RMSD
    and counts n_complexes, n_samples, n_failed_complexes, n_failed_samples, threshold.
    """
    r = np.asarray(rmsds, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] == 0 or r.shape[1] == 0:
        raise ValueError(f"rmsds: expected a non-empty [n_complexes, n_samples] array, got shape {r.shape}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    n, k = r.shape
    if ranking is None:
        order = np.broadcast_to(np.arange(k), r.shape)
    else:
        conf = np.asarray(ranking, dtype=np.float64)
        if conf.shape != r.shape:
            raise ValueError(f"ranking has shape {conf.shape}, rmsds {r.shape}")
        conf = np.where(np.isnan(conf), -np.inf, conf)
        order = np.argsort(-conf, axis=1, kind="stable")  # most confident first
    worst_last = np.nan_to_num(r, nan=np.inf)      # a failed sample is the worst
    hit = worst_last < threshold  # NaN / inf never succeed
    ranked = np.take_along_axis(hit, order, axis=1)
    failed_sample = ~np.isfinite(r)
    return {
        "top1": float(ranked[:, 0].mean()),
        f"top{top_k}": float(ranked[:, :top_k].any(axis=1).mean()) if k >= top_k else float("nan"),
        "all_samples": float(hit.any(axis=1).mean()),
        "per_sample": float(hit.mean()),
        "median_top1": float(np.median(np.take_along_axis(worst_last, order[:, :1], axis=1))),
        "median_best": float(np.median(worst_last.min(axis=1))),
        "n_complexes": int(n),
        "n_samples": int(k),
        "n_failed_complexes": int(failed_sample.all(axis=1).sum()),
        "n_failed_samples": int(failed_sample.sum()),
        "threshold": float(threshold),
    }


__all__ = [
    "DEFAULT_TIMEOUT_S", "FALLBACK_PREFIX", "METHOD_SPYRMSD", "RMSDResult", "SUCCESS_THRESHOLD",
    "automorphism_rmsd", "graph_matches", "plain_rmsd", "success_rates", "symmetry_rmsd",
]
