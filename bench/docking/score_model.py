"""DiffDock-S score model: an SE(3)-equivariant tensor-product network over ligand atoms and receptor residues.

DiffDock (Corso et al., ICLR 2023) as trained for DisCo-Diff's Table 4 ("DiffDock-S", DisCo-Diff App. E:
5 convolution layers, 24 scalar + 6 vector features, spherical harmonics up to l = 1). Written from the
facts of these files (their code is not copied):

* gcorso/disco-diffdock ``models/score_model.py`` (TensorProductScoreModel), ``models/tensor_layers.py``
  (TensorProductConvLayer, GaussianSmearing, get_irrep_seq), ``models/layers.py`` (AtomEncoder, FCBlock),
  ``utils/model_utils.py`` (get_model: which arguments reach the model), ``datasets_utils/process_mols.py``
  (bond one-hot, C-alpha graph), ``workdir/diffdockS_score_model/model_parameters.yml`` (DiffDock-S hyper-
  parameters: ns 24, nv 6, 5 layers, sh_lmax 1, sigma/distance embeddings 32, embedding_scale 1000,
  max_radius 5, receptor_radius 15, c_alpha_max_neighbors 24, cross_max_distance 80, dynamic_max_cross,
  dropout 0.1, batch norm on, tor_sigma_min 0.03);
* gcorso/DiffDock v1.0-era ``models/score_model.py`` (the same heads; ``utils/diffusion_utils.py``
  get_timestep_embedding / sinusoidal_embedding), ``workdir/paper_score_model/model_parameters.yml``.

Architecture (disco-diffdock layout, the code that produced Table 4):
  nodes   ligand atoms: sum of 16 categorical embeddings (data.LIGAND_FEATURES), then
          Linear([emb, t-embedding, extra]) -> ns;   receptor residues: residue-type embedding, then
          Linear([emb, t-embedding, esm, extra]) -> ns                               (AtomEncoder)
  edges   ligand: chemical bonds (both directions, one-hot bond type) + radius graph (lig_max_radius);
          receptor: C-alpha radius graph (rec_radius, at most rec_max_neighbors nearest);
          cross: every ligand atom-residue pair closer than 3 sigma_tr + 20 A (dynamic_max_cross) or
          cross_max_distance; each edge type has its own MLP embedding [bond?, t-emb, Gaussian(dist)] -> ns
  layers  one graph over all nodes; per layer an e3nn FullyConnectedTensorProduct of the sender's features
          with the edge's spherical harmonics, weights from a per-edge-type radial MLP on
          [edge emb, receiver scalars, sender scalars] (3 ns -> 3 ns -> weight_numel), mean over incoming
          edges, optional e3nn BatchNorm, residual (zero-padded) update. Irreps per layer (first order):
          ns x0e -> +nv x1o -> +nv x1e -> +ns x0o (get_irrep_seq).
  heads   translation / rotation: a TP convolution from ligand atoms to the ligand centre (out 2x1o + 2x1e),
          norm re-scaled by an MLP of [norm, t-emb]; torsion: per rotatable bond, a TP convolution over
          atoms within lig_max_radius of the bond centre, with the edge harmonics multiplied (FullTensorProduct)
          by the l = 2 harmonics of the bond axis, out ns x0o + ns x0e -> tanh MLP -> 1 scalar.
  scaling tr / sigma_tr; rot * so3.score_norm(sigma_rot); tor * sqrt(torus E[score^2](sigma_tor)).

Deliberate differences, each documented where it happens: receptor residue types use data.py's 21 classes
(DiffDock's list has 38 entries, variants as separate rows: 17 x ns fewer parameters); neighbour caps keep
the nearest neighbours (torch-cluster keeps the first found); the translation score is the sum of the two
1o outputs and the rotation score of the two 1e outputs (DiffDock adds 1o_0 + 1e_0 and 1o_1 + 1e_1, which
is SO(3)- but not O(3)-equivariant; ``diffdock_output_slices=True`` restores that); DiffDock v1.0 (not
disco-diffdock) instead kept four separate convolutions per layer (ligand, receptor, both cross directions),
each with its own mean, and no receptor update in the last layer; not implemented.

Edge convention everywhere: ``edge_index[0]`` is the receiving node i, ``edge_index[1]`` the sending node j;
edge vectors are x_j - x_i (DiffDock scatters the message of ``edge_dst`` onto ``edge_src``).
"""
from __future__ import annotations

import dataclasses
import math
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench.docking import so3, torus
from bench.docking.data import (LIGAND_FEATURE_DIMS, UNKNOWN_RESIDUE, Complex, MissingDockingDependency,
                                INSTALL_HINT, ligand_features, rotatable_bonds)
from bench.docking.noise import PoseNoiseConfig, exp_sigma, t_to_sigma


def _e3nn():
    """(o3, BatchNorm) from e3nn, imported on first use."""
    try:
        from e3nn import o3
        from e3nn.nn import BatchNorm
    except ImportError as e:  # pragma: no cover
        raise MissingDockingDependency(
            f"bench.docking.score_model needs e3nn; install the docking extra: {INSTALL_HINT}") from e
    return o3, BatchNorm


def _pyg():
    """torch_geometric's (HeteroData, Batch, scatter), imported on first use: importing torch_geometric takes
    seconds, and the CLI imports the docking modules even for the image harnesses."""
    try:
        from torch_geometric.data import Batch, HeteroData
        from torch_geometric.utils import scatter
    except ImportError as e:  # pragma: no cover
        raise MissingDockingDependency(
            f"bench.docking.score_model needs torch_geometric; install the docking extra: {INSTALL_HINT}") from e
    return HeteroData, Batch, scatter


# DiffDock-S's noise ranges (disco-diffdock workdir/diffdockS_score_model/model_parameters.yml): as DiffDock
# v1.0 (noise.PoseNoiseConfig) except tor_sigma_min = 0.03 (v1.0's paper_score_model: 0.0314).
DIFFDOCK_S_NOISE = PoseNoiseConfig(tor_sigma_min=0.03, rot_g="consistent")  # disco-diffdock utils/sampling.py: rot_g = sigma sqrt(2 ln(max/min))
NUM_RESIDUE_TYPES = UNKNOWN_RESIDUE + 1   # data.AMINO_ACIDS + unknown = 21
NUM_BOND_TYPES = 4                        # SINGLE, DOUBLE, TRIPLE, AROMATIC (process_mols.py `bonds`)


@dataclass(frozen=True)
class ScoreModelConfig:
    ns: int = 24                        # scalar channels
    nv: int = 6                         # vector channels per parity
    num_conv_layers: int = 5
    sh_lmax: int = 1
    use_second_order_repr: bool = False  # add l = 2 features (get_irrep_seq); DiffDock-S: False
    sigma_embed_dim: int = 32
    embedding_scale: float = 1000.0     # sinusoidal embedding of embedding_scale * t (DiffDock-S: 1000)
    distance_embed_dim: int = 32        # Gaussians for ligand, receptor and centre distances
    cross_distance_embed_dim: int = 32
    lig_max_radius: float = 5.0         # ligand radius graph, bond-centre graph, Gaussians 0..5 (max_radius)
    lig_max_neighbors: int = 32         # torch_cluster.radius_graph default
    rec_radius: float = 15.0            # C-alpha graph cutoff (receptor_radius)
    rec_max_neighbors: int = 24         # c_alpha_max_neighbors
    rec_max_radius: float = 30.0        # receptor Gaussians 0..30 (rec_max_radius default; get_model omits it)
    cross_max_distance: float = 80.0    # cross Gaussians 0..80; also the cutoff when not dynamic
    dynamic_max_cross: bool = True      # cross cutoff 3 sigma_tr + 20 A per complex
    center_max_distance: float = 30.0   # centre Gaussians 0..30
    bond_max_neighbors: int = 32        # atoms per bond centre (torch_cluster.radius default)
    batch_norm: bool = True
    dropout: float = 0.1
    scale_by_sigma: bool = True
    no_torsion: bool = False
    num_residue_types: int = NUM_RESIDUE_TYPES
    esm_dim: int = 0                    # ESM embedding per residue (DiffDock-S: 1280 with ESM; 0 = none)
    extra_node_dim: int = 0             # DisCo-DiffDock hook: per-node latent input (ligand and receptor)
    extra_on_edges: bool = True         # also feed [extra_i, extra_j] to ligand/receptor edge MLPs (disco)
    diffdock_output_slices: bool = False  # True: tr = 1o_0 + 1e_0, rot = 1o_1 + 1e_1 as DiffDock
    noise: PoseNoiseConfig = field(default_factory=lambda: DIFFDOCK_S_NOISE)

    def __post_init__(self):
        for name in ("ns", "nv", "num_conv_layers", "sigma_embed_dim", "distance_embed_dim",
                     "cross_distance_embed_dim", "num_residue_types"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sh_lmax < 1:
            raise ValueError(f"sh_lmax must be >= 1 (vectors need l = 1), got {self.sh_lmax}")
        if self.use_second_order_repr and self.sh_lmax < 2:
            raise ValueError("use_second_order_repr needs sh_lmax >= 2")
        if self.sigma_embed_dim < 2:
            raise ValueError("sigma_embed_dim must be >= 2 (sin and cos halves)")
        for name in ("esm_dim", "extra_node_dim"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("lig_max_radius", "rec_radius", "rec_max_radius", "cross_max_distance",
                     "center_max_distance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def small(cls, **overrides) -> "ScoreModelConfig":
        """DiffDock-S as trained for DisCo-Diff Table 4 (the defaults)."""
        return cls(**overrides)

    paper = small

    @classmethod
    def tiny(cls, **overrides) -> "ScoreModelConfig":
        """For tests: 3 layers (all four irrep types appear), 8/2 channels, no batch norm, no dropout."""
        kw = dict(ns=8, nv=2, num_conv_layers=3, sigma_embed_dim=8, distance_embed_dim=8,
                  cross_distance_embed_dim=8, batch_norm=False, dropout=0.0)
        kw.update(overrides)
        return cls(**kw)


# ----------------------------------------------------------------------------------------- graphs

def graph_segments(batch: torch.Tensor | None, n: int, num_graphs: int | None = None) -> list[tuple[int, int]]:
    """[(start, end)] per graph of a sorted batch vector of n entries (one segment when batch is None)."""
    if batch is None:
        return [(0, n)]
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch vector must be sorted (nodes of one graph contiguous)")
    counts = torch.bincount(batch, minlength=num_graphs or 0).tolist()
    ptr = np.concatenate([[0], np.cumsum(counts)]).tolist()
    return list(zip(ptr[:-1], ptr[1:]))


# Radius graphs in plain torch (per graph: exact cdist, then the nearest max_neighbors): torch_geometric's
# radius / radius_graph / knn need the torch-cluster extension, which has no wheel for this torch here.
def _radius_block(x: torch.Tensor, y: torch.Tensor, r: float, max_neighbors: int | None,
                  exclude_self: bool) -> torch.Tensor:
    """[2, E] (i into y, j into x) with |x_j - y_i| < r, at most max_neighbors nearest j per i."""
    if len(x) == 0 or len(y) == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=x.device)
    with torch.no_grad():
        d = torch.cdist(y.detach(), x.detach(), compute_mode="donot_use_mm_for_euclid_dist")  # exact
        if exclude_self:
            d.fill_diagonal_(math.inf)
        d = torch.where(d < r, d, torch.full_like(d, math.inf))
        if max_neighbors is not None and max_neighbors < d.shape[1]:
            vals, idx = torch.topk(d, max_neighbors, dim=1, largest=False)   # nearest first
            keep = torch.isfinite(vals)
            i = torch.arange(len(y), device=x.device)[:, None].expand_as(idx)[keep]
            j = idx[keep]
            order = torch.argsort(i * len(x) + j)                             # row-major, like nonzero
            return torch.stack([i[order], j[order]])
        return torch.nonzero(torch.isfinite(d)).T.contiguous()


def _graph_radius(r: float | torch.Tensor, b: int) -> float:
    """Cutoff of graph b: r itself, or r[b] for a per-graph tensor."""
    return float(r[b]) if torch.is_tensor(r) and r.ndim > 0 else float(r)


def radius_graph(x: torch.Tensor, r: float | torch.Tensor, max_neighbors: int | None = None,
                 batch: torch.Tensor | None = None) -> torch.Tensor:
    """Edges [2, E] long within a point set x [N, 3]: (i, j) for j != i in i's graph with |x_j - x_i| < r;
    when max_neighbors is set, each i keeps its max_neighbors nearest such j (so the graph may be
    asymmetric). batch [N] (sorted) splits x into graphs; r a float or a per-graph tensor [B]."""
    out = []
    for b, (s, e) in enumerate(graph_segments(batch, len(x))):
        out.append(_radius_block(x[s:e], x[s:e], _graph_radius(r, b), max_neighbors, exclude_self=True) + s)
    return torch.cat(out, 1) if out else torch.zeros(2, 0, dtype=torch.long, device=x.device)


def radius(x: torch.Tensor, y: torch.Tensor, r: float | torch.Tensor, max_neighbors: int | None = None,
           batch_x: torch.Tensor | None = None, batch_y: torch.Tensor | None = None,
           num_graphs: int | None = None) -> torch.Tensor:
    """Edges [2, E] long from query points y [M, 3] to points x [N, 3]: (i, j), i into y, j into x, same
    graph, |x_j - y_i| < r (r float or per-graph [B]); at most max_neighbors nearest j per i
    (torch_cluster.radius(x, y, r) returns the same [y index, x index] layout)."""
    if (batch_x is None) != (batch_y is None):
        raise ValueError("give both batch_x and batch_y, or neither")
    if batch_x is None:
        return _radius_block(x, y, _graph_radius(r, 0), max_neighbors, exclude_self=False)
    ng = num_graphs or int(max(batch_x.max().item() if batch_x.numel() else -1,
                               batch_y.max().item() if batch_y.numel() else -1)) + 1
    sx, sy = graph_segments(batch_x, len(x), ng), graph_segments(batch_y, len(y), ng)
    out = []
    for b, ((xs, xe), (ys, ye)) in enumerate(zip(sx, sy)):
        e = _radius_block(x[xs:xe], y[ys:ye], _graph_radius(r, b), max_neighbors, exclude_self=False)
        out.append(e + torch.tensor([[ys], [xs]], device=e.device))
    return torch.cat(out, 1) if out else torch.zeros(2, 0, dtype=torch.long, device=x.device)


# ----------------------------------------------------------------------------------------- batches

_BOND_INDEX = {"SINGLE": 0, "DOUBLE": 1, "TRIPLE": 2, "AROMATIC": 3}


def ligand_bond_graph(mol) -> tuple[np.ndarray, np.ndarray]:
    """Chemical bonds in both directions [2, 2 nb] and bond-type indices [2 nb] (process_mols.get_lig_graph:
    SINGLE 0, DOUBLE 1, TRIPLE 2, AROMATIC 3; any other type -> 0)."""
    rows, cols, types = [], [], []
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        t = _BOND_INDEX.get(str(bond.GetBondType()), 0)
        rows += [a, b]
        cols += [b, a]
        types += [t, t]
    return np.asarray([rows, cols], dtype=np.int64).reshape(2, -1), np.asarray(types, dtype=np.int64)


# Each complex is one torch_geometric HeteroData, as DiffDock stores them (datasets/pdbbind.py), and a
# mini-batch is torch_geometric's Batch.from_data_list of them (what its DataLoader collates). complex_graph:
#   ['ligand']    pos [n, 3] float (pose), x [n, 16] long (data.ligand_features categories)
#   ['receptor']  pos [r, 3] float (C-alpha), x [r] long (residue type 0..20), esm [r, d] float (optional)
#   LIG_BOND      edge_index [2, 2 nb] long (chemical bonds, both directions), edge_attr [2 nb, 4] float one-hot
#   TOR_BOND      edge_index [2, m] long: rotatable bond (u, v) as the edge u -> v, v on the rotated side
#   name          str
# The rotatable bonds are an edge store so that Batch offsets them by the ligand atom count like the bonds:
# HeteroData.__inc__ increments "index" keys of edge stores only (a node-store "tor_index" would be
# concatenated without offsets).
LIG_BOND = ("ligand", "lig_bond", "ligand")
TOR_BOND = ("ligand", "tor_bond", "ligand")


@dataclass
class DockingBatch:
    """Typed view of a collated Batch of complex graphs (``from_pyg``): B complexes, ligand atoms of all
    complexes, then (separately) their residues. The model and the pose code read these fields.

    N ligand atoms, R residues, Eb directed bonds, M rotatable bonds in total; all index tensors long.
    """
    lig_pos: torch.Tensor         # [N, 3] float, current ligand pose (Angstrom)            ['ligand'].pos
    lig_x: torch.Tensor           # [N, 16] long, data.ligand_features categories             ['ligand'].x
    lig_batch: torch.Tensor       # [N] long, complex index, sorted                           ['ligand'].batch
    lig_bond_index: torch.Tensor  # [2, Eb] long, chemical bonds, both directions, global atom indices
    lig_bond_attr: torch.Tensor   # [Eb, 4] float, one-hot bond type
    tor_bonds: torch.Tensor       # [M, 2] long, rotatable bonds (u, v), v on the rotated side (data.py),
    #                               global atom indices (TOR_BOND edge_index transposed)
    rec_pos: torch.Tensor         # [R, 3] float, C-alpha positions                           ['receptor'].pos
    rec_x: torch.Tensor           # [R] long, residue type 0..20                              ['receptor'].x
    rec_batch: torch.Tensor       # [R] long, complex index, sorted                           ['receptor'].batch
    num_graphs: int               # B
    rec_esm: torch.Tensor | None = None    # [R, esm_dim] float                               ['receptor'].esm
    lig_extra: torch.Tensor | None = None  # [N, extra_node_dim] float (DisCo latents; set after batching)
    rec_extra: torch.Tensor | None = None  # [R, extra_node_dim] float
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_pyg(cls, batch) -> "DockingBatch":
        """View of a torch_geometric Batch of ``complex_graph``s (Batch.from_data_list, or a DataLoader's)."""
        lig, rec = batch["ligand"], batch["receptor"]
        return cls(lig_pos=lig.pos, lig_x=lig.x, lig_batch=lig.batch, lig_bond_index=batch[LIG_BOND].edge_index,
                   lig_bond_attr=batch[LIG_BOND].edge_attr, tor_bonds=batch[TOR_BOND].edge_index.T.contiguous(),
                   rec_pos=rec.pos, rec_x=rec.x, rec_batch=rec.batch, num_graphs=batch.num_graphs,
                   rec_esm=rec.get("esm"), names=list(batch.name))

    @property
    def tor_batch(self) -> torch.Tensor:
        """[M] complex index of each rotatable bond."""
        return self.lig_batch[self.tor_bonds[:, 0]]

    def with_ligand_pos(self, pos: torch.Tensor) -> "DockingBatch":
        """Same batch, ligand at pos [N, 3] (e.g. a noised pose)."""
        if pos.shape != self.lig_pos.shape:
            raise ValueError(f"ligand positions {tuple(pos.shape)} != {tuple(self.lig_pos.shape)}")
        return dataclasses.replace(self, lig_pos=pos)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "DockingBatch":
        """Move tensors to device; cast float tensors to dtype."""
        def mv(t):
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype)
        kw = {f.name: mv(getattr(self, f.name)) for f in dataclasses.fields(self)
              if torch.is_tensor(getattr(self, f.name))}
        return dataclasses.replace(self, **kw)


# Pose-independent ligand tensors per RDKit molecule (atom categories, bond graph, one-hot bond types,
# rotatable bonds): RDKit featurisation is most of make_batch's time, and training batches the same
# complexes every step (DiffDock likewise featurises each complex once, in its dataset cache). Keyed by the
# molecule object, dropped with it; the molecules are not modified in place after loading.
_LIGAND_TENSORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _ligand_tensors(mol) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x [n, 16] long, bond edge_index [2, 2 nb] long, one-hot bond types [2 nb, 4] float64,
    rotatable-bond edge_index [2, m] long) of an RDKit molecule, computed once per molecule."""
    key = (mol.GetNumAtoms(), mol.GetNumBonds())
    hit = _LIGAND_TENSORS.get(mol)
    if hit is not None and hit[0] == key:
        return hit[1]
    index, types = ligand_bond_graph(mol)
    out = (torch.as_tensor(ligand_features(mol)), torch.as_tensor(index),
           F.one_hot(torch.as_tensor(types), NUM_BOND_TYPES).to(torch.float64),
           torch.as_tensor(rotatable_bonds(mol)).reshape(-1, 2).T.contiguous())
    _LIGAND_TENSORS[mol] = (key, out)
    return out


def complex_graph(c: Complex, ligand_pos=None, dtype: torch.dtype = torch.float32, esm=None):
    """torch_geometric HeteroData of one complex (layout above): ligand at ligand_pos [n, 3] (default the
    crystal pose ligand_coords), receptor ESM embeddings esm [r, d] when given."""
    HeteroData, _, _ = _pyg()
    pos = c.ligand_coords if ligand_pos is None else np.asarray(ligand_pos, dtype=np.float64)
    if pos.shape != (c.num_ligand_atoms, 3):
        raise ValueError(f"{c.name}: ligand pose of shape {pos.shape}, expected {(c.num_ligand_atoms, 3)}")
    x, bond_index, bond_attr, tor_index = _ligand_tensors(c.ligand)
    receptor = {"pos": torch.as_tensor(c.ca_coords, dtype=dtype), "x": torch.as_tensor(c.residue_types)}
    if esm is not None:
        e = torch.as_tensor(np.asarray(esm), dtype=dtype)
        if e.ndim != 2 or len(e) != c.num_residues:
            raise ValueError(f"{c.name}: ESM embeddings {tuple(e.shape)} for {c.num_residues} residues")
        receptor["esm"] = e
    return HeteroData({"name": c.name,
                       "ligand": {"pos": torch.as_tensor(pos, dtype=dtype), "x": x},
                       "receptor": receptor,
                       LIG_BOND: {"edge_index": bond_index, "edge_attr": bond_attr.to(dtype)},
                       TOR_BOND: {"edge_index": tor_index}})


def make_batch(complexes: Sequence[Complex], ligand_pos: Sequence | None = None,
               dtype: torch.dtype = torch.float32, rec_esm: Sequence | None = None) -> DockingBatch:
    """DockingBatch of complexes (data.Complex): their ``complex_graph``s collated by torch_geometric's
    Batch.from_data_list. ligand_pos: optional per-complex [N_i, 3] poses (default the crystal pose
    ligand_coords); rec_esm: optional per-complex [R_i, esm_dim] embeddings, by default the complexes' own
    ``esm`` when all have one (data.attach_esm); ValueError when only some have one."""
    if not complexes:
        raise ValueError("make_batch needs at least one complex")
    if rec_esm is None:
        without = [c.name for c in complexes if getattr(c, "esm", None) is None]
        if not without:
            rec_esm = [c.esm for c in complexes]
        elif len(without) < len(complexes):
            raise ValueError(f"{without[0]}: no ESM embeddings, but {len(complexes) - len(without)} of the "
                             f"{len(complexes)} complexes in the batch have them (attach_esm to all or none)")
    elif len(rec_esm) != len(complexes):
        raise ValueError(f"rec_esm holds {len(rec_esm)} entries for {len(complexes)} complexes")
    _, Batch, _ = _pyg()
    graphs = []
    for k, c in enumerate(complexes):
        g = complex_graph(c, None if ligand_pos is None else ligand_pos[k], dtype,
                          None if rec_esm is None else rec_esm[k])
        if graphs and rec_esm is not None and g["receptor"].esm.shape[1] != graphs[0]["receptor"].esm.shape[1]:
            raise ValueError(f"{c.name}: ESM embeddings of width {g['receptor'].esm.shape[1]}, but "
                             f"{complexes[0].name}'s are {graphs[0]['receptor'].esm.shape[1]} wide")
        graphs.append(g)
    return DockingBatch.from_pyg(Batch.from_data_list(graphs))


# ----------------------------------------------------------------------------------------- layers

def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0,
                       max_positions: float = 10000.0) -> torch.Tensor:
    """[B] -> [B, dim]: [sin(scale t w_k), cos(scale t w_k)], w_k = max_positions^(-k/(dim/2 - 1))
    (DiffDock utils/diffusion_utils.py sinusoidal_embedding, via get_timestep_embedding('sinusoidal'))."""
    half = dim // 2
    w = torch.exp(-math.log(max_positions) / (half - 1) * torch.arange(half, dtype=t.dtype, device=t.device)) \
        if half > 1 else torch.ones(1, dtype=t.dtype, device=t.device)
    arg = (scale * t)[:, None] * w[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], 1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class GaussianSmearing(nn.Module):
    """d [E] -> [E, n]: exp(-(d - mu_k)^2 / (2 delta^2)), mu = linspace(start, stop, n), delta the spacing
    (tensor_layers.py GaussianSmearing)."""

    def __init__(self, start: float, stop: float, n: int):
        super().__init__()
        self.register_buffer("offset", torch.linspace(start, stop, n))
        step = (stop - start) / (n - 1) if n > 1 else (stop - start) or 1.0
        self.coeff = -0.5 / step ** 2

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.coeff * (d.reshape(-1, 1) - self.offset.reshape(1, -1)) ** 2)


def _mlp(n_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    """Linear-ReLU-Dropout-Linear (DiffDock's edge embeddings and FCBlock with 2 layers)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))


class CategoricalEncoder(nn.Module):
    """Sum of per-column embeddings, then Linear([sum, extra]) -> emb_dim (layers.py AtomEncoder)."""

    def __init__(self, emb_dim: int, feature_dims: Sequence[int], extra_dim: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, emb_dim) for n in feature_dims)
        for emb in self.embeddings:
            nn.init.xavier_uniform_(emb.weight)
        self.extra_dim = extra_dim
        self.mix = nn.Linear(emb_dim + extra_dim, emb_dim) if extra_dim > 0 else None

    def forward(self, cats: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        cats = cats.reshape(len(cats), -1)
        h = sum(emb(cats[:, i]) for i, emb in enumerate(self.embeddings))
        if self.mix is None:
            return h
        return self.mix(torch.cat([h, extra.to(h.dtype)], 1))


def scatter_mean(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """[n, ...]: mean of the rows of src [E, ...] with index [E] == i (0 where none); torch_geometric.utils.scatter
    (reduce="mean"), named here so that torch_geometric is imported on first use."""
    return _pyg()[2](src, index, 0, n, reduce="mean")


class TensorProductConv(nn.Module):
    """Equivariant convolution (tensor_layers.py TensorProductConvLayer): for edge (i, j),
    m_ij = TP(h_j, Y(x_j - x_i); w = MLP_g(edge features)), h_i' = BN(mean_j m_ij) + pad(h_i) (residual).
    One weight MLP per edge group g (disco-diffdock edge_groups); edge features come as one tensor per group,
    in edge order."""

    def __init__(self, in_irreps, sh_irreps, out_irreps, n_edge_features: int, hidden: int | None = None,
                 residual: bool = True, batch_norm: bool = True, dropout: float = 0.0, edge_groups: int = 1):
        super().__init__()
        o3, BatchNorm = _e3nn()
        self.in_irreps, self.out_irreps = o3.Irreps(in_irreps), o3.Irreps(out_irreps)
        self.residual = residual
        self.tp = o3.FullyConnectedTensorProduct(self.in_irreps, sh_irreps, self.out_irreps, shared_weights=False)
        hidden = hidden or n_edge_features
        self.fc = nn.ModuleList(_mlp(n_edge_features, hidden, self.tp.weight_numel, dropout)
                                for _ in range(edge_groups))
        self.batch_norm = BatchNorm(self.out_irreps) if batch_norm else None

    def forward(self, node_attr: torch.Tensor, edge_index: torch.Tensor, edge_attr: Sequence[torch.Tensor],
                edge_sh: torch.Tensor, out_nodes: int | None = None) -> torch.Tensor:
        if len(edge_attr) != len(self.fc):
            raise ValueError(f"{len(edge_attr)} edge groups for {len(self.fc)} weight MLPs")
        n_out = node_attr.shape[0] if out_nodes is None else out_nodes
        weights = torch.cat([fc(a) for fc, a in zip(self.fc, edge_attr)], 0)
        msg = self.tp(node_attr[edge_index[1]], edge_sh, weights)
        out = scatter_mean(msg, edge_index[0], n_out)
        if self.batch_norm is not None:
            out = self.batch_norm(out)
        if self.residual:
            out = out + F.pad(node_attr, (0, out.shape[-1] - node_attr.shape[-1]))
        return out


def irrep_sequence(ns: int, nv: int, second_order: bool = False) -> list[str]:
    """Node irreps after each layer (tensor_layers.py get_irrep_seq); layer i maps seq[i] -> seq[i+1],
    clamped at the last entry."""
    if second_order:
        return [f"{ns}x0e", f"{ns}x0e + {nv}x1o + {nv}x2e",
                f"{ns}x0e + {nv}x1o + {nv}x2e + {nv}x1e + {nv}x2o",
                f"{ns}x0e + {nv}x1o + {nv}x2e + {nv}x1e + {nv}x2o + {ns}x0o"]
    return [f"{ns}x0e", f"{ns}x0e + {nv}x1o", f"{ns}x0e + {nv}x1o + {nv}x1e", f"{ns}x0e + {nv}x1o + {nv}x1e + {ns}x0o"]


# ------------------------------------------------------------------------------------------ model

@dataclass
class ScoreOutput:
    tr: torch.Tensor   # [B, 3] translation score (1o), divided by sigma_tr when scale_by_sigma
    rot: torch.Tensor  # [B, 3] rotation score (1e, axis-angle), times so3.score_norm(sigma_rot)
    tor: torch.Tensor  # [M] torsion scores, batch.tor_bonds order, times sqrt(E[s^2](sigma_tor))


def scalar_dim(cfg: ScoreModelConfig) -> int:
    """Width of TensorProductScoreModel.node_scalars: ns 0e channels, plus ns 0o ones from 3 layers on."""
    return 2 * cfg.ns if cfg.num_conv_layers >= 3 else cfg.ns


def _per_graph(t, b: int, like: torch.Tensor) -> torch.Tensor:
    """[b] times (dtype and device of like) from a float, a 1-element or a [b] tensor."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device).reshape(-1)
    if t.numel() == 1:
        return t.expand(b).clone()
    if t.numel() != b:
        raise ValueError(f"time has {t.numel()} entries for {b} complexes")
    return t


class TensorProductScoreModel(nn.Module):
    """DiffDock-S score network. forward(batch, t_tr, t_rot=None, t_tor=None) -> ScoreOutput; the times are
    floats or [B] tensors in [0, 1] (t_rot, t_tor default to t_tr, as in DiffDock training)."""

    def __init__(self, cfg: ScoreModelConfig = ScoreModelConfig(), dtype: torch.dtype | None = None):
        """dtype: build in this dtype. e3nn computes its Clebsch-Gordan buffers in the default dtype, so a
        float32-built model cast with .double() keeps float32-rounded l >= 2 coefficients and is equivariant
        to ~1e-8 only; dtype=torch.float64 builds them in float64."""
        super().__init__()
        self.cfg = cfg
        if dtype is None:
            self._build(cfg)
            return
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            self._build(cfg)
        finally:
            torch.set_default_dtype(old)
        self.to(dtype)

    def _build(self, cfg: ScoreModelConfig) -> None:
        o3, _ = _e3nn()
        ns, nv, sd, dd, cd, dp = (cfg.ns, cfg.nv, cfg.sigma_embed_dim, cfg.distance_embed_dim,
                                  cfg.cross_distance_embed_dim, cfg.dropout)
        ex = cfg.extra_node_dim
        ex_edge = 2 * ex if cfg.extra_on_edges else 0
        self.sh_irreps = o3.Irreps.spherical_harmonics(cfg.sh_lmax)

        self.lig_node_embedding = CategoricalEncoder(ns, LIGAND_FEATURE_DIMS, sd + ex)
        self.rec_node_embedding = CategoricalEncoder(ns, (cfg.num_residue_types,), sd + cfg.esm_dim + ex)
        self.lig_edge_embedding = _mlp(NUM_BOND_TYPES + sd + dd + ex_edge, ns, ns, dp)
        self.rec_edge_embedding = _mlp(sd + dd + ex_edge, ns, ns, dp)
        # disco-diffdock feeds zeros for the latents of cross edges; they are left out here (same function).
        self.cross_edge_embedding = _mlp(sd + cd, ns, ns, dp)
        self.lig_distance_expansion = GaussianSmearing(0.0, cfg.lig_max_radius, dd)
        self.rec_distance_expansion = GaussianSmearing(0.0, cfg.rec_max_radius, dd)
        self.cross_distance_expansion = GaussianSmearing(0.0, cfg.cross_max_distance, cd)

        seq = irrep_sequence(ns, nv, cfg.use_second_order_repr)
        self.conv_layers = nn.ModuleList(
            TensorProductConv(seq[min(i, len(seq) - 1)], self.sh_irreps, seq[min(i + 1, len(seq) - 1)],
                              n_edge_features=3 * ns, hidden=3 * ns, residual=True, batch_norm=cfg.batch_norm,
                              dropout=dp, edge_groups=4)
            for i in range(cfg.num_conv_layers))
        last = self.conv_layers[-1].out_irreps

        # translation and rotation: convolution from ligand atoms to the ligand centre
        self.center_distance_expansion = GaussianSmearing(0.0, cfg.center_max_distance, dd)
        self.center_edge_embedding = _mlp(dd + sd, ns, ns, dp)
        self.final_conv = TensorProductConv(last, self.sh_irreps, "2x1o + 2x1e", n_edge_features=2 * ns,
                                            residual=False, batch_norm=cfg.batch_norm, dropout=dp)
        self.tr_final_layer = nn.Sequential(nn.Linear(1 + sd, ns), nn.Dropout(dp), nn.ReLU(), nn.Linear(ns, 1))
        self.rot_final_layer = nn.Sequential(nn.Linear(1 + sd, ns), nn.Dropout(dp), nn.ReLU(), nn.Linear(ns, 1))

        if not cfg.no_torsion:
            self.final_edge_embedding = _mlp(dd, ns, ns, dp)
            self.final_tp_tor = o3.FullTensorProduct(self.sh_irreps, "2e")   # edge harmonics x bond-axis l=2
            self.tor_bond_conv = TensorProductConv(last, self.final_tp_tor.irreps_out, f"{ns}x0o + {ns}x0e",
                                                   n_edge_features=3 * ns, residual=False,
                                                   batch_norm=cfg.batch_norm, dropout=dp)
            self.tor_final_layer = nn.Sequential(nn.Linear(2 * ns, ns, bias=False), nn.Tanh(), nn.Dropout(dp),
                                                 nn.Linear(ns, 1, bias=False))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _sh(self, vec: torch.Tensor) -> torch.Tensor:
        o3, _ = _e3nn()
        return o3.spherical_harmonics(self.sh_irreps, vec, normalize=True, normalization="component")

    def _check(self, batch: DockingBatch) -> None:
        cfg = self.cfg
        if cfg.esm_dim and (batch.rec_esm is None or batch.rec_esm.shape != (len(batch.rec_pos), cfg.esm_dim)):
            raise ValueError(f"model expects rec_esm [R, {cfg.esm_dim}]")
        if not cfg.esm_dim and batch.rec_esm is not None:
            raise ValueError("the batch carries ESM embeddings but the model has esm_dim = 0 (they would be ignored)")
        if cfg.extra_node_dim:
            for name, n in (("lig_extra", len(batch.lig_pos)), ("rec_extra", len(batch.rec_pos))):
                t = getattr(batch, name)
                if t is None or t.shape != (n, cfg.extra_node_dim):
                    raise ValueError(f"model expects {name} [{n}, {cfg.extra_node_dim}]")

    def node_features(self, batch: DockingBatch, t) -> torch.Tensor:
        """[N + R, dim] node features after the last convolution layer (the batch's ligand atoms, then its
        residues), before any output head. t: float or [B], the translation time; it sets the time embedding
        of every node and edge and the dynamic cross cutoff (the rotation and torsion times of ``forward``
        only scale its heads). The confidence model and the DisCo latent encoder / prior read these."""
        cfg = self.cfg
        self._check(batch)
        B, ns = batch.num_graphs, cfg.ns
        lig_pos, rec_pos, lb, rb = batch.lig_pos, batch.rec_pos, batch.lig_batch, batch.rec_batch
        N = len(lig_pos)
        t = _per_graph(t, B, lig_pos)
        # Node/edge time embeddings use t_tr for every node (score_model.py: node_t['tr']).
        g_emb = timestep_embedding(t, cfg.sigma_embed_dim, cfg.embedding_scale)        # [B, sd]
        lig_sig, rec_sig = g_emb[lb], g_emb[rb]

        # ligand graph: bonds (with bond type) + radius edges (zero bond features)
        rad = radius_graph(lig_pos, cfg.lig_max_radius, cfg.lig_max_neighbors, lb)
        lig_ei = torch.cat([batch.lig_bond_index, rad], 1)
        lig_bond = torch.cat([batch.lig_bond_attr.to(lig_pos.dtype),
                              lig_pos.new_zeros(rad.shape[1], NUM_BOND_TYPES)], 0)
        lig_vec = lig_pos[lig_ei[1]] - lig_pos[lig_ei[0]]
        parts = [lig_bond, lig_sig[lig_ei[0]], self.lig_distance_expansion(lig_vec.norm(dim=-1))]
        lig_ea = self.lig_edge_embedding(torch.cat(parts + self._edge_extra(batch.lig_extra, lig_ei, lig_pos), 1))
        lig_sh = self._sh(lig_vec)
        lig_in = [lig_sig] + ([batch.lig_extra] if cfg.extra_node_dim else [])
        lig_h = self.lig_node_embedding(batch.lig_x, torch.cat(lig_in, 1))

        # receptor graph: C-alpha radius graph, at most rec_max_neighbors nearest (process_mols get_calpha_graph)
        rec_ei = radius_graph(rec_pos, cfg.rec_radius, cfg.rec_max_neighbors, rb)
        rec_vec = rec_pos[rec_ei[1]] - rec_pos[rec_ei[0]]
        parts = [rec_sig[rec_ei[0]], self.rec_distance_expansion(rec_vec.norm(dim=-1))]
        rec_ea = self.rec_edge_embedding(torch.cat(parts + self._edge_extra(batch.rec_extra, rec_ei, rec_pos), 1))
        rec_sh = self._sh(rec_vec)
        rec_in = [rec_sig] + ([batch.rec_esm.to(rec_pos.dtype)] if cfg.esm_dim else []) \
            + ([batch.rec_extra] if cfg.extra_node_dim else [])
        rec_h = self.rec_node_embedding(batch.rec_x, torch.cat(rec_in, 1))

        # cross edges (ligand i <- residue j), cutoff 3 sigma_tr + 20 per complex when dynamic
        tr_sigma = exp_sigma(t, cfg.noise.tr_sigma_min, cfg.noise.tr_sigma_max)
        cutoff = tr_sigma * 3 + 20 if cfg.dynamic_max_cross else cfg.cross_max_distance
        cross_ei = radius(rec_pos, lig_pos, cutoff, None, rb, lb, num_graphs=B)          # [lig, rec]
        cross_vec = rec_pos[cross_ei[1]] - lig_pos[cross_ei[0]]
        cross_ea = self.cross_edge_embedding(torch.cat(
            [lig_sig[cross_ei[0]], self.cross_distance_expansion(cross_vec.norm(dim=-1))], 1))
        cross_sh = self._sh(cross_vec)

        # one graph: ligand nodes [0, N), residues [N, N + R); groups: lig, lig<-rec, rec, rec<-lig.
        # The reverse cross edges reuse the forward edges' features and harmonics (score_model.py embed()).
        h = torch.cat([lig_h, rec_h], 0)
        lr = cross_ei + torch.tensor([[0], [N]], device=cross_ei.device)
        edge_index = torch.cat([lig_ei, lr, rec_ei + N, lr.flip(0)], 1)
        edge_attr = torch.cat([lig_ea, cross_ea, rec_ea, cross_ea], 0)
        edge_sh = torch.cat([lig_sh, cross_sh, rec_sh, cross_sh], 0)
        sizes = [lig_ei.shape[1], cross_ei.shape[1], rec_ei.shape[1], cross_ei.shape[1]]
        for conv in self.conv_layers:
            ea = torch.cat([edge_attr, h[edge_index[0], :ns], h[edge_index[1], :ns]], 1)
            h = conv(h, edge_index, list(torch.split(ea, sizes, 0)), edge_sh)
        return h

    def node_scalars(self, batch: DockingBatch, t) -> torch.Tensor:
        """[N + R, scalar_dim(cfg)]: the scalar channels of ``node_features``, the 0e ones plus, from 3 layers
        on, the 0o ones (score_model.py confidence_mode; disco-diffdock latent_encoder.py)."""
        h = self.node_features(batch, t)
        ns = self.cfg.ns
        return torch.cat([h[:, :ns], h[:, -ns:]], 1) if scalar_dim(self.cfg) == 2 * ns else h[:, :ns]

    def _edge_extra(self, extra: torch.Tensor | None, edge_index: torch.Tensor, like: torch.Tensor) -> list:
        """[extra_i, extra_j] edge inputs when the extra node features reach the edges, else none."""
        if not (self.cfg.extra_node_dim and self.cfg.extra_on_edges):
            return []
        return [extra[edge_index[0]].to(like.dtype), extra[edge_index[1]].to(like.dtype)]

    def forward(self, batch: DockingBatch, t_tr, t_rot=None, t_tor=None) -> ScoreOutput:
        cfg = self.cfg
        o3, _ = _e3nn()
        B, ns = batch.num_graphs, cfg.ns
        lig_pos, lb = batch.lig_pos, batch.lig_batch
        N = len(lig_pos)
        t_tr = _per_graph(t_tr, B, lig_pos)
        t_rot = t_tr if t_rot is None else _per_graph(t_rot, B, lig_pos)
        t_tor = t_tr if t_tor is None else _per_graph(t_tor, B, lig_pos)
        lig_h = self.node_features(batch, t_tr)[:N]
        tr_sigma, rot_sigma, tor_sigma = t_to_sigma(t_tr, t_rot, t_tor, cfg.noise)
        g_emb = timestep_embedding(t_tr, cfg.sigma_embed_dim, cfg.embedding_scale)      # [B, sd]
        lig_sig = g_emb[lb]

        # translation and rotation
        center = scatter_mean(lig_pos, lb, B)
        c_ei = torch.stack([lb, torch.arange(N, device=lb.device)])                      # [graph, atom]
        c_vec = lig_pos - center[lb]
        c_ea = self.center_edge_embedding(torch.cat([self.center_distance_expansion(c_vec.norm(dim=-1)),
                                                     lig_sig], 1))
        c_ea = torch.cat([c_ea, lig_h[:, :ns]], 1)
        g = self.final_conv(lig_h, c_ei, [c_ea], self._sh(c_vec), out_nodes=B)           # [B, 12]
        if cfg.diffdock_output_slices:
            tr, rot = g[:, 0:3] + g[:, 6:9], g[:, 3:6] + g[:, 9:12]
        else:   # layout of "2x1o + 2x1e": 1o, 1o, 1e, 1e
            tr, rot = g[:, 0:3] + g[:, 3:6], g[:, 6:9] + g[:, 9:12]
        tr_norm = tr.norm(dim=1, keepdim=True)
        tr = tr / tr_norm.clamp_min(1e-12) * self.tr_final_layer(torch.cat([tr_norm, g_emb], 1))
        rot_norm = rot.norm(dim=1, keepdim=True)
        rot = rot / rot_norm.clamp_min(1e-12) * self.rot_final_layer(torch.cat([rot_norm, g_emb], 1))
        if cfg.scale_by_sigma:
            tr = tr / tr_sigma[:, None]
            rot = rot * so3.score_norm(rot_sigma.detach().cpu()).to(rot)[:, None]

        # torsions: atoms within lig_max_radius of each rotatable bond's centre
        bonds = batch.tor_bonds
        if cfg.no_torsion or len(bonds) == 0:
            return ScoreOutput(tr, rot, lig_pos.new_zeros(0))
        u, v = bonds[:, 0], bonds[:, 1]
        bond_pos = (lig_pos[u] + lig_pos[v]) / 2
        bond_batch = lb[u]
        b_ei = radius(lig_pos, bond_pos, cfg.lig_max_radius, cfg.bond_max_neighbors, lb, bond_batch,
                      num_graphs=B)                                                       # [bond, atom]
        b_vec = lig_pos[b_ei[1]] - bond_pos[b_ei[0]]
        b_ea = self.final_edge_embedding(self.lig_distance_expansion(b_vec.norm(dim=-1)))
        axis_sh = o3.spherical_harmonics("2e", lig_pos[v] - lig_pos[u], normalize=True, normalization="component")
        b_sh = self.final_tp_tor(self._sh(b_vec), axis_sh[b_ei[0]])
        bond_h = lig_h[u] + lig_h[v]
        b_ea = torch.cat([b_ea, lig_h[b_ei[1], :ns], bond_h[b_ei[0], :ns]], 1)
        tor = self.tor_final_layer(self.tor_bond_conv(lig_h, b_ei, [b_ea], b_sh, out_nodes=len(bonds))).squeeze(1)
        if cfg.scale_by_sigma:
            tor = tor * torus.mean_sq_score(tor_sigma[bond_batch].detach().cpu()).sqrt().to(tor)
        return ScoreOutput(tr, rot, tor)


__all__ = [
    "DIFFDOCK_S_NOISE", "DockingBatch", "GaussianSmearing", "LIG_BOND", "NUM_BOND_TYPES", "NUM_RESIDUE_TYPES",
    "ScoreModelConfig", "ScoreOutput", "TOR_BOND", "TensorProductConv", "TensorProductScoreModel",
    "complex_graph", "graph_segments", "irrep_sequence", "ligand_bond_graph", "make_batch", "radius",
    "radius_graph", "scalar_dim", "scatter_mean", "timestep_embedding",
]
