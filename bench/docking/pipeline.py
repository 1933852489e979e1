"""Table 4 end to end: data, the three trainings (DiffDock-S, DisCo-DiffDock-S stages 1 and 2, the confidence
model), then N poses per test complex from each method, ranked by the one confidence model (App. E.5: the
same confidence model for both), with symmetry-corrected RMSDs and runtimes.

Trained models are cached under `<cache>/docking/` by the hash of their configs and training complexes
(bench.train.run_dir_for); a finished run is loaded, an interrupted one resumes from its checkpoint.
Failures are never dropped: a complex that does not load, or whose sampling raises, keeps its row in the
[n_complexes, n_samples] RMSD array as NaN (a miss) and its reason is reported.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import atomic
from bench.docking.confidence import (ConfidenceExample, ConfidenceModel, confidence_accuracy, confidence_dataset,
                                      rank_samples, rmsd_label, train_confidence)
from bench.docking.data import (Complex, DockingDataError, attach_esm, crop_to_pocket, load_esm_embeddings,
                                load_pdbbind_complex, load_split, offline_complexes)
from bench.docking.disco_diffdock import (DisCoDiffDockModel, PointerConformers, make_prior, sample_disco_poses,
                                          train_disco_diffdock, train_pointer_prior)
from bench.docking.pose_diffusion import sample_poses, train_score_model
from bench.docking.presets import DockingPreset
from bench.docking.rmsd import success_rates, symmetry_rmsd
from bench.docking.score_model import TensorProductScoreModel
from bench.progress import stage
from bench.train import build_seeded, run_dir_for

PDBBIND_ENV = "DISCO_BENCH_PDBBIND"      # DiffDock's processed layout: <root>/<pdb_id>/<pdb_id>_protein_processed.pdb, ...
ESM_ENV = "DISCO_BENCH_ESM"              # optional per-residue ESM embeddings (.pt / .npz, data.load_esm_embeddings)


# ------------------------------------------------------------------------------------------- data

@dataclass
class DockingData:
    train: list[Complex]
    test: list[Complex]
    failed: dict[str, str]           # test complexes that did not load: name -> reason (they count as misses)
    test_names: list[str]            # every test complex, loaded or not, in split order
    unseen: set[str]                 # names of the unseen-protein subset (empty below paper scale)
    description: str                 # the dataset column of the rows
    residue_input: str               # "ESM (d)" or "residue-type embeddings"
    train_skipped: dict[str, str] = field(default_factory=dict)


def _survivors(complexes: list[Complex], step: Callable[[Complex], Complex],
               failed: dict[str, str]) -> list[Complex]:
    """step(c) for each complex; one that raises DockingDataError goes to failed (name -> reason) instead."""
    out = []
    for c in complexes:
        try:
            out.append(step(c))
        except DockingDataError as e:
            failed[c.name] = str(e)
    return out


def esm_table(path: str) -> dict:
    """The per-residue ESM embeddings at a user's path ({ESM_ENV}); a missing file is one clear line."""
    try:
        return load_esm_embeddings(path)
    except FileNotFoundError as e:
        raise DockingDataError(f"ESM embeddings ({ESM_ENV} or esm_path) {path}: file not found") from e


def _esm(complexes: list[Complex], path: str | None, failed: dict[str, str]) -> list[Complex]:
    if not path:
        return complexes
    table = esm_table(path)
    width: list[int] = []          # every complex must have the first attached one's width

    def attach(c: Complex) -> Complex:
        got = attach_esm([c], table, dim=width[0] if width else None)[0]
        width[:] = [got.esm.shape[1]]
        return got

    return _survivors(complexes, attach, failed)


def _pocket(complexes: list[Complex], radius: float | None, failed: dict[str, str]) -> list[Complex]:
    """complexes cropped to their pockets (preset.pocket_radius; None: unchanged); a complex with no residue
    near its ligand joins failed."""
    if radius is None:
        return complexes
    return _survivors(complexes, lambda c: crop_to_pocket(c, radius), failed)


def _pocket_note(radius: float | None) -> str:
    return "" if radius is None else (f"pocket docking: receptor cut to the residues within {radius:g} A of the "
                                      "crystal ligand; ")


def _load_ids(root: Path, ids: Sequence[str], desc: str) -> tuple[list[Complex], dict[str, str]]:
    ok, failed = [], {}
    for pid in tqdm(ids, desc=desc, leave=False):
        try:
            ok.append(load_pdbbind_complex(root, pid))
        except DockingDataError as e:
            failed[pid] = str(e)
    return ok, failed


def pdbbind_root() -> Path:
    root = os.environ.get(PDBBIND_ENV)
    if not root:
        raise DockingDataError(f"paper scale needs PDBBind: set {PDBBIND_ENV} to DiffDock's processed PDBBind "
                               "folder (<root>/<pdb_id>/<pdb_id>_protein_processed.pdb and _ligand.sdf/.mol2)")
    path = Path(root)
    if not path.is_dir():
        raise DockingDataError(f"{PDBBIND_ENV}={root}: not a directory")
    return path


def _need_training(data: DockingData) -> DockingData:
    if not data.train:
        why = "; ".join(f"{n}: {r}" for n, r in list(data.train_skipped.items())[:5])
        raise DockingDataError(f"no training complex is usable ({len(data.train_skipped)} failed"
                               + (f"; first: {why}" if why else "") + ")")
    return data


def load_docking_data(preset: DockingPreset, esm_path: str | None = None) -> DockingData:
    """The preset's training and test complexes. Offline: the same complexes train and test (re-docking).
    PDBBind: the time split from $DISCO_BENCH_PDBBIND; test complexes that fail to load are kept as failures,
    training complexes that fail are skipped (and listed)."""
    esm_path = esm_path if esm_path is not None else os.environ.get(ESM_ENV)
    failed: dict[str, str] = {}
    if preset.data == "offline":
        got = offline_complexes(preset.offline_names, warn=False)
        if not got.complexes:
            raise DockingDataError("no offline complex is available: " + "; ".join(r for _, r in got.skipped))
        complexes = _pocket(_esm(got.complexes, esm_path, failed), preset.pocket_radius, failed)
        train_skipped = dict(got.skipped) | failed
        names = [c.name for c in got.complexes] + [n for n, _ in got.skipped]
        return _need_training(DockingData(
            train=complexes, test=complexes, failed=failed | dict(got.skipped), test_names=names, unseen=set(),
            residue_input=_residue_input(esm_path, complexes), train_skipped=train_skipped,
            description="offline crystal complexes (" + _pocket_note(preset.pocket_radius)
                        + "re-docking of the training complexes; stand-in for PDBBind)"))
    root = pdbbind_root()
    train, train_failed = _load_ids(root, load_split("train"), "loading PDBBind train")
    test_ids = load_split("test")
    test, failed = _load_ids(root, test_ids, "loading PDBBind test")
    train = _pocket(_esm(train, esm_path, train_failed), preset.pocket_radius, train_failed)
    test = _pocket(_esm(test, esm_path, failed), preset.pocket_radius, failed)
    note = _pocket_note(preset.pocket_radius)
    return _need_training(DockingData(
        train=train, test=test, failed=failed, test_names=test_ids, unseen=set(load_split("unseen")),
        residue_input=_residue_input(esm_path, test), train_skipped=train_failed,
        description=f"PDBBind time split ({note}{root})"))


def _residue_input(esm_path: str | None, complexes: list[Complex]) -> str:
    if esm_path and complexes and complexes[0].esm is not None:
        return f"ESM embeddings ({complexes[0].esm.shape[1]})"
    return "residue-type embeddings (no ESM)"


# ---------------------------------------------------------------------------------------- training

@dataclass
class TrainedModels:
    score_model: TensorProductScoreModel     # DiffDock-S
    disco: DisCoDiffDockModel                 # DisCo-DiffDock-S stage 1
    prior: torch.nn.Module                    # PointerPrior
    confidence: ConfidenceModel
    info: dict                                # seconds, final losses, confidence accuracy


def _conf_cache(path: Path) -> Path:
    return path / "confidence_examples.npz"


def _save_examples(path: Path, examples: list[ConfidenceExample]) -> None:
    atomic.save_npz(path, names=np.array([e.complex.name for e in examples]),
                    sizes=np.array([len(e.pose) for e in examples]),
                    poses=np.concatenate([e.pose for e in examples]).astype(np.float64),
                    rmsds=np.array([e.rmsd for e in examples]))


def _load_examples(path: Path, complexes: list[Complex]) -> list[ConfidenceExample]:
    d = np.load(path)
    by_name = {c.name: c for c in complexes}
    offsets = np.concatenate([[0], np.cumsum(d["sizes"])])
    labels = rmsd_label(d["rmsds"])
    return [ConfidenceExample(by_name[str(n)], d["poses"][offsets[i]:offsets[i + 1]], float(d["rmsds"][i]),
                              float(labels[i])) for i, n in enumerate(d["names"])]


def confidence_examples(score: TensorProductScoreModel, train: list[Complex], preset: DockingPreset, run: Path,
                        progress: bool = True, conformers: PointerConformers | None = None
                        ) -> list[ConfidenceExample]:
    """The confidence model's training data: preset.confidence_samples DiffDock-S poses per training complex
    with their RMSD labels, complex k using seeds k n .. (k + 1) n - 1. Each complex's examples are saved
    atomically as they finish (run/confidence_examples/<name>.npz), so an interrupted run resumes at the next
    complex; when all are done they are joined into run/confidence_examples.npz."""
    done = _conf_cache(run)
    if done.exists():
        return _load_examples(done, train)
    shards = run / "confidence_examples"
    n = preset.confidence_samples
    stage(f"confidence data: {n} DiffDock-S poses of each of {len(train)} training complexes, labelled by RMSD")
    examples: list[ConfidenceExample] = []
    for k, c in enumerate(tqdm(train, desc="confidence data: DiffDock-S samples", disable=not progress)):
        shard = shards / f"{c.name}.npz"
        if shard.exists():
            got = _load_examples(shard, [c])
        else:
            got = confidence_dataset(score, [c], n, seeds=range(k * n, (k + 1) * n), steps=preset.inference_steps,
                                     actual_steps=preset.actual_steps, batch_size=preset.sample_batch,
                                     conformer=None if conformers is None else conformers(c))
            _save_examples(shard, got)
        examples += got
    _save_examples(done, examples)
    return examples


def _data_key(preset: DockingPreset, train: list[Complex]) -> dict:
    # the pocket radius changes the receptors but not the names: it is part of every data key
    return {"complexes": [c.name for c in train], "pocket_radius": preset.pocket_radius}


def score_run_dir(preset: DockingPreset, train: list[Complex], cache: Path, seed: int = 0) -> Path:
    """Where DiffDock-S trains (and its confidence data is kept): <cache>/docking/diffdock-s-<scale>-<hash>."""
    return run_dir_for(Path(cache) / "docking", f"diffdock-s-{preset.scale}",
                       {"score": preset.score, **_data_key(preset, train), "seed": seed}, preset.score_train.train)


def disco_run_dir(preset: DockingPreset, train: list[Complex], cache: Path, seed: int = 0) -> Path:
    """Where DisCo-DiffDock-S stage 1 trains (its prior in <that>/prior)."""
    return run_dir_for(Path(cache) / "docking", f"disco-diffdock-s-{preset.scale}",
                       {"disco": preset.disco, **_data_key(preset, train), "seed": seed}, preset.disco_train.train)


def train_diffdock_s(preset: DockingPreset, train: list[Complex], cache: Path, seed: int = 0,
                     progress: bool = True) -> tuple[TensorProductScoreModel, Path, dict]:
    """DiffDock-S trained (or loaded from the cache): the model, its run folder and fit's result."""
    score = build_seeded(lambda: TensorProductScoreModel(preset.score), seed)
    run = score_run_dir(preset, train, cache, seed)
    return score, run, train_score_model(score, train, preset.score_train, run, progress=progress)


def train_disco_stage1(preset: DockingPreset, train: list[Complex], cache: Path, seed: int = 0,
                       progress: bool = True) -> tuple[DisCoDiffDockModel, Path, dict]:
    """DisCo-DiffDock-S stage 1 (encoder + denoiser) trained or loaded: the model, its run folder, fit's result.
    Independent of DiffDock-S, so the two can train in separate processes into one cache."""
    disco = build_seeded(lambda: DisCoDiffDockModel(preset.disco), seed)
    drun = disco_run_dir(preset, train, cache, seed)
    return disco, drun, train_disco_diffdock(disco, train, preset.disco_train, drun, progress=progress)


def with_conformers(complexes: list[Complex], conformers: PointerConformers, skipped: dict[str, str],
                    record: Path | None = None) -> list[Complex]:
    """The complexes whose ligand embeds with ETKDG (seed 0, the conformer that sampling and the prior start
    from); the others go to skipped with the reason, so one bad ligand does not stop a long run. record: a
    JSON file of the complexes that failed, written atomically after the first check and read instead of
    embedding every ligand again (a cached rerun at paper scale would redo ~16k embeddings)."""
    if record is not None and record.exists():
        failed = json.loads(record.read_text())
        skipped.update(failed)
        return [c for c in complexes if c.name not in failed]

    def embedded(c: Complex) -> Complex:
        conformers(c)
        return c

    failed = {}
    out = _survivors(complexes, embedded, failed)
    if record is not None:
        atomic.write_text(record, json.dumps(failed, indent=1, sort_keys=True))
    skipped.update(failed)
    return out


def train_models(preset: DockingPreset, train: list[Complex], cache: Path, seed: int = 0,
                 progress: bool = True) -> TrainedModels:
    info: dict = {}
    score, run, info["diffdock_s"] = train_diffdock_s(preset, train, cache, seed, progress)
    # The score models train on noised crystal poses; the confidence data and the prior start from ETKDG
    # conformers, so they use the complexes that have one.
    conformers, no_conformer = PointerConformers(), {}
    embeddable = with_conformers(train, conformers, no_conformer, record=run / "no_conformer.json")
    for name, why in no_conformer.items():
        print(f"  training complex {name}: no conformer, left out of the confidence data and the prior ({why})")
    if not embeddable:
        raise DockingDataError("no training complex has an ETKDG conformer")
    info["no_conformer"] = no_conformer
    # confidence model on DiffDock-S's samples of the training complexes (poses cached beside the score model)
    examples = confidence_examples(score, embeddable, preset, run, progress=progress, conformers=conformers)
    conf = build_seeded(lambda: ConfidenceModel(preset.confidence), seed)
    info["confidence"] = train_confidence(conf, examples, preset.confidence_train,
                                          run_dir_for(Path(cache) / "docking", f"confidence-{preset.scale}",
                                                      {"confidence": preset.confidence, "score_run": run.name},
                                                      preset.confidence_train), progress=progress)
    info["confidence"]["train_accuracy"] = confidence_accuracy(conf, examples)
    info["confidence"]["positive_fraction"] = float(np.mean([e.label for e in examples]))
    # DisCo-DiffDock-S: stage 1 (encoder + denoiser), stage 2 (prior on a copy of the denoiser)
    disco, drun, info["disco_stage1"] = train_disco_stage1(preset, train, cache, seed, progress)
    prior = build_seeded(lambda: make_prior(disco, preset.prior_train.hidden), seed + 1)
    info["disco_prior"] = train_pointer_prior(prior, disco.encoder, embeddable, preset.prior_train,
                                              drun / "prior", progress=progress, conformers=conformers)
    return TrainedModels(score, disco, prior, conf, info)


# -------------------------------------------------------------------------------------- evaluation

@dataclass
class MethodResult:
    method: str
    names: list[str]               # every test complex, in order
    rmsds: np.ndarray              # [n_complexes, n_samples] symmetry-corrected RMSD (A), NaN = failed
    confidence: np.ndarray         # [n_complexes, n_samples] confidence logits, NaN = failed
    seconds: np.ndarray            # [n_complexes] sampling + confidence wall time, NaN = failed
    failures: dict[str, str]       # name -> reason
    nfe: int                       # reverse steps per sample, counted by the sampler
    rmsd_fallbacks: int            # complexes whose RMSDs used the recorded fallback (plain RMSD, no symmetry)

    def rates(self, subset: set[str] | None = None) -> dict:
        rows = [i for i, n in enumerate(self.names) if subset is None or n in subset]
        return success_rates(self.rmsds[rows], self.confidence[rows])


Sampler = Callable[[Complex, list[int]], tuple[torch.Tensor, int]]   # (poses [n, N, 3], nfe)


def evaluate_method(method: str, sampler: Sampler, data: DockingData, confidence: ConfidenceModel,
                    n_samples: int, seed: int = 0, progress: bool = True) -> MethodResult:
    """n_samples poses per test complex (sample i of complex k has seed seed * 10**6 + k * n_samples + i; the
    same seeds for every method), ranked by the confidence model."""
    by_name = {c.name: c for c in data.test}
    n = len(data.test_names)
    rmsds = np.full((n, n_samples), np.nan)
    conf = np.full((n, n_samples), np.nan)
    secs = np.full(n, np.nan)
    failures = dict((k, v) for k, v in data.failed.items() if k in set(data.test_names))
    nfe, fallbacks = 0, 0
    for k, name in enumerate(tqdm(data.test_names, desc=f"{method}: docking", disable=not progress)):
        c = by_name.get(name)
        if c is None:
            continue
        seeds = [seed * 10 ** 6 + k * n_samples + i for i in range(n_samples)]
        try:
            t0 = time.perf_counter()
            poses, nfe = sampler(c, seeds)
            conf[k] = rank_samples(confidence, c, poses).numpy()
            secs[k] = time.perf_counter() - t0
            r = symmetry_rmsd(c.ligand, c.ligand_coords, poses.detach().cpu().numpy())
        except Exception as e:  # a complex that breaks is a miss with its reason, not a crash of the table
            failures[name] = f"{type(e).__name__}: {e}"
            conf[k], secs[k] = np.nan, np.nan
            continue
        rmsds[k] = np.asarray(r.values, dtype=np.float64).reshape(-1)
        fallbacks += int(r.used_fallback)
    return MethodResult(method, list(data.test_names), rmsds, conf, secs, failures, nfe, fallbacks)


def diffdock_sampler(models: TrainedModels, preset: DockingPreset) -> Sampler:
    def run(c: Complex, seeds: list[int]):
        out = sample_poses(models.score_model, c, seeds=seeds, steps=preset.inference_steps,
                           actual_steps=preset.actual_steps, batch_size=preset.sample_batch,
                           temperatures=preset.diffdock_temperatures)
        return out.poses, out.nfe
    return run


def disco_sampler(models: TrainedModels, preset: DockingPreset) -> Sampler:
    conformers = PointerConformers()

    def run(c: Complex, seeds: list[int]):
        out, _ = sample_disco_poses(models.disco, models.prior, c, seeds, preset.prior_temperature,
                                    preset.disco_temperatures, conformers, steps=preset.inference_steps,
                                    actual_steps=preset.actual_steps, batch_size=preset.sample_batch)
        return out.poses, out.nfe
    return run


__all__ = ["DockingData", "ESM_ENV", "MethodResult", "PDBBIND_ENV", "TrainedModels", "diffdock_sampler",
           "disco_run_dir", "disco_sampler", "evaluate_method", "load_docking_data", "pdbbind_root",
           "score_run_dir", "train_diffdock_s", "train_disco_stage1", "train_models"]
