"""DiffDock's confidence model: ranks sampled poses; the top-1 of Table 4 is the most confident sample.

Facts (own code; read from gcorso/DiffDock v1.0 and gcorso/disco-diffdock @720bcb9, which agree here):

* architecture (``models/score_model.py``, ``confidence_mode=True``): the score model's embeddings and
  convolution layers, no translation/rotation/torsion heads; the ligand atoms' scalar features after the last
  layer, ``cat(h[:, :ns], h[:, -ns:])`` (the 0e and, from 3 layers on, the 0o channels; ``h[:, :ns]`` alone
  with fewer layers), are averaged per complex (``scatter_mean`` over the ligand batch) and mapped by
  ``confidence_predictor``: Linear(-> ns), BatchNorm1d, ReLU, Dropout, Linear(ns, ns), BatchNorm1d, ReLU,
  Dropout, Linear(ns, 1). ``confidence_no_batchnorm`` drops the BatchNorms, ``confidence_dropout`` is the
  dropout (paper_confidence_model yml: batch norm on, dropout 0.0).
* time (``confidence/dataset.py`` ``get``): every node and the complex get t = 0 (``complex_t``, ``node_t``);
  in confidence mode the time is used as sigma directly (no t_to_sigma), so the dynamic cross cutoff is
  3 * 0 + 20 = 20 A. Here the trunk runs with t fixed (``ConfidenceModelConfig.t``, default 0); its
  t_to_sigma(0) = tr_sigma_min gives a cross cutoff of 3 tr_sigma_min + 20 (20.3 A for DiffDock-S's 0.1).
  The time embedding (sin/cos of 0) is the same.
* training data (``confidence/dataset.py`` ``preprocessing``): ``samples_per_complex`` poses per training
  complex from the trained score model's reverse diffusion (``randomize_position`` + ``sampling``), with
  their RMSD to the crystal pose; an example is (complex, one sampled pose), label y = rmsd < cutoff
  (strict), cutoff ``rmsd_classification_cutoff`` = 2 A. NB DiffDock computes that RMSD *without* symmetry
  correction (plain per-atom RMSD); following this project's brief the labels here use the
  symmetry-corrected ``rmsd.symmetry_rmsd`` (Table 4's evaluation metric), which is never larger.
* loss (``confidence/confidence_train.py`` ``train_epoch``): ``F.binary_cross_entropy_with_logits(pred, y)``
  for one cutoff; accuracy = mean(y == (pred > 0)). (The paper yml gives the cutoff as a list [2.0], which
  makes DiffDock train a 2-class softmax with cross entropy: the same decision function, since only the
  logit difference matters; here the single-logit BCE form is used.)
* paper scale (``workdir/paper_confidence_model/model_parameters.yml``): ns 24, nv 6, 5 layers, batch 16,
  lr 3e-4, 7 samples x 4 cache ids = 28 poses per complex, 20 inference steps; balance false. The paper
  model is an all-atom model (``all_atoms: true``: receptor atoms as a third node type); not implemented,
  the C-alpha trunk of the score model is used.
* inference (``inference.py`` / ``evaluate.py``): N samples per complex are scored, sorted by confidence
  (descending), top-1 = the most confident (``rmsd.success_rates`` with ``ranking=confidence``).

The trunk is a ``TensorProductScoreModel`` built without torsion head and with its centre head removed;
``ConfidenceModel`` reads its ``node_scalars`` (the node features after the last convolution layer that the
score model's own forward uses), so the embedding and graph construction are the score model's code, not a
copy of it.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench.docking.data import Complex
from bench.docking.pose_diffusion import model_dtype, protein_centred, sample_poses
from bench.docking.rmsd import DEFAULT_TIMEOUT_S, SUCCESS_THRESHOLD, symmetry_rmsd
from bench.docking.score_model import (DockingBatch, ScoreModelConfig, TensorProductScoreModel, make_batch,
                                       scalar_dim, scatter_mean)
from bench.train import TrainConfig, fit

F64 = torch.float64
RMSD_CUTOFF = SUCCESS_THRESHOLD   # 2 A: DiffDock's rmsd_classification_cutoff (confidence_train.py default 2)
# score-model modules only the pose heads use (the torsion head is not built: no_torsion=True)
_HEAD_MODULES = ("center_distance_expansion", "center_edge_embedding", "final_conv", "tr_final_layer",
                 "rot_final_layer")


@dataclass(frozen=True)
class ConfidenceModelConfig:
    """trunk: the score-model architecture that is run in confidence mode (its pose heads are not built).
    batch_norm / dropout: the readout MLP's (DiffDock confidence_no_batchnorm = not batch_norm,
    confidence_dropout). t: the fixed diffusion time fed to the trunk (DiffDock: 0)."""
    trunk: ScoreModelConfig = field(default_factory=ScoreModelConfig)
    batch_norm: bool = True
    dropout: float = 0.0
    t: float = 0.0

    def __post_init__(self):
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.t <= 1:
            raise ValueError(f"t must be in [0, 1], got {self.t}")

    @classmethod
    def paper(cls, **overrides) -> "ConfidenceModelConfig":
        """DiffDock-S trunk (ns 24, nv 6, 5 layers), readout with batch norm, no dropout."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> "ConfidenceModelConfig":
        """For tests: ScoreModelConfig.tiny() trunk (3 layers, so 0o scalars exist), readout without batch norm."""
        kw: dict[str, Any] = dict(trunk=ScoreModelConfig.tiny(), batch_norm=False)
        kw.update(overrides)
        return cls(**kw)


class ConfidenceModel(nn.Module):
    """forward(batch: DockingBatch) -> [B] logits (one per complex; > 0 predicts RMSD < 2 A)."""

    def __init__(self, cfg: ConfidenceModelConfig = ConfidenceModelConfig(), dtype: torch.dtype | None = None):
        super().__init__()
        self.cfg = cfg
        self.trunk = TensorProductScoreModel(dataclasses.replace(cfg.trunk, no_torsion=True), dtype=dtype)
        for name in _HEAD_MODULES:
            delattr(self.trunk, name)
        ns = cfg.trunk.ns

        def norm():
            return nn.BatchNorm1d(ns) if cfg.batch_norm else nn.Identity()

        self.predictor = nn.Sequential(
            nn.Linear(self.n_scalars, ns), norm(), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(ns, ns), norm(), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(ns, 1))
        if dtype is not None:
            self.predictor.to(dtype)

    @property
    def n_scalars(self) -> int:
        """0e and, from 3 trunk layers on, 0o scalars (score_model.py confidence_mode: num_conv_layers >= 3)."""
        return scalar_dim(self.cfg.trunk)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def node_features(self, batch: DockingBatch) -> torch.Tensor:
        """[N + R, dim] node features after the trunk's last convolution (ligand atoms first), at t = cfg.t."""
        return self.trunk.node_features(batch, self.cfg.t)

    def pooled_scalars(self, batch: DockingBatch) -> torch.Tensor:
        """[B, n_scalars]: mean over each complex's ligand atoms of [0e channels, 0o channels]."""
        s = self.trunk.node_scalars(batch, self.cfg.t)[:len(batch.lig_pos)]
        return scatter_mean(s, batch.lig_batch, batch.num_graphs)

    def forward(self, batch: DockingBatch) -> torch.Tensor:
        if self.training and self.cfg.batch_norm and batch.num_graphs < 2:
            # confidence_train.py skips such batches: BatchNorm1d needs two complexes in training mode
            raise ValueError("training with batch norm needs at least 2 complexes per batch")
        return self.predictor(self.pooled_scalars(batch)).squeeze(1)


# ------------------------------------------------------------------------------------------ data

class ConfidenceExample(NamedTuple):
    complex: Complex
    pose: np.ndarray    # [N, 3] float64, original frame, atom order of complex.ligand
    rmsd: float         # symmetry-corrected RMSD to the crystal pose (A); NaN for a non-finite pose
    label: float        # 1.0 iff rmsd < cutoff


def rmsd_label(rmsd, cutoff: float = RMSD_CUTOFF) -> np.ndarray:
    """float64 labels 1.0 where rmsd < cutoff (strictly; dataset.py ``rmsds < rmsd_classification_cutoff``),
    else 0.0 (NaN included)."""
    r = np.asarray(rmsd, dtype=np.float64)
    return (np.nan_to_num(r, nan=np.inf) < cutoff).astype(np.float64)


def confidence_dataset(score_model: nn.Module, complexes: Sequence[Complex], n_samples: int,
                       seeds: Sequence[int] | None = None, cutoff: float = RMSD_CUTOFF,
                       rmsd_timeout_s: float | None = DEFAULT_TIMEOUT_S, **sample_kwargs) -> list[ConfidenceExample]:
    """n_samples poses per complex from the (trained) score model's reverse diffusion (pose_diffusion
    .sample_poses, sample_kwargs passed on: steps, actual_steps, ode, ...), each with its symmetry-corrected
    RMSD to the crystal pose and label rmsd < cutoff. seeds: n_samples * len(complexes) sample seeds, complex
    k using seeds[k n_samples:(k + 1) n_samples] (default: 0, 1, 2, ...). Examples come complex by complex."""
    complexes = list(complexes)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    seeds = list(range(n_samples * len(complexes))) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != n_samples * len(complexes):
        raise ValueError(f"{len(seeds)} seeds for {len(complexes)} complexes x {n_samples} samples")
    out = []
    for k, c in enumerate(complexes):
        poses = sample_poses(score_model, c, seeds=seeds[k * n_samples:(k + 1) * n_samples], **sample_kwargs).poses
        poses = poses.detach().cpu().numpy().astype(np.float64)
        rmsds = np.asarray(symmetry_rmsd(c.ligand, c.ligand_coords, poses, timeout_s=rmsd_timeout_s).values,
                           dtype=np.float64).reshape(-1)
        labels = rmsd_label(rmsds, cutoff)
        out += [ConfidenceExample(c, p, float(r), float(y)) for p, r, y in zip(poses, rmsds, labels)]
    return out


def _batch(complexes: Sequence[Complex], poses: Sequence, dtype: torch.dtype) -> DockingBatch:
    """Complexes with their ligand at poses, in the protein-centred frame (as the score model sees them)."""
    batch, _ = protein_centred(make_batch(list(complexes), ligand_pos=[np.asarray(p) for p in poses], dtype=F64))
    return batch.to(dtype=dtype)


def predict_logits(model: ConfidenceModel, complexes: Sequence[Complex], poses: Sequence,
                   batch_size: int = 32) -> torch.Tensor:
    """[n] float64 confidence logits of complexes[i] with its ligand at poses[i] ([N_i, 3], original frame);
    eval mode (restored afterwards), no gradients, batch_size complexes per forward pass."""
    if len(complexes) != len(poses):
        raise ValueError(f"{len(complexes)} complexes for {len(poses)} poses")
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for s in range(0, len(poses), batch_size):
                out.append(model(_batch(complexes[s:s + batch_size], poses[s:s + batch_size], model_dtype(model))))
    finally:
        model.train(was_training)
    return torch.cat(out).to(F64) if out else torch.zeros(0, dtype=F64)


def rank_samples(model: ConfidenceModel, complex: Complex, poses, batch_size: int = 32) -> torch.Tensor:
    """Confidence [n] (logits, higher = more confident) of n sampled poses [n, N, 3] of one complex; the top-1
    is ``argmax`` (pass as ``ranking`` to rmsd.success_rates)."""
    poses = np.asarray(poses.detach().cpu() if torch.is_tensor(poses) else poses, dtype=np.float64)
    if poses.ndim != 3:
        raise ValueError(f"poses: expected [n, N, 3], got shape {poses.shape}")
    return predict_logits(model, [complex] * len(poses), list(poses), batch_size)


def confidence_accuracy(model: ConfidenceModel, dataset: Sequence[ConfidenceExample]) -> float:
    """mean(label == (logit > 0)) over the dataset (confidence_train.py test_epoch accuracy)."""
    logits = predict_logits(model, [e.complex for e in dataset], [e.pose for e in dataset])
    labels = torch.tensor([e.label for e in dataset], dtype=F64)
    return float(((logits > 0).to(F64) == labels).to(F64).mean())


# ------------------------------------------------------------------------------------------ training

def confidence_loss_fn(dataset: Sequence[ConfidenceExample], batch_size: int):
    """loss_fn(model, generator, shard) for bench.train.fit: batch_size examples drawn with replacement by the
    generator (whole global batch on every rank, this shard's slice kept), BCE with logits against labels."""
    dataset = list(dataset)
    if not dataset:
        raise ValueError("empty confidence dataset")

    def loss_fn(model, generator, shard):
        idx = shard.take(torch.randint(len(dataset), (batch_size,), generator=generator)).tolist()
        ex = [dataset[i] for i in idx]
        logits = model(_batch([e.complex for e in ex], [e.pose for e in ex], model_dtype(model)))
        labels = torch.tensor([e.label for e in ex], dtype=logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, labels)

    return loss_fn


def _fingerprint(dataset: Sequence[ConfidenceExample]) -> dict:
    h = hashlib.sha256()
    for e in dataset:
        h.update(e.complex.name.encode())
        h.update(np.ascontiguousarray(e.pose, dtype=np.float64).tobytes())
        h.update(np.float64(e.label).tobytes())
    return {"n": len(dataset), "sha256": h.hexdigest()}


def train_confidence(model: ConfidenceModel, dataset: Sequence[ConfidenceExample], cfg: TrainConfig,
                     run_dir: Path, progress: bool = False, **fit_kwargs: Any) -> dict:
    """Train the confidence model in place with bench.train.fit (BCE with logits); returns fit's result. The
    checkpoint cache key covers the model config, cfg and a hash of the examples (names, poses, labels)."""
    model_config = {"confidence_model": model.cfg, "dataset": _fingerprint(dataset)}
    model.train()
    try:
        return fit(model, confidence_loss_fn(dataset, cfg.batch_size), cfg, Path(run_dir), model_config,
                   desc="confidence model", progress=progress, **fit_kwargs)
    finally:
        model.eval()


__all__ = ["ConfidenceExample", "ConfidenceModel", "ConfidenceModelConfig", "RMSD_CUTOFF", "confidence_accuracy",
           "confidence_dataset", "confidence_loss_fn", "predict_logits", "rank_samples", "rmsd_label",
           "train_confidence"]
