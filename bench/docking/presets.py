"""Table 4 presets per scale: data, the three networks, their training and the inference protocol.
DiffDock-S is baselines/diffdock_s.py's preset; DisCo-DiffDock-S is that score network plus pointer latents.

paper: DiffDock-S / DisCo-DiffDock-S as trained for DisCo-Diff Table 4 (gcorso/disco-diffdock README and
workdir/*/model_parameters.yml; App. E.5): PDBBind time split, 40 samples, 20 steps (all executed, no
final-step noise), the README's tuned low-temperature settings and the prior's softmax temperature
exp(1.5) (--log_softmax_latent_temperature=-1.5 multiplies the logits by exp(-1.5)). Steps are 1000 epochs
of the training split at the yml batch sizes; DiffDock's plateau scheduler, EMA and validation-based
checkpoint choice are not reproduced.
small / smoke: the same pipeline on the offline crystal complexes (re-docking the training complexes), with
smaller networks; no temperature tuning (all off).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from baselines.diffdock_s import LABEL as DIFFDOCK_S
from baselines.diffdock_s import PAPER_EPOCHS, PAPER_TRAIN_COMPLEXES, diffdock_s_preset, epochs_to_steps, small_train
from bench.docking.confidence import ConfidenceModelConfig
from bench.docking.disco_diffdock import DisCoDiffDockConfig, PriorTrainConfig
from bench.docking.disco_latents import PointerEncoderConfig
from bench.docking.noise import LowTemperature, SamplingTemperatures
from bench.docking.pose_diffusion import DockingTrainConfig
from bench.docking.score_model import ScoreModelConfig
from bench.train import TrainConfig

DISCO_DIFFDOCK_S = "DisCo-DiffDock-S"
# gcorso/disco-diffdock README evaluate command for DisCo-DiffDock-S (as baselines/diffdock_s.TEMPERATURES)
DISCO_DIFFDOCK_S_TEMPERATURES = SamplingTemperatures(
    tr=LowTemperature(1.546842681537956, 1.2685697872473618, 0.8456140350087653),
    rot=LowTemperature(4.005218254154881, 1.2760150490206228, 0.453446580767075),
    tor=LowTemperature(3.6499018519649384, 2.0625243924678136, 0.3292199987743284))
POCKET_RADIUS = 12.0                 # A, smoke and small tiers (the offline pockets keep 62-90 residues)
DISCO_PRIOR_TEMPERATURE = math.exp(1.5)   # README: log_softmax_latent_temperature = -1.5 (inverse temperature)


@dataclass(frozen=True)
class DockingPreset:
    scale: str
    data: str                                 # "offline" (crystal complexes shipped by packages) or "pdbbind"
    offline_names: tuple[str, ...] | None     # offline complexes used (None: all available)
    score: ScoreModelConfig                   # DiffDock-S score model (and DisCo's denoiser, + latent input)
    encoder: PointerEncoderConfig
    score_train: DockingTrainConfig           # DiffDock-S
    disco_train: DockingTrainConfig           # DisCo-DiffDock-S stage 1 (encoder + denoiser)
    prior_train: PriorTrainConfig
    confidence: ConfidenceModelConfig
    confidence_train: TrainConfig
    confidence_samples: int                   # poses per training complex for the confidence data
    n_samples: int                            # poses per test complex (Table 4: 40)
    inference_steps: int = 20
    actual_steps: int | None = None           # None: all inference_steps (README: --actual_steps 20)
    diffdock_temperatures: SamplingTemperatures = field(default_factory=SamplingTemperatures)
    disco_temperatures: SamplingTemperatures = field(default_factory=SamplingTemperatures)
    prior_temperature: float = 1.0
    sample_batch: int = 40                    # poses per forward pass (README --batch_size 40)
    # Pocket docking below paper scale: the receptor keeps only the residues whose C-alpha is within this many
    # A of the crystal ligand (data.crop_to_pocket). It gives the pocket away, and it makes a training step
    # ~10x cheaper on big proteins (1of6: 2,770 residues -> 70). None: blind docking on the whole protein.
    pocket_radius: float | None = None

    @property
    def disco(self) -> DisCoDiffDockConfig:
        return DisCoDiffDockConfig(score=self.score, encoder=self.encoder)

    @property
    def nfe(self) -> int:
        return self.actual_steps if self.actual_steps is not None else self.inference_steps

    def with_esm(self, esm_dim: int) -> "DockingPreset":
        """The same preset with ESM residue embeddings of width esm_dim as an extra residue input."""
        score = dataclasses.replace(self.score, esm_dim=esm_dim)
        conf = dataclasses.replace(self.confidence, trunk=dataclasses.replace(self.confidence.trunk, esm_dim=esm_dim))
        # the encoder sees ESM too (disco-diffdock yml: encoder_no_esm false)
        encoder = dataclasses.replace(self.encoder, trunk={**self.encoder.trunk, "esm_dim": esm_dim})
        return dataclasses.replace(self, score=score, confidence=conf, encoder=encoder)


def _preset_smoke() -> DockingPreset:
    """CI-sized: three offline complexes that pip installs (no Debian data needed), cut to their pockets, tiny
    networks, a handful of steps, 10-step sampling."""
    base = diffdock_s_preset("smoke")
    tc = lambda steps, batch: small_train(steps, batch, log_every=5)  # noqa: E731
    return DockingPreset(
        scale="smoke", data="offline", offline_names=("1s3v", "1s2g", "1ia1"), pocket_radius=POCKET_RADIUS,
        score=base.score, encoder=PointerEncoderConfig.tiny(),
        score_train=base.train, disco_train=DockingTrainConfig(train=tc(16, 2)),
        prior_train=PriorTrainConfig(train=tc(6, 2), freeze_epochs=1, hidden=16),
        confidence=ConfidenceModelConfig.tiny(), confidence_train=tc(6, 2), confidence_samples=2,
        n_samples=4, inference_steps=10, sample_batch=4, diffdock_temperatures=base.temperatures)


def _preset_small() -> DockingPreset:
    """Every offline complex cut to its pocket (62-90 residues), small networks, 1500 steps of each score model
    (~1.6 s a step on one core). In a trial of this preset's DiffDock-S the median sample RMSD fell from ~14 A
    (whole proteins, 120 steps) to 6.4 A at 300 steps and 5.6 A at 600: the translation is learnt, the
    orientation only partly, so top-1 success < 2 A stays rare at this size."""
    base = diffdock_s_preset("small")
    tc = lambda steps, batch: small_train(steps, batch, log_every=10)  # noqa: E731
    return DockingPreset(
        scale="small", data="offline", offline_names=None,
        score=base.score, encoder=PointerEncoderConfig(ns=12, nv=2, hidden=32,
                                                       trunk=dict(sigma_embed_dim=16, distance_embed_dim=16,
                                                                  cross_distance_embed_dim=16, batch_norm=False,
                                                                  dropout=0.0)),
        score_train=base.train, disco_train=DockingTrainConfig(train=tc(1500, 4)),
        prior_train=PriorTrainConfig(train=tc(60, 4), freeze_epochs=5, hidden=32),
        confidence=ConfidenceModelConfig(trunk=base.score, batch_norm=False), confidence_train=tc(30, 4),
        confidence_samples=4, n_samples=10, sample_batch=10, pocket_radius=POCKET_RADIUS,
        diffdock_temperatures=base.temperatures)


def _preset_paper() -> DockingPreset:
    base = diffdock_s_preset("paper")
    n = PAPER_TRAIN_COMPLEXES
    return DockingPreset(
        scale="paper", data="pdbbind", offline_names=None,
        score=base.score, encoder=PointerEncoderConfig(),
        # DiffDock-S: disco-diffdock workdir/diffdockS_score_model (batch 16); DisCo stage 1: batch 24
        score_train=base.train,
        disco_train=DockingTrainConfig(train=TrainConfig(steps=epochs_to_steps(PAPER_EPOCHS, n, 24), batch_size=24,
                                                         lr=1e-3, checkpoint_every=5000, log_every=500)),
        prior_train=PriorTrainConfig(train=TrainConfig(steps=epochs_to_steps(PAPER_EPOCHS, n, 16), batch_size=16,
                                                       lr=1e-3, checkpoint_every=5000, log_every=500)),
        # paper_confidence_model yml: batch 16, lr 3e-4, 28 poses per complex (7 samples x 4 cache ids)
        confidence=ConfidenceModelConfig.paper(),
        confidence_train=TrainConfig(steps=epochs_to_steps(75, n, 16), batch_size=16, lr=3e-4, checkpoint_every=5000,
                                     log_every=500),
        confidence_samples=28, n_samples=40,
        diffdock_temperatures=base.temperatures, disco_temperatures=DISCO_DIFFDOCK_S_TEMPERATURES,
        prior_temperature=DISCO_PRIOR_TEMPERATURE)


PRESETS = {"smoke": _preset_smoke, "small": _preset_small, "paper": _preset_paper}


def docking_preset(scale: str) -> DockingPreset:
    if scale not in PRESETS:
        raise KeyError(f"no docking preset for scale {scale!r}; known: {sorted(PRESETS)}")
    return PRESETS[scale]()


__all__ = ["DIFFDOCK_S", "DISCO_DIFFDOCK_S", "DISCO_DIFFDOCK_S_TEMPERATURES",
           "DISCO_PRIOR_TEMPERATURE", "DockingPreset", "PRESETS", "docking_preset"]
