"""Fig. 8: DisCo-DiffDock-S's alternative poses, modelled by different pointer latents.

The paper (Sec. 4.3) shows two test complexes where "the model learns to associate distinct sets of poses
with different latents, decomposing the multimodal components of the pose distribution from the
continuous variations that each pose can have". Read as a number (claim 8c): poses that share a latent are
closer to each other than poses under different latents.

Per test complex (the first N_COMPLEXES of the scale's test set that load): L distinct pointer latents, the
first ones the trained pointer prior draws (its own seeds, at the preset's prior temperature), and S poses
under each latent from the same S pose seeds (so the noise is shared across latents and only the latent
differs). Numbers per complex:
  - within latent: mean symmetry-corrected RMSD between poses of one latent (different seeds);
  - between latents: mean RMSD between poses of different latents and different seeds (the same kind of pair
    but for the latent);
  - each pose's RMSD to the crystal pose (median and best per complex).
The complexes are the replicates of claim 8c (paired: within and between come from the same poses).

The figure draws two complexes: those where the latent moves the pose most (largest between - within gap;
the caption says so), as a 2D projection (principal axes of the poses) of the pocket's C-alphas, the
crystal ligand and one pose per latent and seed coloured by latent, the pointed-to node marked; below it
each pose's RMSD to the crystal, grouped by latent.

DisCo-DiffDock-S is the model table4 trains (same presets, data and cache: bench/docking/pipeline.py); only
its two stages train here, not DiffDock-S or the confidence model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench import atomic, plots
from bench.docking.data import Complex, DockingDataError
from bench.docking.disco_diffdock import PointerConformers, make_prior, sample_pointers, train_pointer_prior
from bench.docking.pipeline import load_docking_data, train_disco_stage1, with_conformers
from bench.docking.pose_diffusion import sample_poses
from bench.docking.presets import DISCO_DIFFDOCK_S, DockingPreset, docking_preset
from bench.docking.rmsd import symmetry_rmsd
from bench.harnesses.table4 import VARIANT
from bench.progress import stage
from bench.provenance import device_name, git_sha
from bench.registry import RunContext, harness
from bench.rows import COMPLEX_SEEDS, Row
from bench.tolerance import Tolerance
from bench.train import build_seeded

# (complexes, latents per complex, poses per latent)
SIZES = {"smoke": (2, 2, 2), "small": (10, 4, 4), "paper": (20, 4, 8)}
LATENT_DRAWS = 64           # prior draws per complex, from which the first L distinct latents are kept
LATENT_SEED = 3_000_000     # draw j of complex k: seed LATENT_SEED + k * LATENT_DRAWS + j
POSE_SEED = 4_000_000       # pose seed j of complex k: POSE_SEED + k * S + j (the same for every latent)
SHOWN = 2                   # complexes drawn in the figure
WITHIN, BETWEEN = "within latent", "between latents"


class LatentsError(DockingDataError):
    """No complex got two distinct latents from the prior: nothing to compare."""


@dataclass
class ComplexPoses:
    """One complex's poses: L latents x S seeds, in latent-major order."""
    complex: Complex
    latents: np.ndarray          # [L, m] local pointer indices (ligand atoms first, then residues)
    seeds: list[int]             # [S] pose seeds, shared by the latents
    poses: np.ndarray            # [L, S, N, 3] ligand heavy-atom coordinates
    rmsd: np.ndarray             # [L, S] symmetry-corrected RMSD to the crystal pose (A)
    pairwise: np.ndarray         # [L * S, L * S] symmetry-corrected RMSD between poses (A)
    distinct_draws: int          # distinct latents among the LATENT_DRAWS prior draws
    nfe: int

    def pair_means(self) -> dict[str, float]:
        """Mean pose-pose RMSD over pairs with the same latent (other seed) and with another latent (other seed)."""
        L, S = self.rmsd.shape
        lat = np.repeat(np.arange(L), S)
        seed = np.tile(np.arange(S), L)
        other_seed = seed[:, None] != seed[None, :]
        same = (lat[:, None] == lat[None, :]) & other_seed
        diff = (lat[:, None] != lat[None, :]) & other_seed
        return {WITHIN: float(self.pairwise[same].mean()), BETWEEN: float(self.pairwise[diff].mean())}


def distinct_pointers(z: torch.Tensor, n: int) -> np.ndarray:
    """The first n distinct rows of z [draws, m], in order of first appearance: [<= n, m]."""
    seen: list[tuple[int, ...]] = []
    for row in z.tolist():
        if tuple(row) not in seen:
            seen.append(tuple(row))
        if len(seen) == n:
            break
    return np.array(seen, dtype=np.int64).reshape(-1, z.shape[1])


def pairwise_rmsd(c: Complex, poses: np.ndarray) -> np.ndarray:
    """[n, n] symmetry-corrected RMSD between poses [n, N, 3] (each pose the reference in turn; symmetric
    up to rounding, so the mean of both directions is kept)."""
    d = np.stack([np.asarray(symmetry_rmsd(c.ligand, p, poses).values, dtype=np.float64).reshape(-1)
                  for p in poses])
    return (d + d.T) / 2


def complex_poses(model, prior, c: Complex, k: int, preset: DockingPreset, latents: int, per_latent: int,
                  conformers: PointerConformers) -> ComplexPoses:
    draws = sample_pointers(prior, c, [LATENT_SEED + k * LATENT_DRAWS + j for j in range(LATENT_DRAWS)],
                            preset.prior_temperature, conformers)
    z = distinct_pointers(draws, latents)
    n_distinct = len({tuple(r) for r in draws.tolist()})
    seeds = [POSE_SEED + k * per_latent + j for j in range(per_latent)]
    out = sample_poses(model.score_model, c, seeds=seeds * len(z),
                       pointers=torch.as_tensor(np.repeat(z, per_latent, 0)),
                       temperatures=preset.disco_temperatures, steps=preset.inference_steps,
                       actual_steps=preset.actual_steps, batch_size=preset.sample_batch)
    poses = out.poses.detach().cpu().numpy()
    rmsd = np.asarray(symmetry_rmsd(c.ligand, c.ligand_coords, poses).values, dtype=np.float64)
    return ComplexPoses(c, z, seeds, poses.reshape(len(z), per_latent, -1, 3), rmsd.reshape(len(z), per_latent),
                        pairwise_rmsd(c, poses), n_distinct, out.nfe)


def _dry_run(preset: DockingPreset, ctx: RunContext) -> None:
    n, L, S = SIZES[ctx.scale]
    print(f"figure8 [{ctx.scale}]: {DISCO_DIFFDOCK_S} ({preset.data} data); up to {n} test complexes x {L} "
          f"latents (the first distinct of {LATENT_DRAWS} prior draws, temperature {preset.prior_temperature:.3g}) "
          f"x {S} pose seeds, {preset.nfe} steps each; stage 1: {preset.disco_train.train.steps:,} steps, prior: "
          f"{preset.prior_train.train.steps:,} steps")


def _train(preset: DockingPreset, train: list[Complex], ctx: RunContext):
    """DisCo-DiffDock-S's two stages as table4 trains them (the same cache folders and seeds)."""
    disco, drun, _ = train_disco_stage1(preset, train, ctx.cache, ctx.seed)
    conformers, no_conformer = PointerConformers(), {}
    embeddable = with_conformers(train, conformers, no_conformer, record=drun / "no_conformer.json")
    if not embeddable:
        raise DockingDataError("no training complex has an ETKDG conformer")
    prior = build_seeded(lambda: make_prior(disco, preset.prior_train.hidden), ctx.seed + 1)
    train_pointer_prior(prior, disco.encoder, embeddable, preset.prior_train, drun / "prior", conformers=conformers)
    return disco, prior, conformers


@harness("figure8", "Fig. 8: docking, alternative poses sampled under different pointer latents (claim 8c)", (),
         code=("bench/harnesses/figure8.py", "bench/docking/", "baselines/diffdock_s.py", "bench/train.py"),
         tolerances=(("pose_rmsd*", Tolerance("relative", 0.25)), ("*_to_crystal_A", Tolerance("relative", 0.25)),
                     ("distinct_latents", Tolerance("relative", 0.5))))
def figure8(ctx: RunContext) -> list[Row]:
    preset = docking_preset(ctx.scale)
    if ctx.dry_run:
        _dry_run(preset, ctx)
        return []
    if ctx.device != "cpu":
        print(f"figure8: the docking models run on the CPU (--device {ctx.device} is not used for docking)")
    n, L, S = SIZES[ctx.scale]
    stage(f"figure8 [{ctx.scale}]: loading the complexes ({preset.data})")
    data = load_docking_data(preset)
    if data.train and data.train[0].esm is not None:
        preset = preset.with_esm(int(data.train[0].esm.shape[1]))
    disco, prior, conformers = _train(preset, data.train, ctx)
    if not ctx.shard.is_main:
        return []
    studied: list[ComplexPoses] = []
    t0 = time.perf_counter()
    stage(f"figure8 [{ctx.scale}]: {min(n, len(data.test))} complexes x {L} latents x {S} poses")
    for k, c in enumerate(data.test[:n]):
        try:
            studied.append(complex_poses(disco, prior, c, k, preset, L, S, conformers))
        except Exception as e:   # one complex that breaks is reported, not the end of the figure
            print(f"  {c.name}: left out ({type(e).__name__}: {e})")
    seconds = time.perf_counter() - t0
    usable = [p for p in studied if len(p.latents) >= 2 and S >= 2]
    if not usable:
        raise LatentsError(f"figure8: no complex got two distinct latents from the prior (of {LATENT_DRAWS} draws "
                           f"each, temperature {preset.prior_temperature:g}); nothing to compare")
    common = dict(scale=ctx.scale, dataset=f"{data.description}; residues: {data.residue_input}",
                  device=device_name(ctx.device), git_sha=git_sha())
    rows: list[Row] = []
    for p in studied:
        per = dict(method=DISCO_DIFFDOCK_S, variant=VARIANT, seeds=f"{COMPLEX_SEEDS}{p.complex.name}",
                   nfe=str(p.nfe), **common)
        if p in usable:
            for setting, value in p.pair_means().items():
                rows.append(Row("figure8", "", setting=setting, metric="pose_rmsd_A", value=value,
                                n_samples=p.rmsd.size, **per))
        rows.append(Row("figure8", "", setting="prior draws", metric="distinct_latents", value=float(p.distinct_draws),
                        n_samples=LATENT_DRAWS, **per))
        for metric, value in (("median_rmsd_to_crystal_A", np.nanmedian(p.rmsd)), ("best_rmsd_to_crystal_A", np.nanmin(p.rmsd))):
            rows.append(Row("figure8", "", setting="all poses", metric=metric, value=float(value),
                            n_samples=p.rmsd.size, **per))
    rows.append(Row("figure8", "", DISCO_DIFFDOCK_S, VARIANT, "all poses", "poses_per_s",
                    sum(p.rmsd.size for p in studied) / seconds, n_samples=sum(p.rmsd.size for p in studied),
                    seeds=f"{POSE_SEED}+", seconds=seconds, nfe=str(studied[0].nfe), **common))
    gaps = [p.pair_means()[BETWEEN] - p.pair_means()[WITHIN] for p in usable]
    shown = [usable[i] for i in np.argsort(gaps)[::-1][:SHOWN]]
    out = Path(ctx.out) / ctx.scale
    npz = atomic.save_npz(out / "figure8_data.npz", git_sha=np.array(git_sha()),
                          names=np.array([p.complex.name for p in shown]),
                          **{f"{key}__{i}": value for i, p in enumerate(shown) for key, value in _arrays(p).items()})
    plots.figure8(npz, out / "figure8.png",
                  f"{ctx.scale} scale, {data.description.split(' (')[0]}; {DISCO_DIFFDOCK_S}, {S} pose seeds per "
                  f"latent; shown: the {len(shown)} of {len(usable)} complexes with the largest between - within "
                  "latent pose RMSD")
    return rows


def _arrays(p: ComplexPoses) -> dict[str, np.ndarray]:
    m = p.pair_means()
    return {"poses": p.poses, "rmsd": p.rmsd, "latents": p.latents, "crystal": p.complex.ligand_coords,
            "pocket": p.complex.ca_coords, "num_ligand": np.array(len(p.complex.ligand_coords)),
            "bonds": np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in p.complex.ligand.GetBonds()],
                              dtype=np.int64).reshape(-1, 2),
            "within": np.array(m[WITHIN]), "between": np.array(m[BETWEEN])}
