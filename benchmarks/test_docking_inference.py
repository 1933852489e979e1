"""Table 4's runtime column: seconds per complex for 40 samples x 20 reverse steps plus confidence ranking, at
the paper's model sizes (DiffDock-S score model, 2.08 M parameters; DisCo-DiffDock-S adds the pointer prior).
Weights are untrained (initialised with a fixed seed): the work per step does not depend on them, except
through how far random scores move the ligand (which changes the cross-graph size a little).

Paper (GPU): 8.1 s (DiffDock-S) and 9.1 s (DisCo-DiffDock-S), ratio 1.12. Run: `tox -e bench -- -k docking`.
"""
import pytest
import torch

pytest.importorskip("e3nn")
pytest.importorskip("rdkit")
from bench.docking.confidence import ConfidenceModel, ConfidenceModelConfig, rank_samples  # noqa: E402
from bench.docking.data import offline_complexes  # noqa: E402
from bench.docking.disco_diffdock import DisCoDiffDockModel, make_prior, sample_disco_poses  # noqa: E402
from bench.docking.pose_diffusion import sample_poses  # noqa: E402
from bench.docking.presets import docking_preset  # noqa: E402
from bench.threads import single_thread  # noqa: E402

COMPLEX = "1ia1"     # 19 ligand heavy atoms, 384 residues (a typical PDBBind size)
SEEDS = list(range(40))


@pytest.fixture(scope="module")
def setup():
    got = offline_complexes([COMPLEX], warn=False).complexes
    if not got:
        pytest.skip(f"offline complex {COMPLEX} not available")
    p = docking_preset("paper")
    torch.manual_seed(0)
    from bench.docking.score_model import TensorProductScoreModel
    score = TensorProductScoreModel(p.score).eval()
    disco = DisCoDiffDockModel(p.disco).eval()
    prior = make_prior(disco, p.prior_train.hidden).eval()
    conf = ConfidenceModel(ConfidenceModelConfig.paper()).eval()
    return p, got[0], score, disco, prior, conf


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def test_diffdock_s_seconds_per_complex(benchmark, setup):
    p, c, score, _, _, conf = setup

    def dock():
        poses = sample_poses(score, c, seeds=SEEDS, steps=p.inference_steps, actual_steps=p.actual_steps,
                             batch_size=p.sample_batch, temperatures=p.diffdock_temperatures).poses
        return rank_samples(conf, c, poses)
    out = benchmark.pedantic(dock, rounds=1, iterations=1)
    assert out.shape == (40,)


def test_disco_diffdock_s_seconds_per_complex(benchmark, setup):
    p, c, _, disco, prior, conf = setup

    def dock():
        out, _ = sample_disco_poses(disco, prior, c, SEEDS, p.prior_temperature, p.disco_temperatures,
                                    steps=p.inference_steps, actual_steps=p.actual_steps, batch_size=p.sample_batch)
        return rank_samples(conf, c, out.poses)
    out = benchmark.pedantic(dock, rounds=1, iterations=1)
    assert out.shape == (40,)
