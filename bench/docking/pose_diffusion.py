"""DiffDock's pose diffusion around the score model: forward noising with score targets, the denoising
score-matching loss, reverse-SDE/ODE sampling of poses, and a training helper over bench.train.fit.

Facts (own code; read from gcorso/disco-diffdock @720bcb9, the code behind DisCo-Diff's Table 4, and
gcorso/DiffDock v1.0-era, which agrees on everything used here unless noted):

* noising (datasets_utils/pdbbind.py `NoiseTransform.apply_noise`): one t shared by tr/rot/tor;
  tr_update ~ N(0, sigma_tr^2 I_3), rot_update ~ IGSO(3)(sigma_rot) (so3.sample_vec), torsion updates
  ~ N(0, sigma_tor^2) per rotatable bond; applied with diffusion_utils.modify_conformer (rigid move about the
  ligand centre, torsions, Kabsch back onto the rigid pose). Targets: tr_score = -tr_update / sigma_tr^2,
  rot_score = so3.score_vec(rot_update, sigma_rot), tor_score = torus.score(tor_update, sigma_tor),
  tor_sigma_edge = sigma_tor per bond.
* t distribution (`NoiseTransform.__call__`): t ~ Beta(sampling_alpha, sampling_beta); DiffDock-S's
  workdir/diffdockS_score_model/model_parameters.yml has sampling_alpha 2, sampling_beta 1 (v1.0's
  paper_score_model: train_sampling linear, i.e. uniform). DockingTrainConfig defaults to Beta(2, 1).
* frame (`PDBBind.get_complex`): receptor and ligand are shifted by the protein centre (mean C-alpha);
  poses are returned in the original frame by adding it back (`original_center`).
* loss (utils/training.py `loss_function`): tr = mean((pred - score)^2 sigma_tr^2) over complexes x 3,
  rot = mean(((pred - score) / so3.score_norm(sigma_rot))^2), tor = mean((pred - score)^2 / torus
  E[score^2](sigma_tor)) over all rotatable bonds of the batch (0 when there are none); total =
  tr_weight tr + rot_weight rot + tor_weight tor with 0.33 each (DiffDock-S yml). "base" losses are the
  same with pred = 0.
* sampling (utils/sampling.py `randomize_position`, `sampling`): start from the RDKit conformer with
  torsions ~ U(-pi, pi), centred, uniformly rotated, translated by N(0, tr_sigma_max^2 I) (protein-centred
  frame); then per step t_i: perturb = g^2 dt score + g sqrt(dt) z (ODE: 0.5 g^2 dt score) for tr, rot,
  tor, applied with modify_conformer; schedule, dt, g, actual_steps and the final-step noise are in noise.py.
  NB: disco-diffdock's sampling.py uses g_rot = sigma_rot sqrt(2 ln(max/min)) (noise.py rot_g="consistent"),
  DiffDock v1.0 twice that g^2 (rot_g="v1.0"); sample_poses uses whatever the PoseNoiseConfig says.
* training conformer: DiffDock trains on the ETKDG conformer torsion-matched to the crystal pose
  (`get_lig_graph_with_matching`); here the crystal pose itself is noised (no matching step).

Randomness: every complex (noising) and every sample (sampling) draws from its own torch.Generator, so a
sample's pose depends only on its seed, not on what else is in the batch.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from bench.docking import so3, torus
from bench.docking.data import Complex, etkdg_conformer, rotatable_bonds
from bench.docking.noise import PoseNoiseConfig, SamplingTemperatures, ode_perturb, reverse_plan, t_to_sigma, tempered_perturb
from bench.docking.score_model import DockingBatch, graph_segments, ligand_bond_graph, make_batch, scatter_mean
from bench.docking.torsion import apply_torsion_updates, modify_conformer, rotatable_bond_masks
from bench.train import TrainConfig, fit

F64 = torch.float64


# ------------------------------------------------------------------------------------------ helpers

def model_dtype(model: nn.Module) -> torch.dtype:
    """dtype of the model's parameters (the default dtype for a model without any)."""
    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None else torch.get_default_dtype()


@dataclass
class _Ligand:
    """One complex's ligand inside a batch: atom range, local rotatable bonds and their rotated-side masks."""
    start: int
    end: int
    bond_start: int
    bond_end: int
    bonds: np.ndarray   # [m, 2] local atom indices
    masks: np.ndarray   # [m, n] bool


def _ligands(batch: DockingBatch) -> list[_Ligand]:
    """Per-complex torsion topology of a batch (masks as torsion.rotatable_bond_masks)."""
    B = batch.num_graphs
    atoms = graph_segments(batch.lig_batch, len(batch.lig_batch), B)
    tors = graph_segments(batch.tor_batch, len(batch.tor_bonds), B)
    edges = batch.lig_bond_index.T.cpu().numpy()
    out = []
    for (s, e), (bs, be) in zip(atoms, tors):
        local = edges[(edges[:, 0] >= s) & (edges[:, 0] < e)] - s
        bonds = batch.tor_bonds[bs:be].cpu().numpy() - s
        masks = rotatable_bond_masks(local, e - s, [tuple(b) for b in bonds])
        out.append(_Ligand(s, e, bs, be, bonds.reshape(-1, 2), masks))
    return out


def _generators(generator, n: int) -> list[torch.Generator]:
    if isinstance(generator, torch.Generator):
        return [generator] * n
    gens = list(generator)
    if len(gens) != n:
        raise ValueError(f"{len(gens)} generators for {n} complexes")
    return gens


def protein_centred(batch: DockingBatch) -> tuple[DockingBatch, torch.Tensor]:
    """Batch (float64) shifted so each complex's protein centre (mean C-alpha) is at the origin, the frame the
    score and confidence models see (PDBBind.get_complex); centres [B, 3]."""
    rec = batch.rec_pos.to(F64)
    centre = scatter_mean(rec, batch.rec_batch, batch.num_graphs)
    return (dataclasses.replace(batch, rec_pos=rec - centre[batch.rec_batch],
                                lig_pos=batch.lig_pos.to(F64) - centre[batch.lig_batch]), centre)


# ------------------------------------------------------------------------------------------ noising

@dataclass
class NoisedBatch:
    """A noised batch in the protein-centred frame (float64) with DiffDock's score targets and normalisers.

    B complexes, M rotatable bonds in total (batch.tor_bonds order)."""
    batch: DockingBatch           # ligand at the noisy pose, receptor and ligand shifted by -centre
    centre: torch.Tensor          # [B, 3] protein centres subtracted (original frame = pos + centre)
    t: torch.Tensor               # [B] diffusion time, shared by tr/rot/tor
    tr_sigma: torch.Tensor        # [B]
    rot_sigma: torch.Tensor       # [B]
    tor_sigma: torch.Tensor       # [M] sigma_tor of each bond's complex (DiffDock tor_sigma_edge)
    tr_update: torch.Tensor       # [B, 3]
    rot_update: torch.Tensor      # [B, 3] rotation vectors
    tor_update: torch.Tensor      # [M] radians, unwrapped normal draws
    tr_score: torch.Tensor        # [B, 3] = -tr_update / tr_sigma^2
    rot_score: torch.Tensor       # [B, 3] = so3.score_vec(rot_update, rot_sigma)
    tor_score: torch.Tensor       # [M] = torus.score(tor_update, tor_sigma)
    rot_score_norm: torch.Tensor  # [B] so3.score_norm(rot_sigma)
    tor_score_norm2: torch.Tensor  # [M] torus.mean_sq_score(tor_sigma)


def _as_batch(complex_or_batch) -> DockingBatch:
    if isinstance(complex_or_batch, DockingBatch):
        return complex_or_batch
    if isinstance(complex_or_batch, Complex):
        return make_batch([complex_or_batch], dtype=F64)
    return make_batch(list(complex_or_batch), dtype=F64)


def noise_complex(complex_or_batch, t, generator, cfg: PoseNoiseConfig,
                  no_torsion: bool = False) -> NoisedBatch:
    """DiffDock's forward noising of the ligand pose(s) at time t (float or [B]).

    complex_or_batch: a Complex, a list of them, or a DockingBatch whose lig_pos is the pose to noise
    (make_batch default: the crystal pose). generator: one torch.Generator for all, or one per complex
    (then a complex's noise does not depend on the rest of the batch). Draws per complex, in order:
    tr [3], rot (IGSO(3) angle then axis), tor [m]. no_torsion: rigid noise only (targets tor = []).
    """
    batch, centre = protein_centred(_as_batch(complex_or_batch))
    B = batch.num_graphs
    t = torch.as_tensor(t, dtype=F64).reshape(-1)
    t = t.expand(B).clone() if t.numel() == 1 else t
    if t.numel() != B:
        raise ValueError(f"{t.numel()} times for {B} complexes")
    tr_s, rot_s, tor_s = t_to_sigma(t, t, t, cfg)
    gens = _generators(generator, B)
    ligs = _ligands(batch)
    pos = batch.lig_pos.clone()
    tr_u, rot_u, tor_u = torch.zeros(B, 3, dtype=F64), torch.zeros(B, 3, dtype=F64), []
    for b, (lig, g) in enumerate(zip(ligs, gens)):
        tr_u[b] = tr_s[b] * torch.randn(3, generator=g, dtype=F64)
        rot_u[b] = so3.sample_rotvec(rot_s[b:b + 1], g)[0]
        m = 0 if no_torsion else len(lig.bonds)
        tor = tor_s[b] * torch.randn(m, generator=g, dtype=F64)
        tor_u.append(tor)
        pos[lig.start:lig.end] = modify_conformer(
            pos[lig.start:lig.end], tr_u[b], rot_u[b], tor if m else None, lig.bonds, lig.masks)
    tor_u = torch.cat(tor_u)
    tor_sig = tor_s[batch.tor_batch] if len(tor_u) else tor_u.new_zeros(0)
    return NoisedBatch(
        batch=batch.with_ligand_pos(pos), centre=centre, t=t, tr_sigma=tr_s, rot_sigma=rot_s, tor_sigma=tor_sig,
        tr_update=tr_u, rot_update=rot_u, tor_update=tor_u,
        tr_score=-tr_u / tr_s[:, None] ** 2,
        rot_score=so3.score_vec(rot_u, rot_s),
        tor_score=torus.score(tor_u, tor_sig) if len(tor_u) else tor_u.new_zeros(0),
        rot_score_norm=so3.score_norm(rot_s),
        tor_score_norm2=torus.mean_sq_score(tor_sig) if len(tor_u) else tor_u.new_zeros(0))


# --------------------------------------------------------------------------------------------- loss

@dataclass
class ScoreLoss:
    loss: torch.Tensor       # scalar, differentiable
    tr: torch.Tensor         # scalar components (detached)
    rot: torch.Tensor
    tor: torch.Tensor
    tr_base: torch.Tensor    # the same with predictions 0
    rot_base: torch.Tensor
    tor_base: torch.Tensor


def score_matching_loss(model: nn.Module, noised: NoisedBatch, tr_weight: float = 0.33, rot_weight: float = 0.33,
                        tor_weight: float = 0.33) -> ScoreLoss:
    """DiffDock's weighted denoising score-matching loss (utils/training.py loss_function, apply_mean=True)."""
    dtype = model_dtype(model)
    out = model(noised.batch.to(dtype=dtype), noised.t.to(dtype))
    tr_pred, rot_pred, tor_pred = out.tr.to(F64), out.rot.to(F64), out.tor.to(F64)

    def tr_term(p):
        return ((p - noised.tr_score) ** 2 * noised.tr_sigma[:, None] ** 2).mean()

    def rot_term(p):
        return (((p - noised.rot_score) / noised.rot_score_norm[:, None]) ** 2).mean()

    def tor_term(p):
        if len(noised.tor_score) == 0:   # no rotatable bond, or rigid noise: no torsion loss and no gradient
            return noised.tor_score.new_zeros(())
        return ((p - noised.tor_score) ** 2 / noised.tor_score_norm2).mean()

    tr, rot, tor = tr_term(tr_pred), rot_term(rot_pred), tor_term(tor_pred)
    loss = tr_weight * tr + rot_weight * rot + tor_weight * tor
    zero = torch.zeros_like
    return ScoreLoss(loss, tr.detach(), rot.detach(), tor.detach(), tr_term(zero(tr_pred)).detach(),
                     rot_term(zero(rot_pred)).detach(),
                     tor_term(zero(noised.tor_score)).detach())


# ----------------------------------------------------------------------------------------- sampling

@dataclass
class SampledPoses:
    poses: torch.Tensor     # [n_samples, N_atoms, 3] float64, original (input) frame
    nfe: int                # score evaluations per sample (= executed reverse steps)
    model_calls: int        # forward passes in total (nfe x number of sample chunks)
    conformer: np.ndarray   # [N_atoms, 3] the RDKit conformer sampling started from (original atom order)


def _random_start(conformer: torch.Tensor, bonds: np.ndarray, masks: np.ndarray, m: int, g: torch.Generator,
                  tr_sigma_max: float) -> torch.Tensor:
    """randomize_position: torsions ~ U(-pi, pi) [m], centred, uniformly rotated (Gaussian quaternion [4]),
    translated by N(0, tr_sigma_max^2 I) [3]; drawn from g in that order."""
    tor0 = (torch.rand(m, generator=g, dtype=F64) * 2 - 1) * math.pi
    x = apply_torsion_updates(conformer, bonds, masks, tor0) if m else conformer
    x = (x - x.mean(0, keepdim=True)) @ so3.random_rotations(1, g)[0].T
    return x + tr_sigma_max * torch.randn(3, generator=g, dtype=F64)


def _perturbations(step, tr_sc: torch.Tensor, rot_sc: torch.Tensor, tor_sc: torch.Tensor | None, m: int,
                   g: torch.Generator, ode: bool, cfg: PoseNoiseConfig, temps: SamplingTemperatures) -> tuple:
    """One sample's (tr, rot, tor) updates at one reverse step (tor None when m = 0); the SDE draws z_tr [3],
    z_rot [3], z_tor [m] from g when the step adds noise."""
    if ode:
        return (ode_perturb(tr_sc, step.g_tr, step.dt), ode_perturb(rot_sc, step.g_rot, step.dt),
                ode_perturb(tor_sc, step.g_tor, step.dt) if m else None)
    z = [torch.randn(k, generator=g, dtype=F64) if step.add_noise else None for k in (3, 3, m)]
    tr = tempered_perturb(tr_sc, step.g_tr, step.dt, z[0], step.sigma_tr, cfg.tr_sigma_min, cfg.tr_sigma_max, temps.tr)
    rot = tempered_perturb(rot_sc, step.g_rot, step.dt, z[1], step.sigma_rot, cfg.rot_sigma_min, cfg.rot_sigma_max,
                           temps.rot)
    tor = (tempered_perturb(tor_sc, step.g_tor, step.dt, z[2], step.sigma_tor, cfg.tor_sigma_min, cfg.tor_sigma_max,
                            temps.tor) if m else None)
    return tr, rot, tor


def _latent_input(model: nn.Module, batch: DockingBatch, pointers: torch.Tensor | None) -> DockingBatch:
    """batch with the DisCo pointer node features of a latent-conditioned score model (extra_node_dim > 0):
    one-hot pointers [B, m] with the null flag 0, or, for pointers None, the null flag alone (unconditional)."""
    extra_dim = getattr(model.cfg, "extra_node_dim", 0)
    if not extra_dim:
        if pointers is not None:
            raise ValueError("pointers given to a score model without latent input (extra_node_dim = 0)")
        return batch
    from bench.docking.disco_latents import pointer_node_input, with_node_extra
    return with_node_extra(batch, pointer_node_input(batch, pointers, extra_dim - 1))


def sample_poses(model: nn.Module, complex: Complex, n_samples: int | None = None,
                 seeds: Sequence[int] = (0,), cfg: PoseNoiseConfig | None = None, steps: int = 20,
                 actual_steps: int | None = 18, no_final_step_noise: bool = True, ode: bool = False,
                 batch_size: int = 32, conformer: np.ndarray | None = None, conformer_seed: int = 0,
                 no_torsion: bool = False, temperatures: SamplingTemperatures = SamplingTemperatures(),
                 pointers: torch.Tensor | None = None) -> SampledPoses:
    """Reverse diffusion of ligand poses for one complex (DiffDock utils/sampling.py).

    seeds: one per sample (n_samples, when given, must equal len(seeds)); sample i draws only from
    torch.Generator().manual_seed(seeds[i]): initial torsions U(-pi, pi) [m], rotation (Gaussian
    quaternion) [4], translation [3], then per step z_tr [3], z_rot [3], z_tor [m] (not drawn when the step
    adds no noise, or ode). cfg: noise ranges and step sizes (default: the model's cfg.noise); steps,
    actual_steps and no_final_step_noise override its inference_steps / actual_steps / no_final_step_noise.
    conformer: starting ligand coordinates [N, 3] (default: ETKDG of complex.ligand with conformer_seed).
    Samples are evaluated batch_size at a time; the model runs in eval mode (restored afterwards).
    temperatures: low-temperature sampling per component (SDE only). pointers: DisCo-DiffDock latents
    [n_samples, m] (local node indices) for a latent-conditioned score model, one row per sample; None with
    such a model samples unconditionally (null flag on every node).
    """
    seeds = [int(s) for s in seeds]
    if n_samples is not None and n_samples != len(seeds):
        raise ValueError(f"n_samples={n_samples} but {len(seeds)} seeds")
    if not seeds:
        raise ValueError("need at least one seed")
    cfg = cfg if cfg is not None else model.cfg.noise
    cfg = dataclasses.replace(cfg, inference_steps=steps, actual_steps=actual_steps,
                              no_final_step_noise=no_final_step_noise)
    plan = reverse_plan(cfg)
    dtype = model_dtype(model)
    if ode and not temperatures.is_off:
        raise ValueError("sampling temperatures apply to the reverse SDE, not the ODE")
    if pointers is not None:
        pointers = torch.as_tensor(pointers, dtype=torch.long)
        if pointers.ndim != 2 or len(pointers) != len(seeds):
            raise ValueError(f"pointers: expected [{len(seeds)}, m], got {tuple(pointers.shape)}")

    if conformer is None:
        conformer = etkdg_conformer(complex.ligand, seed=conformer_seed).GetConformer().GetPositions()
    conformer = np.asarray(conformer, dtype=np.float64).reshape(-1, 3)
    n = complex.num_ligand_atoms
    if conformer.shape != (n, 3):
        raise ValueError(f"conformer of shape {conformer.shape}, expected {(n, 3)}")
    bonds = rotatable_bonds(complex.ligand)
    edges = ligand_bond_graph(complex.ligand)[0].T
    masks = rotatable_bond_masks(edges, n, [tuple(b) for b in bonds])
    m = 0 if no_torsion else len(bonds)
    centre = torch.as_tensor(complex.ca_coords, dtype=F64).mean(0)
    conf = torch.as_tensor(conformer, dtype=F64)

    n_chunks = -(-len(seeds) // batch_size)
    was_training = model.training
    model.eval()
    poses = []
    try:
        for c0 in range(0, len(seeds), batch_size):
            chunk = seeds[c0:c0 + batch_size]
            b = len(chunk)
            gens = [torch.Generator().manual_seed(s) for s in chunk]
            pos = [_random_start(conf, bonds, masks, m, g, cfg.tr_sigma_max) for g in gens]
            base = protein_centred(make_batch([complex] * b, dtype=F64))[0]
            z = None if pointers is None else pointers[c0:c0 + b]
            base = _latent_input(model, base, z).to(dtype=dtype)
            for step in plan:
                with torch.no_grad():
                    out = model(base.with_ligand_pos(torch.cat(pos).to(dtype)), torch.full((b,), step.t, dtype=dtype))
                tr_sc, rot_sc = out.tr.to(F64), out.rot.to(F64)
                tor_sc = out.tor.to(F64).reshape(b, -1) if m else [None] * b
                for i, g in enumerate(gens):
                    update = _perturbations(step, tr_sc[i], rot_sc[i], tor_sc[i], m, g, ode, cfg, temperatures)
                    pos[i] = modify_conformer(pos[i], *update, bonds, masks)
            poses += [p + centre for p in pos]
    finally:
        model.train(was_training)
    return SampledPoses(torch.stack(poses), len(plan), len(plan) * n_chunks, conformer)


# ----------------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class DockingTrainConfig:
    """Score-model training on a list of complexes (DiffDock-S yml: batch 16, lr 1e-3, weights 0.33,
    t ~ Beta(2, 1)). The noise ranges are the model's (model.cfg.noise), so targets and the model's sigma
    scaling always agree. DiffDock's EMA (0.999 per step), plateau LR scheduler and epoch shuffling are not
    reproduced: complexes are drawn with replacement by fit's generator."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, batch_size=16, lr=1e-3))
    t_alpha: float = 2.0      # sampling_alpha
    t_beta: float = 1.0       # sampling_beta
    tr_weight: float = 0.33
    rot_weight: float = 0.33
    tor_weight: float = 0.33
    no_torsion: bool = False

    def __post_init__(self):
        if not (self.t_alpha > 0 and self.t_beta > 0):
            raise ValueError("t_alpha and t_beta must be > 0")
        if self.t_alpha != 1.0 and self.t_beta != 1.0:
            raise ValueError("t ~ Beta(a, b) is drawn by inverse CDF: one of t_alpha, t_beta must be 1")


def sample_t(n: int, alpha: float, beta: float, generator: torch.Generator) -> torch.Tensor:
    """[n] t ~ Beta(alpha, beta) with alpha or beta = 1, by inverse CDF (Beta(a,1): u^(1/a); Beta(1,b):
    1 - (1-u)^(1/b))."""
    u = torch.rand(n, generator=generator, dtype=F64)
    if beta == 1.0:
        return u ** (1.0 / alpha)
    if alpha == 1.0:
        return 1 - (1 - u) ** (1.0 / beta)
    raise ValueError("one of alpha, beta must be 1")


class NoisedDraw(NamedTuple):
    complexes: list[Complex]          # this shard's complexes
    generators: list[torch.Generator]  # one per complex, advanced past its pose noise
    noised: NoisedBatch


def draw_noised_batch(complexes: Sequence[Complex], cfg: DockingTrainConfig, noise: PoseNoiseConfig,
                      generator: torch.Generator, shard) -> NoisedDraw:
    """One training step's batch: the global batch's complex indices, times and per-complex seeds drawn from
    the generator (the same on every rank), this shard's slice kept and noised (each complex from its own
    generator, which the caller may go on drawing from)."""
    B = cfg.train.batch_size
    idx = torch.randint(len(complexes), (B,), generator=generator)
    t = sample_t(B, cfg.t_alpha, cfg.t_beta, generator)
    seeds = torch.randint(0, 2 ** 62, (B,), generator=generator)
    idx, t, seeds = shard.take(idx), shard.take(t), shard.take(seeds)
    chosen = [complexes[i] for i in idx.tolist()]
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return NoisedDraw(chosen, gens, noise_complex(chosen, t, gens, noise, no_torsion=cfg.no_torsion))


def docking_loss_fn(complexes: Sequence[Complex], cfg: DockingTrainConfig):
    """loss_fn(model, generator, shard) for bench.train.fit: draw_noised_batch, then the score-matching loss."""
    complexes = list(complexes)
    if not complexes:
        raise ValueError("need at least one complex")

    def loss_fn(model, generator, shard):
        inner = getattr(model, "module", model)   # DDP
        noised = draw_noised_batch(complexes, cfg, inner.cfg.noise, generator, shard).noised
        return score_matching_loss(model, noised, cfg.tr_weight, cfg.rot_weight, cfg.tor_weight).loss

    return loss_fn


def fit_docking(model: nn.Module, loss_fn, model_key: str, complexes: Sequence[Complex], cfg: DockingTrainConfig,
                run_dir: Path, desc: str, progress: bool = False, **fit_kwargs: Any) -> dict:
    """bench.train.fit in train mode (eval mode afterwards); the cache key is {model_key: model.cfg, the docking
    config without its TrainConfig (fit adds that), the complexes' names}."""
    model_config = {model_key: model.cfg, "docking": dataclasses.replace(cfg, train=TrainConfig()),
                    "complexes": [c.name for c in complexes]}
    model.train()
    try:
        return fit(model, loss_fn, cfg.train, Path(run_dir), model_config, desc=desc, progress=progress,
                   **fit_kwargs)
    finally:
        model.eval()


def train_score_model(model: nn.Module, complexes: Sequence[Complex], cfg: DockingTrainConfig, run_dir: Path,
                      progress: bool = False, **fit_kwargs: Any) -> dict:
    """Train `model` (a TensorProductScoreModel) in place with bench.train.fit; returns fit's result."""
    return fit_docking(model, docking_loss_fn(complexes, cfg), "score_model", complexes, cfg, run_dir,
                       "docking score model", progress, **fit_kwargs)


__all__ = ["DockingTrainConfig", "NoisedBatch", "NoisedDraw", "draw_noised_batch", "fit_docking", "SampledPoses", "ScoreLoss", "docking_loss_fn", "model_dtype",
           "noise_complex", "protein_centred", "sample_poses", "sample_t", "score_matching_loss", "train_score_model"]
