"""DisCo-DiffDock-S: DiffDock-S's score model conditioned on m = 2 pointer latents, trained jointly with the
pointer encoder, then an autoregressive pointer prior on the trained score model (DisCo-Diff App. E, Table 4).

Facts (own code; gcorso/disco-diffdock @720bcb9, workdir/disco_diffdockS_score_model and
disco_diffdockS_ar_model model_parameters.yml, utils/sampling.py):

* stage 1 (score model + encoder, jointly): the encoder sees the crystal pose, a Gumbel-Softmax over each
  complex's nodes at tau = 1 (training_latent_temperature) gives soft pointer features, which are dropped per
  complex with probability 0.1 (latent_droprate; then the null flag on every node) and fed to the score model
  as node features of the noised complex; loss = DiffDock's score-matching loss (pose_diffusion). yml: batch
  24, lr 1e-3, t ~ Beta(2, 1), weights 0.33, encoder 3 layers 24/4, encoder cross cutoff 30 A.
* stage 2 (prior): targets are the frozen encoder's pointers at Gumbel temperature 0.01
  (sampling_latent_temperature), i.e. a Gumbel-max draw per complex, fresh every step (Algorithm 2); the
  prior (disco_latents.PointerPrior on the stage-1 score model) sees an RDKit conformer, randomly oriented and
  centred at the protein centre (no_randomness: true), and is fit by maximum likelihood; convolution layers
  frozen for the first 5 epochs (warmup_epochs 5); yml: batch 16, lr 1e-3.
* sampling: each of the N samples draws its own pointers from the prior (temperature T, App. E.5: T > 1 helps
  with 40 samples), then runs the reverse diffusion of the latent-conditioned score model.

Randomness: stage 1 draws every complex's noise, Gumbel noise and dropout from that complex's own generator;
a sample's pointers come from a generator seeded with seed + PRIOR_SEED_OFFSET (uniforms [m], then the
conformer's rotation), its pose from one seeded with seed (pose_diffusion.sample_poses), so the two streams
never share numbers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from bench.disco.gumbel import gumbel_noise
from bench.docking.data import Complex, etkdg_conformer
import copy

from bench.docking.disco_latents import (POINTER_DROP_P, PRIOR_FREEZE_EPOCHS, JointNodes,
                                         PointerEncoder, PointerEncoderConfig, PointerPrior, joint_nodes,
                                         node_argmax, node_gumbel_softmax, pointer_extra_dim, prior_ligand_pose,
                                         with_node_extra)
from bench.docking.noise import PoseNoiseConfig, SamplingTemperatures
from bench.docking.pose_diffusion import (F64, DockingTrainConfig, SampledPoses, draw_noised_batch, fit_docking,
                                          model_dtype,
                                          protein_centred, sample_poses, score_matching_loss)
from bench.docking.score_model import ScoreModelConfig, TensorProductScoreModel, make_batch
from bench.docking.so3 import random_rotations
from bench.train import TrainConfig, fit

PRIOR_SEED_OFFSET = 1 << 40   # a sample's prior stream: Generator seeded with seed + PRIOR_SEED_OFFSET
ENCODER_SAMPLING_TAU = 0.01   # sampling_latent_temperature: encoder pointers for the prior's targets


@dataclass(frozen=True)
class DisCoDiffDockConfig:
    score: ScoreModelConfig = field(default_factory=ScoreModelConfig)   # extra_node_dim is set to m + 1
    encoder: PointerEncoderConfig = field(default_factory=PointerEncoderConfig)
    drop_p: float = POINTER_DROP_P    # latent_droprate
    gumbel_tau: float = 1.0           # training_latent_temperature

    def __post_init__(self):
        if self.score.extra_node_dim != pointer_extra_dim(self.encoder.m):
            object.__setattr__(self, "score", dataclasses.replace(
                self.score, extra_node_dim=pointer_extra_dim(self.encoder.m)))
        if not 0 <= self.drop_p < 1:
            raise ValueError(f"drop_p must be in [0, 1), got {self.drop_p}")
        if not self.gumbel_tau > 0:
            raise ValueError(f"gumbel_tau must be > 0, got {self.gumbel_tau}")

    @property
    def m(self) -> int:
        return self.encoder.m

    @property
    def noise(self) -> PoseNoiseConfig:
        return self.score.noise


class DisCoDiffDockModel(nn.Module):
    """Stage-1 model: pointer encoder q(z | crystal complex) + latent-conditioned DiffDock-S score model."""

    def __init__(self, cfg: DisCoDiffDockConfig = DisCoDiffDockConfig(), dtype: torch.dtype | None = None):
        super().__init__()
        self.cfg = cfg
        self.score_model = TensorProductScoreModel(cfg.score, dtype=dtype)
        self.encoder = PointerEncoder(cfg.encoder, dtype=dtype)

    def pointer_input(self, crystal, nodes: JointNodes, gumbel: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
        """[n_nodes, m + 1] training input: Gumbel-Softmax pointer weights (noise `gumbel` [n, m]) from the
        encoder on `crystal` (protein-centred batch at the crystal pose), zeroed with the null flag set on the
        complexes where dropped [B] is True."""
        w = node_gumbel_softmax(self.encoder(crystal), nodes.batch, self.cfg.gumbel_tau,
                                num_graphs=nodes.num_graphs, gumbel=gumbel)
        keep = (~dropped).to(w.dtype)[nodes.batch]
        return torch.cat([w * keep[:, None], (1 - keep)[:, None]], 1)


def _per_complex_gumbel(nodes: JointNodes, m: int, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """[n_nodes, m] Gumbel noise in joint order, complex b's rows [its local order] drawn from gens[b]."""
    out = torch.empty(len(nodes.batch), m, dtype=F64)
    for b, g in enumerate(gens):
        rows = (nodes.batch == b).nonzero().squeeze(1)
        out[rows] = gumbel_noise((int(nodes.counts[b]), m), g).to(F64)[nodes.local[rows]]
    return out


def disco_loss_fn(complexes: Sequence[Complex], cfg: DockingTrainConfig):
    """loss_fn(model, generator, shard) for bench.train.fit (stage 1): as pose_diffusion.docking_loss_fn, plus
    per complex (from its own generator, after its pose noise): Gumbel noise over its nodes, then the dropout
    uniform."""
    complexes = list(complexes)
    if not complexes:
        raise ValueError("need at least one complex")

    def loss_fn(model, generator, shard):
        inner = getattr(model, "module", model)
        chosen, gens, noised = draw_noised_batch(complexes, cfg, inner.cfg.noise, generator, shard)
        dtype = model_dtype(inner)
        crystal = protein_centred(make_batch(chosen, dtype=F64))[0].to(dtype=dtype)
        nodes = joint_nodes(crystal)
        gumbel = _per_complex_gumbel(nodes, inner.cfg.m, gens)
        dropped = torch.cat([torch.rand(1, generator=g, dtype=F64) for g in gens]) < inner.cfg.drop_p
        extra = inner.pointer_input(crystal, nodes, gumbel, dropped)
        noised = dataclasses.replace(noised, batch=with_node_extra(noised.batch, extra.to(F64), nodes))
        return score_matching_loss(inner.score_model, noised, cfg.tr_weight, cfg.rot_weight, cfg.tor_weight).loss

    return loss_fn


def train_disco_diffdock(model: DisCoDiffDockModel, complexes: Sequence[Complex], cfg: DockingTrainConfig,
                         run_dir: Path, progress: bool = False, **fit_kwargs: Any) -> dict:
    """Stage 1: encoder and score model jointly, in place (bench.train.fit; cached by config and complexes)."""
    return fit_docking(model, disco_loss_fn(complexes, cfg), "disco_diffdock", complexes, cfg, run_dir,
                       "DisCo-DiffDock score model + encoder", progress, **fit_kwargs)


# ------------------------------------------------------------------------------------------ stage 2

@dataclass(frozen=True)
class PriorTrainConfig:
    """Stage 2 (yml disco_diffdockS_ar_model: batch 16, lr 1e-3; convs frozen for warmup_epochs = 5)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, batch_size=16, lr=1e-3))
    freeze_epochs: int = PRIOR_FREEZE_EPOCHS
    hidden: int = 128                 # latent_hidden_dim

    def freeze_steps(self, n_complexes: int) -> int:
        """Steps in the first freeze_epochs epochs (an epoch = one pass over the training complexes)."""
        per_epoch = -(-n_complexes // self.train.batch_size)
        return min(self.train.steps, self.freeze_epochs * per_epoch)


def make_prior(model: DisCoDiffDockModel, hidden: int = 128) -> PointerPrior:
    """A pointer prior on a copy of the stage-1 score model (disco-diffdock's PretrainedScoreEncoder loads the
    weights into its own network), so training the prior leaves the denoiser untouched."""
    return PointerPrior(copy.deepcopy(model.score_model), m=model.cfg.m, hidden=hidden)


class PointerConformers:
    """ETKDG conformer (seed 0) of each complex's ligand, computed once: the prior's ligand input."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, c: Complex) -> np.ndarray:
        if c.name not in self._cache:
            mol = etkdg_conformer(c.ligand, seed=self.seed)
            self._cache[c.name] = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
        return self._cache[c.name]


def prior_batch(complexes: Sequence[Complex], conformers: PointerConformers, rotations: torch.Tensor,
                dtype: torch.dtype):
    """The prior's input batch (protein-centred): each ligand's conformer rotated by rotations [B, 3, 3] and
    centred at the protein centre."""
    batch = make_batch(list(complexes), ligand_pos=[conformers(c) for c in complexes], dtype=F64)
    return protein_centred(prior_ligand_pose(batch, rotations=rotations))[0].to(dtype=dtype)


@torch.no_grad()
def encoder_pointers(encoder: PointerEncoder, complexes: Sequence[Complex],
                     gens: Sequence[torch.Generator]) -> torch.Tensor:
    """[B, m] local pointers of the (frozen) encoder on the crystal poses: the Gumbel-max draw that
    Gumbel-Softmax at tau = ENCODER_SAMPLING_TAU approximates (complex b's noise from gens[b])."""
    crystal = protein_centred(make_batch(list(complexes), dtype=F64))[0].to(dtype=model_dtype(encoder))
    nodes = joint_nodes(crystal)
    noisy = encoder(crystal).to(F64) + _per_complex_gumbel(nodes, encoder.cfg.m, gens)
    return nodes.local[node_argmax(noisy, nodes.batch, nodes.num_graphs)]


def prior_loss_fn(encoder: PointerEncoder, complexes: Sequence[Complex], batch_size: int,
                  conformers: PointerConformers):
    """loss_fn for fit: mean over the batch of -log p(z | protein, conformer) in nats per latent."""
    complexes = list(complexes)
    encoder.eval()

    def loss_fn(prior, generator, shard):
        idx = torch.randint(len(complexes), (batch_size,), generator=generator)
        seeds = torch.randint(0, 2 ** 62, (batch_size,), generator=generator)
        idx, seeds = shard.take(idx), shard.take(seeds)
        chosen = [complexes[i] for i in idx.tolist()]
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        z = encoder_pointers(encoder, chosen, gens)
        inner = getattr(prior, "module", prior)
        rot = torch.cat([random_rotations(1, g, F64) for g in gens])
        batch = prior_batch(chosen, conformers, rot, model_dtype(inner))
        return -prior(batch, z).mean() / inner.m

    return loss_fn


class _PriorLogProb(nn.Module):
    """PointerPrior with forward = log_prob, so fit (and DDP) can call it."""

    def __init__(self, prior: PointerPrior):
        super().__init__()
        self.prior = prior
        self.m = prior.m

    def forward(self, batch, z):
        return self.prior.log_prob(batch, z)


def train_pointer_prior(prior: PointerPrior, encoder: PointerEncoder, complexes: Sequence[Complex],
                        cfg: PriorTrainConfig, run_dir: Path, progress: bool = False,
                        conformers: PointerConformers | None = None, **fit_kwargs: Any) -> dict:
    """Stage 2 in place: first cfg.freeze_steps(len(complexes)) steps with the score model's embeddings and
    convs frozen (run_dir/frozen), then the rest with everything trainable (run_dir/unfrozen). conformers: the
    ligands' ETKDG conformers, when the caller has them already."""
    complexes = list(complexes)
    conformers = conformers if conformers is not None else PointerConformers()
    wrapped = _PriorLogProb(prior)
    n_frozen = cfg.freeze_steps(len(complexes))
    base = {"prior_hidden": cfg.hidden, "m": prior.m, "complexes": [c.name for c in complexes],
            "score_model": prior.score_model.cfg, "encoder": encoder.cfg}
    info: dict = {"seconds": 0.0, "frozen_steps": n_frozen}
    phases = [("frozen", n_frozen, True), ("unfrozen", cfg.train.steps - n_frozen, False)]
    wrapped.train()
    try:
        for i, (name, steps, frozen) in enumerate(phases):
            if steps <= 0:
                continue
            prior.freeze_convs(frozen)
            tc = dataclasses.replace(cfg.train, steps=steps, seed=cfg.train.seed + i)
            r = fit(wrapped, prior_loss_fn(encoder, complexes, tc.batch_size, conformers), tc,
                    Path(run_dir) / name, {**base, "phase": name, "after": info.get("last_phase", "")},
                    desc=f"DisCo-DiffDock prior ({name})", progress=progress, **fit_kwargs)
            info["seconds"] += r["seconds"]
            info["final_loss"] = r["final_loss"]
            info["last_phase"] = name
    finally:
        prior.freeze_convs(False)
        wrapped.eval()
    return info


# ------------------------------------------------------------------------------------------ sampling

def sample_pointers(prior: PointerPrior, complex: Complex, seeds: Sequence[int], temperature: float,
                    conformers: PointerConformers | None = None, batch_size: int = 32) -> torch.Tensor:
    """[n, m] local pointers for one complex, sample i from a generator seeded seeds[i] + PRIOR_SEED_OFFSET
    (uniforms [m], then the conformer's rotation)."""
    conformers = conformers or PointerConformers()
    was = prior.training
    prior.eval()
    out = []
    try:
        for c0 in range(0, len(seeds), batch_size):
            chunk = [int(s) + PRIOR_SEED_OFFSET for s in seeds[c0:c0 + batch_size]]
            gens = [torch.Generator().manual_seed(s) for s in chunk]
            u = torch.stack([torch.rand(prior.m, generator=g, dtype=F64) for g in gens])
            rot = torch.cat([random_rotations(1, g, F64) for g in gens])
            batch = prior_batch([complex] * len(chunk), conformers, rot, model_dtype(prior))
            out.append(prior.sample(batch, u, temperature))
    finally:
        prior.train(was)
    return torch.cat(out)


def sample_disco_poses(model: DisCoDiffDockModel, prior: PointerPrior, complex: Complex, seeds: Sequence[int],
                       prior_temperature: float = 1.0,
                       temperatures: SamplingTemperatures = SamplingTemperatures(),
                       conformers: PointerConformers | None = None, **sample_kwargs) -> tuple[SampledPoses, torch.Tensor]:
    """DisCo-DiffDock-S inference for one complex: per sample, pointers from the prior, then the
    latent-conditioned reverse diffusion (pose_diffusion.sample_poses; sample_kwargs passed on)."""
    z = sample_pointers(prior, complex, seeds, prior_temperature, conformers)
    return sample_poses(model.score_model, complex, seeds=seeds, temperatures=temperatures, pointers=z,
                        **sample_kwargs), z


__all__ = ["DisCoDiffDockConfig", "DisCoDiffDockModel", "ENCODER_SAMPLING_TAU", "PRIOR_SEED_OFFSET",
           "PointerConformers", "PriorTrainConfig", "disco_loss_fn", "encoder_pointers", "make_prior", "prior_batch",
           "prior_loss_fn", "sample_disco_poses", "sample_pointers", "train_disco_diffdock", "train_pointer_prior"]
