"""DisCo-DiffDock latents: pointers to nodes of the joint protein-ligand graph (DisCo-Diff App. E, Table 4).

Facts used (own code; sources are gcorso/disco-diffdock at 720bcb9 unless said otherwise):

* A latent is a pointer to one node of the complex's joint graph (ligand atoms + receptor residues), so the
  codebook size is the node count and varies per complex; m = 2 latents (DisCo-Diff App. E).
  ``models/latent_encoder.py`` (latent_vocab == 1 branch): logits per node, softmax over
  cat([ligand nodes of complex b, residues of complex b]) -> the *local* node order used here.
* The denoiser sees the latents as per-node features (one column per latent: the pointer's one-hot, or the
  Gumbel-Softmax weights while training), on nodes and, concatenated for both ends, on edges
  (``models/score_model.py`` build_*_conv_graph; score_model.ScoreModelConfig.extra_on_edges).
* Latent dropout (``models/model_classes.py`` ModelWrapper): per complex, keep ~ Bernoulli(1 - p); latents
  multiplied by keep; ``unconditional = 1 - keep`` on every node; the score model then adds learned vectors
  ``unconditional * null_embedding`` to node (and edge) embeddings (``score_model.py`` embed()).
  Here the null flag is one more extra-node column (extra_node_dim = m + 1, see ``pointer_extra_dim``):
  ``CategoricalEncoder`` mixes [embedding, t-emb, extra] with one Linear, so the flag column's weight is
  exactly a learned vector added to every node. Deliberate difference: on ligand/receptor edges the flag
  enters the edge MLP input (as [flag_i, flag_j]) instead of a vector added after the MLP, and cross edges
  get none (score_model.py leaves latents off cross edges).
* Encoder (``latent_encoder.py`` TPEncoder): the score network's tensor-product layers on the crystal pose
  (use_oracle -> orig_pos), no time input (here: a constant t), scalar node features [0e, 0o] (first and
  last ns channels once >= 3 layers), separate ligand / receptor MLP heads with m outputs; Gumbel-Softmax
  over each complex's nodes. Size per the brief / App. E: 3 layers, 24 scalars, 4 vectors.
* Prior (``models/pretrained_score_encoder.py`` PretrainedScoreEncoder, ``model_classes.py`` encode_ar):
  the trained score model's embedding + conv layers at t = 1 with ``unconditional = 1``, previous latents
  fed as node features, ligand / receptor MLP heads; decoding one latent at a time. disco-diffdock samples
  ``multinomial(exp(logits * T'))`` (T' an inverse temperature; >= 100 -> argmax); here logits / T with
  T -> 0 the argmax, and inverse-CDF sampling from given uniforms (per-sample seeds). It uses one head
  column for every latent; here one head pair per latent (the brief's choice; the decoding index is then
  explicit). Conv layers frozen for the first epochs: ``PointerPrior.freeze_convs``.
* Prior input pose: RDKit conformer, randomly rotated, centred at the protein centre (DisCo-Diff App. E).

Node order (``JointNodes``): the score model's global order, all ligand atoms of the batch, then all
residues; ``batch`` gives each node's complex and ``local`` its index in that complex's local order
(its ligand atoms, then its residues). Pointers ``z`` [B, m] are local indices.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import nn

from bench.disco.gumbel import gumbel_noise
from bench.docking.score_model import DockingBatch, ScoreModelConfig, TensorProductScoreModel, scalar_dim, scatter_mean
from bench.docking.so3 import random_rotations

NUM_POINTERS = 2        # m (DisCo-Diff App. E)
POINTER_DROP_P = 0.1    # latent dropout probability (DisCo-Diff App. B/E)
PRIOR_FREEZE_EPOCHS = 5


def pointer_extra_dim(m: int = NUM_POINTERS) -> int:
    """extra_node_dim of a score model fed pointer features plus the null flag column."""
    return m + 1


# ------------------------------------------------------------------------------------ ragged helpers

def _num(batch_index: torch.Tensor, num_graphs: int | None) -> int:
    if num_graphs is not None:
        return int(num_graphs)
    return int(batch_index.max()) + 1 if batch_index.numel() else 0


def _expand(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return index.reshape(-1, *([1] * (like.ndim - 1))).expand_as(like)


def _node_max(x: torch.Tensor, batch_index: torch.Tensor, B: int) -> torch.Tensor:
    """[B, ...] per-complex maximum of x [n, ...] (no gradient; -inf for a complex without nodes)."""
    return x.new_full((B, *x.shape[1:]), -math.inf).scatter_reduce(0, _expand(batch_index, x), x.detach(), "amax")


def _row_positions(x: torch.Tensor) -> torch.Tensor:
    """[n, 1, ...] row index of x [n, ...], broadcastable against x."""
    return torch.arange(len(x), device=x.device).reshape(-1, *([1] * (x.ndim - 1)))


def node_log_softmax(logits: torch.Tensor, batch_index: torch.Tensor, tau: float = 1.0,
                     num_graphs: int | None = None) -> torch.Tensor:
    """log softmax(logits / tau) over the nodes of each complex. logits [n, ...] (trailing dims, e.g. one
    column per latent, are independent), batch_index [n] complex of each node (any order)."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    x = logits / tau
    B = _num(batch_index, num_graphs)
    mx = _node_max(x, batch_index, B)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    shifted = x - mx[batch_index]
    total = x.new_zeros((B, *x.shape[1:])).index_add_(0, batch_index, shifted.exp())
    return shifted - total.log()[batch_index]


def node_softmax(logits: torch.Tensor, batch_index: torch.Tensor, tau: float = 1.0,
                 num_graphs: int | None = None) -> torch.Tensor:
    """softmax(logits / tau) restricted to each complex's nodes (sums to 1 per complex and column)."""
    return node_log_softmax(logits, batch_index, tau, num_graphs).exp()


def node_argmax(logits: torch.Tensor, batch_index: torch.Tensor, num_graphs: int | None = None) -> torch.Tensor:
    """[B, ...] global index of each complex's largest logit (first one on ties)."""
    B = _num(batch_index, num_graphs)
    mx = _node_max(logits, batch_index, B)
    n = len(logits)
    pos = _row_positions(logits).expand_as(logits)
    cand = torch.where(logits.detach() == mx[batch_index], pos, torch.full_like(pos, n))
    return torch.full((B, *logits.shape[1:]), n, dtype=torch.long, device=logits.device).scatter_reduce(
        0, _expand(batch_index, logits), cand, "amin")


def node_gumbel_softmax(logits: torch.Tensor, batch_index: torch.Tensor, tau: float = 1.0,
                        generator: torch.Generator | None = None, hard: bool = False,
                        num_graphs: int | None = None, gumbel: torch.Tensor | None = None) -> torch.Tensor:
    """Gumbel-Softmax over each complex's nodes: softmax((logits + g) / tau) per complex, g ~ Gumbel(0, 1)
    (bench.disco.gumbel; or the given `gumbel` noise, shaped like logits). hard=True: one-hot at the
    per-complex argmax of logits + g in the forward pass, soft gradient (straight-through)."""
    g = gumbel_noise(logits.shape, generator, logits.device) if gumbel is None else gumbel
    g = g.to(device=logits.device, dtype=logits.dtype)
    soft = node_softmax(logits + g, batch_index, tau, num_graphs)
    if not hard:
        return soft
    am = node_argmax((logits + g).detach(), batch_index, num_graphs)                 # [B, ...]
    one_hot = (_row_positions(logits) == am[batch_index]).to(soft.dtype)
    return one_hot - soft.detach() + soft


# ---------------------------------------------------------------------------------------- node sets

def local_index(batch_index: torch.Tensor, num_graphs: int | None = None) -> torch.Tensor:
    """[n] rank of each node among the earlier nodes of its complex (stable in the given order)."""
    n = len(batch_index)
    B = _num(batch_index, num_graphs)
    order = torch.sort(batch_index, stable=True).indices
    counts = torch.bincount(batch_index, minlength=B)
    start = torch.cumsum(counts, 0) - counts
    ranks = torch.arange(n, device=batch_index.device) - start[batch_index[order]]
    return torch.empty_like(ranks).scatter_(0, order, ranks)


@dataclass
class JointNodes:
    """The joint graph's nodes in the score model's order (ligand atoms of the batch, then residues)."""
    batch: torch.Tensor    # [n] long, complex of each node
    local: torch.Tensor    # [n] long, index within the complex (its ligand atoms first, then residues)
    counts: torch.Tensor   # [B] long, nodes per complex (= codebook size)
    num_ligand: int        # N: nodes [0, N) are ligand atoms

    @property
    def num_graphs(self) -> int:
        return len(self.counts)

    def to_global(self, z: torch.Tensor) -> torch.Tensor:
        """Local pointers [B, m] -> global node indices [B, m]."""
        B = self.num_graphs
        table = torch.full((B, int(self.counts.max()) if B else 0), -1, dtype=torch.long, device=z.device)
        table[self.batch, self.local] = torch.arange(len(self.batch), device=z.device)
        return torch.gather(table, 1, z.long())

    def split(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, k] -> (ligand [N, k], receptor [R, k])."""
        return feats[:self.num_ligand], feats[self.num_ligand:]


def joint_nodes(batch: DockingBatch) -> JointNodes:
    nb = torch.cat([batch.lig_batch, batch.rec_batch])
    B = batch.num_graphs
    return JointNodes(nb, local_index(nb, B), torch.bincount(nb, minlength=B), len(batch.lig_pos))


def pointer_features(z: torch.Tensor, counts: torch.Tensor, node_batch: torch.Tensor | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Binary node features [n_nodes, m]: column i is 1 on node z[b, i] of complex b, 0 elsewhere.
    z [B, m] local indices; counts [B] nodes per complex. Nodes are complex-contiguous unless node_batch
    [n] gives the complex of each output row (then local index = rank within its complex, stable)."""
    counts = torch.as_tensor(counts, dtype=torch.long, device=z.device)
    if node_batch is None:
        node_batch = torch.repeat_interleave(torch.arange(len(counts), device=z.device), counts)
    if bool((z < 0).any()) or bool((z >= counts[:, None]).any()):
        raise ValueError("pointer outside its complex's nodes")
    loc = local_index(node_batch, len(counts))
    return (loc[:, None] == z.long()[node_batch]).to(dtype)


class DroppedPointers(NamedTuple):
    features: torch.Tensor   # [n, m] pointer features, zero on dropped complexes
    null: torch.Tensor       # [n] 1.0 on nodes of dropped complexes, else 0.0 ("unconditional")
    dropped: torch.Tensor    # [B] bool

    def node_input(self) -> torch.Tensor:
        """[n, m + 1] = [features, null flag]: the score model's extra node features."""
        return torch.cat([self.features, self.null[:, None].to(self.features.dtype)], 1)


def drop_pointers(features: torch.Tensor, node_batch: torch.Tensor, p: float = POINTER_DROP_P,
                  generator: torch.Generator | None = None, num_graphs: int | None = None) -> DroppedPointers:
    """Latent dropout per complex with probability p (model_classes.py ModelWrapper; the all-m-at-once
    convention of bench.disco.latents.drop_latents): features zeroed and the null flag set on its nodes."""
    B = _num(node_batch, num_graphs)
    if p <= 0:
        dropped = torch.zeros(B, dtype=torch.bool, device=features.device)
    else:
        dropped = torch.rand(B, generator=generator).to(features.device) < p
    keep = (~dropped).to(features.dtype)[node_batch]
    return DroppedPointers(features * keep[:, None], 1.0 - keep, dropped)


def pointer_node_input(batch: DockingBatch, z: torch.Tensor | None, m: int = NUM_POINTERS) -> torch.Tensor:
    """[n_nodes, m + 1] score-model input (joint order) for pointers z [B, m] (null flag 0), or for z None the
    unconditional input (zeros, null flag 1 on every node)."""
    nodes = joint_nodes(batch)
    dtype = batch.lig_pos.dtype
    if z is None:
        feats = torch.zeros(len(nodes.batch), m, dtype=dtype, device=batch.lig_pos.device)
        null = torch.ones(len(nodes.batch), dtype=dtype, device=batch.lig_pos.device)
    else:
        if z.shape != (nodes.num_graphs, m):
            raise ValueError(f"pointers: expected [{nodes.num_graphs}, {m}], got {tuple(z.shape)}")
        feats = pointer_features(z.to(batch.lig_pos.device), nodes.counts, nodes.batch, dtype)
        null = torch.zeros(len(nodes.batch), dtype=dtype, device=batch.lig_pos.device)
    return torch.cat([feats, null[:, None]], 1)


def with_node_extra(batch: DockingBatch, extra: torch.Tensor, nodes: JointNodes | None = None) -> DockingBatch:
    """batch with lig_extra / rec_extra from joint-order node features [n, k]."""
    nodes = nodes or joint_nodes(batch)
    lig, rec = nodes.split(extra.to(batch.lig_pos.dtype))
    return dataclasses.replace(batch, lig_extra=lig, rec_extra=rec)


# ------------------------------------------------------------------------------------ heads
# Encoder and prior read the joint-order scalar node features of a score-model trunk
# (TensorProductScoreModel.node_scalars: 0e channels, plus 0o from 3 layers on; latent_encoder.py /
# pretrained_score_encoder.py), so the output heads of the score model never run.

def _head(n_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    """latent_s_predictor / latent_r_predictor layout without BatchNorm (latent_no_batchnorm)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))


def _apply_heads(lig_head: nn.Module, rec_head: nn.Module, s: torch.Tensor, n_lig: int) -> torch.Tensor:
    return torch.cat([lig_head(s[:n_lig]), rec_head(s[n_lig:])], 0)


# ------------------------------------------------------------------------------------------- encoder

@dataclass(frozen=True)
class PointerEncoderConfig:
    m: int = NUM_POINTERS
    ns: int = 24                      # DisCo-Diff App. E: 3 layers, 24 scalars, 4 vectors
    nv: int = 4
    num_conv_layers: int = 3
    hidden: int = 128                 # latent_hidden_dim default
    head_dropout: float = 0.0         # latent_dropout default
    cross_max_distance: float = 30.0  # fixed cross cutoff, no time so not dynamic (yml encoder_cross_max_distance)
    trunk: dict = dataclasses.field(default_factory=dict)   # other ScoreModelConfig overrides

    def score_config(self) -> ScoreModelConfig:
        kw = dict(ns=self.ns, nv=self.nv, num_conv_layers=self.num_conv_layers, no_torsion=True,
                  scale_by_sigma=False, dynamic_max_cross=False, cross_max_distance=self.cross_max_distance,
                  extra_node_dim=0)
        kw.update(self.trunk)
        return ScoreModelConfig(**kw)

    @classmethod
    def tiny(cls, **overrides) -> "PointerEncoderConfig":
        kw = dict(ns=8, nv=2, hidden=16, trunk=dict(sigma_embed_dim=8, distance_embed_dim=8,
                                                    cross_distance_embed_dim=8, batch_norm=False, dropout=0.0))
        kw.update(overrides)
        return cls(**kw)


class PointerEncoder(nn.Module):
    """q(z | complex): logits [n_nodes, m] (joint order) from the crystal pose (batch.lig_pos)."""

    ENCODER_T = 0.0   # TPEncoder has no time input; a constant t stands in (its embedding acts as a bias)

    def __init__(self, cfg: PointerEncoderConfig = PointerEncoderConfig(), dtype: torch.dtype | None = None):
        super().__init__()
        self.cfg = cfg
        self.trunk = TensorProductScoreModel(cfg.score_config(), dtype=dtype)
        d = scalar_dim(self.trunk.cfg)
        self.lig_head = _head(d, cfg.hidden, cfg.m, cfg.head_dropout)
        self.rec_head = _head(d, cfg.hidden, cfg.m, cfg.head_dropout)
        if dtype is not None:
            self.to(dtype)

    def forward(self, batch: DockingBatch) -> torch.Tensor:
        s = self.trunk.node_scalars(batch, self.ENCODER_T)
        return _apply_heads(self.lig_head, self.rec_head, s, len(batch.lig_pos))

    def sample(self, batch: DockingBatch, tau: float = 1.0, generator: torch.Generator | None = None,
               hard: bool = False) -> torch.Tensor:
        """Gumbel-Softmax weights [n_nodes, m] (joint order), each column summing to 1 per complex."""
        return node_gumbel_softmax(self(batch), joint_nodes(batch).batch, tau, generator, hard, batch.num_graphs)


# --------------------------------------------------------------------------------------------- prior

def prior_ligand_pose(batch: DockingBatch, generator: torch.Generator | None = None,
                      rotations: torch.Tensor | None = None) -> DockingBatch:
    """The prior's input: batch.lig_pos (an RDKit conformer, e.g. data.etkdg_conformer) centred, randomly
    rotated per complex (or by the given rotations [B, 3, 3]), and moved to the protein centre (mean C-alpha)."""
    B, lb, rb, lp = batch.num_graphs, batch.lig_batch, batch.rec_batch, batch.lig_pos
    R = random_rotations(B, generator, lp.dtype) if rotations is None else rotations.to(lp.dtype)
    if R.shape != (B, 3, 3):
        raise ValueError(f"rotations: expected [{B}, 3, 3], got {tuple(R.shape)}")
    x = lp - scatter_mean(lp, lb, B)[lb]
    x = torch.einsum("nij,nj->ni", R[lb], x) + scatter_mean(batch.rec_pos, rb, B)[lb]
    return batch.with_ligand_pos(x)


def pointer_uniforms(seeds: Sequence[int], m: int = NUM_POINTERS, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[B, m] uniforms, row b from torch.Generator seeded with seeds[b] (per-sample reproducibility)."""
    return torch.stack([torch.rand(m, generator=torch.Generator().manual_seed(int(s)), dtype=dtype)
                        for s in seeds]) if len(seeds) else torch.zeros(0, m, dtype=dtype)


class PointerPrior(nn.Module):
    """p(z_1..z_m | protein, ligand conformer), autoregressive over latents; each factor a softmax over the
    complex's nodes. Wraps a trained score model (extra_node_dim = m + 1): for latent i its embedding and
    conv layers run at t = 1 with node features [one-hot z_<i, zeros, null flag = 1], then latent i's
    ligand / receptor MLP heads give one logit per node."""

    PRIOR_T = 1.0         # pretrained_score_encoder.py: set_time(data, 1, 1, 1, ...)
    PRIOR_NULL_FLAG = 1.0  # ... and unconditional = ones

    def __init__(self, score_model: TensorProductScoreModel, m: int = NUM_POINTERS, hidden: int = 128,
                 dropout: float = 0.0):
        super().__init__()
        if score_model.cfg.extra_node_dim != pointer_extra_dim(m):
            raise ValueError(f"score model needs extra_node_dim = {pointer_extra_dim(m)} for m = {m}")
        self.m = m
        self.score_model = score_model
        d = scalar_dim(score_model.cfg)
        dtype = next(score_model.parameters()).dtype
        self.lig_heads = nn.ModuleList(_head(d, hidden, 1, dropout) for _ in range(m)).to(dtype)
        self.rec_heads = nn.ModuleList(_head(d, hidden, 1, dropout) for _ in range(m)).to(dtype)
        self._frozen = False      # freeze_convs: the trunk keeps eval mode through train()

    def _trunk_modules(self) -> list[nn.Module]:
        sm = self.score_model
        return [sm.lig_node_embedding, sm.rec_node_embedding, sm.lig_edge_embedding, sm.rec_edge_embedding,
                sm.cross_edge_embedding, sm.conv_layers]

    def trunk_parameters(self):
        """The wrapped score model's node/edge embeddings and conv layers (what the prior uses of it)."""
        return [p for mod in self._trunk_modules() for p in mod.parameters()]

    def freeze_convs(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the pretrained trunk; the heads stay trainable. DisCo-Diff App. E: frozen for
        the first PRIOR_FREEZE_EPOCHS epochs. Frozen means unchanged: no gradients, and the trunk stays in
        eval mode through train() (batch-norm statistics fixed, no dropout)."""
        self._frozen = frozen
        for p in self.trunk_parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self._frozen:
            for mod in self._trunk_modules():
                mod.eval()
        return self

    def logits(self, batch: DockingBatch, z_prev: torch.Tensor, i: int, nodes: JointNodes | None = None
               ) -> torch.Tensor:
        """Logits [n_nodes] (joint order) of latent i given pointers z_prev [B, >= i] (columns < i used)."""
        nodes = nodes or joint_nodes(batch)
        dtype = batch.lig_pos.dtype
        n = len(nodes.batch)
        feats = torch.zeros(n, self.m + 1, dtype=dtype, device=batch.lig_pos.device)
        if i > 0:
            feats[:, :i] = pointer_features(z_prev[:, :i], nodes.counts, nodes.batch, dtype)
        feats[:, self.m] = self.PRIOR_NULL_FLAG
        s = self.score_model.node_scalars(with_node_extra(batch, feats, nodes), self.PRIOR_T)
        return _apply_heads(self.lig_heads[i], self.rec_heads[i], s, nodes.num_ligand).squeeze(1)

    def log_prob(self, batch: DockingBatch, z: torch.Tensor) -> torch.Tensor:
        """[B] sum_i log p(z_i | z_<i) for local pointers z [B, m] (teacher forcing: m forward passes)."""
        nodes = joint_nodes(batch)
        g = nodes.to_global(z)
        total = batch.lig_pos.new_zeros(batch.num_graphs)
        for i in range(self.m):
            lp = node_log_softmax(self.logits(batch, z, i, nodes), nodes.batch, num_graphs=nodes.num_graphs)
            total = total + lp[g[:, i]]
        return total

    @torch.no_grad()
    def sample(self, batch: DockingBatch, uniforms: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Local pointers [B, m]: latent i by inverse CDF of softmax(logits / T) over the complex's nodes
        (local order) at uniforms[:, i]; T = 0 takes the argmax."""
        nodes = joint_nodes(batch)
        B = nodes.num_graphs
        z = torch.zeros(B, self.m, dtype=torch.long, device=batch.lig_pos.device)
        for i in range(self.m):
            lg = self.logits(batch, z, i, nodes)
            if temperature <= 0:
                z[:, i] = nodes.local[node_argmax(lg, nodes.batch, B)]
            else:
                p = node_softmax(lg.double(), nodes.batch, temperature, B)
                z[:, i] = inverse_cdf(p, nodes, uniforms[:, i].double())
        return z


def inverse_cdf(p: torch.Tensor, nodes: JointNodes, u: torch.Tensor) -> torch.Tensor:
    """Local index per complex: the first node (local order) whose cumulative probability exceeds u [B]."""
    B = nodes.num_graphs
    key = nodes.batch * (int(nodes.counts.max()) + 1) + nodes.local
    order = torch.argsort(key)                                   # complex-contiguous, local order
    ps = p[order]
    cum = torch.cumsum(ps, 0)
    start = torch.cumsum(nodes.counts, 0) - nodes.counts
    before = torch.where(start > 0, cum[(start - 1).clamp_min(0)], cum.new_zeros(B))
    cdf = cum - before[nodes.batch[order]]
    below = (cdf <= u[nodes.batch[order]]).long()
    k = torch.zeros(B, dtype=torch.long, device=p.device).index_add_(0, nodes.batch[order], below)
    return torch.minimum(k, nodes.counts - 1)


__all__ = [
    "DroppedPointers", "JointNodes", "NUM_POINTERS", "POINTER_DROP_P", "PRIOR_FREEZE_EPOCHS", "PointerEncoder",
    "PointerEncoderConfig", "PointerPrior", "drop_pointers", "inverse_cdf", "joint_nodes", "local_index",
    "node_argmax", "node_gumbel_softmax", "node_log_softmax", "node_softmax",
    "pointer_extra_dim", "pointer_features", "pointer_node_input", "pointer_uniforms", "prior_ligand_pose", "random_rotations",
    "with_node_extra",
]
