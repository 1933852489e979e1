"""DiffDock-S (Corso et al., ICLR 2023; the small score model DisCo-Diff's App. E builds on) as the
suite runs it: the score network's size, its training and its sampler settings at the three scales.

Facts from gcorso/disco-diffdock, the code behind Table 4 (README evaluate commands and
workdir/diffdockS_score_model/model_parameters.yml): 1000 epochs of the PDBBind time split's
training complexes at batch 16, lr 1e-3; 20 reverse-SDE steps with the README's tuned
low-temperature settings. The noise schedule is the score network's own (`ScoreModelConfig.noise`,
DiffDock-S's by default: bench/docking/score_model.py DIFFDOCK_S_NOISE), so training targets and
the network's sigma scaling cannot disagree. The e3nn score network, the pose diffusion and the
loss are shared machinery in bench/docking/. DisCo-DiffDock-S (bench/docking/presets.py) is this
plus pointer latents.
"""
from __future__ import annotations

import dataclasses

from bench.docking.noise import LowTemperature, SamplingTemperatures
from bench.docking.pose_diffusion import DockingTrainConfig
from bench.docking.score_model import ScoreModelConfig
from bench.train import TrainConfig

LABEL = "DiffDock-S"
PAPER_EPOCHS = 1000                  # n_epochs in both model_parameters.yml (DiffDock-S and DisCo-DiffDock-S)
PAPER_TRAIN_COMPLEXES = 16379        # timesplit_no_lig_overlap_train

# gcorso/disco-diffdock README evaluate command for DiffDock-S (tuned on validation; T is
# temp_sampling, psi temp_psi, s temp_sigma_data), per component tr / rot / tor.
TEMPERATURES = SamplingTemperatures(
    tr=LowTemperature(1.886430780895051, 0.07085125444659945, 0.3617563913086843),
    rot=LowTemperature(5.659562317960644, 2.686505606141324, 0.7437588205919711),
    tor=LowTemperature(2.8888668488630156, 4.089493860493927, 0.08897393057297842))


@dataclasses.dataclass(frozen=True)
class DiffDockSPreset:
    """DiffDock-S at one scale."""
    scale: str
    score: ScoreModelConfig                 # the score network (its noise schedule included)
    train: DockingTrainConfig
    temperatures: SamplingTemperatures      # low-temperature sampling; all off below paper scale (untuned)


def epochs_to_steps(epochs: int, n: int, batch: int) -> int:
    """Optimiser steps of `epochs` passes over n examples at this batch size (the last batch partial)."""
    return epochs * -(-n // batch)


def small_train(steps: int, batch: int, log_every: int, lr: float = 1e-3) -> TrainConfig:
    """The CPU tiers' training schedule (smoke: log every 5 steps, small: every 10)."""
    return TrainConfig(steps=steps, batch_size=batch, lr=lr, log_every=log_every, checkpoint_every=50)


def _smoke() -> DiffDockSPreset:
    return DiffDockSPreset("smoke", ScoreModelConfig.tiny(), DockingTrainConfig(train=small_train(16, 2, 5)),
                           SamplingTemperatures())


def _small() -> DiffDockSPreset:
    score = ScoreModelConfig(ns=16, nv=4, num_conv_layers=3, sigma_embed_dim=16, distance_embed_dim=16,
                             cross_distance_embed_dim=16, batch_norm=False, dropout=0.0)
    return DiffDockSPreset("small", score, DockingTrainConfig(train=small_train(1500, 4, 10)), SamplingTemperatures())


def _paper() -> DiffDockSPreset:
    steps = epochs_to_steps(PAPER_EPOCHS, PAPER_TRAIN_COMPLEXES, 16)
    train = TrainConfig(steps=steps, batch_size=16, lr=1e-3, checkpoint_every=5000, log_every=500)
    return DiffDockSPreset("paper", ScoreModelConfig.paper(), DockingTrainConfig(train=train), TEMPERATURES)


_BUILDERS = {"smoke": _smoke, "small": _small, "paper": _paper}


def diffdock_s_preset(scale: str) -> DiffDockSPreset:
    if scale not in _BUILDERS:
        raise KeyError(f"no DiffDock-S preset for scale {scale!r}; known: {sorted(_BUILDERS)}")
    return _BUILDERS[scale]()
