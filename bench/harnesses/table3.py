"""Table 3: ablations on class-conditional ImageNet-64 — FID with oracle vs generative latents, latent
guidance (cfg 0/1/2), and continuous latents (KLD weight 0.1 / 1) in place of the discrete ones.

Rows, under reference/table3.csv's ids:
  - no latent: EDM;
  - oracle: each sample draws a training image with its own seed and takes that image's latents
    (DisCo-Diff: tau = 0.01; continuous: a sample of the encoder's Gaussian) and its class;
  - generative: latents from the model's prior (DisCo-Diff: the autoregressive prior; continuous: the
    DiT-style diffusion prior, EDM Heun);
  - cfg: D~ = D(z) + cfg (D(z) - D(null)) on one trained model (DESIGN.md; the reference notes).
Every row samples with Heun at the preset's steps (paper: 40, NFE 79), each image its own seed, and
is scored over the scale's seed ranges (bench/images/evaluation.py). Beside the rows: the same
distances for real training images (the metric's floor at this sample size), and DisCo-Diff's code
usage and perplexity (what to look at when the latents do not help).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from bench.harnesses.fid_tables import FID_TOLERANCES, RowSpec, TableRun, dry_run
from bench.progress import stage
from bench.registry import RunContext, describe_variant, harness
from bench.rows import Row

VARIANT = "fid tables"
describe_variant(VARIANT, "the scale's preset: below paper scale the same models (bench/images/presets.py) trained "
                 "from scratch on a stand-in dataset and scored on a few hundred samples per seed range against a "
                 "training subset (bench/images/evaluation.py); at paper scale EDM's ImageNet-64 network and its "
                 "fine-tunes, fid50k")

CONT01, CONT1 = "continuous latent, KLD weight 0.1", "continuous latent, KLD weight 1"
ROWS = (
    RowSpec("table3.no_latent.edm", "EDM", "no latent", "EDM"),
    RowSpec("table3.oracle.cont_kld0p1", CONT01, "oracle", CONT01, "oracle"),
    RowSpec("table3.oracle.cont_kld1", CONT1, "oracle", CONT1, "oracle"),
    RowSpec("table3.oracle.disco_diff.cfg0", "DisCo-Diff", "oracle, cfg=0", "DisCo-Diff", "oracle"),
    RowSpec("table3.generative.cont_kld0p1", CONT01, "generative", CONT01, "generative"),
    RowSpec("table3.generative.cont_kld1.cfg0", CONT1, "generative, cfg=0", CONT1, "generative"),
    RowSpec("table3.generative.cont_kld1.cfg1", CONT1, "generative, cfg=1", CONT1, "generative", cfg=1.0),
    RowSpec("table3.generative.disco_diff.cfg0", "DisCo-Diff", "generative, cfg=0", "DisCo-Diff", "generative"),
    RowSpec("table3.generative.disco_diff.cfg1", "DisCo-Diff", "generative, cfg=1", "DisCo-Diff", "generative", 1.0),
    RowSpec("table3.generative.disco_diff.cfg2", "DisCo-Diff", "generative, cfg=2", "DisCo-Diff", "generative", 2.0),
)
# claim 6: generative minus oracle, per method, at cfg 0 (where the paper gives one), per seed range
GAPS = {"DisCo-Diff": ("generative, cfg=0", "oracle, cfg=0"), CONT01: ("generative", "oracle"),
        CONT1: ("generative, cfg=0", "oracle")}


@harness("table3", "Table 3: FID ablations on class-cond. ImageNet-64 (oracle/generative latents, cfg, continuous latents)",
         ("table3.",), code=("bench/harnesses/table3.py", "bench/harnesses/fid_tables.py", "bench/images/",
                             "bench/metrics/", "baselines/edm/", "bench/disco/", "bench/nets/", "bench/data/images.py",
                             "bench/train.py", "bench/diffusion/"), options=("fid",), tolerances=FID_TOLERANCES)
def table3(ctx: RunContext) -> list[Row]:
    if ctx.dry_run:
        dry_run(ctx, "table3", list(ROWS))
        return []
    run = TableRun(ctx, "table3", VARIANT)
    for r in ROWS:   # train every model first (each once; cached), then score
        run.model(*r.model)
    rows: list[Row] = []
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    grids: dict[str, np.ndarray] = {}
    for r in ROWS:
        rs, vals, images = run.rows_for(r)
        rows += rs
        values[(r.method, r.setting)] = vals
        grids[f"{r.method} | {r.setting}"] = images
    seeds = [row.seeds for row in rows if row.metric == "fid"][:run.get_scorer().budget.ranges]
    for method, (gen, ora) in GAPS.items():   # claim 6, per seed range (the same seeds on both sides)
        g, o = values[(method, gen)], values[(method, ora)]
        gap = {f"{metric}_generative_oracle_gap": [a - b for a, b in zip(g[metric], o[metric])] for metric in g}
        rows += run.value_rows("", method, "generative - oracle", gap, seeds, "", run.get_scorer().budget.n_per_range)
    rows += run.floor_rows()
    rows += code_usage_rows(run)
    run.grid(grids, "table3_samples.png")
    stage(f"table3 [{ctx.scale}]: done", ctx.shard.is_main)
    return rows if ctx.shard.is_main else []


def code_usage_rows(run: TableRun) -> list[Row]:
    """DisCo-Diff's latents as the encoder uses them on the training set: codes used of k and the
    perplexity exp(H) of each latent's code distribution, averaged over the m latents."""
    m = run.model("DisCo-Diff")
    codes, k = m.stage2.codes, m.preset.model.context.k
    used, perplexity = [], []
    for j in range(codes.shape[1]):
        counts = torch.bincount(codes[:, j].long(), minlength=k).double()
        p = counts[counts > 0] / counts.sum()
        used.append(len(p))
        perplexity.append(math.exp(float(-(p * p.log()).sum())))
    common = dict(n_samples=len(codes), seeds=str(run.ctx.seed), **run.common)
    return [Row("table3", "", "DisCo-Diff", run.variant, "training latents", "codes_used_of_k", float(np.mean(used)),
                **common),
            Row("table3", "", "DisCo-Diff", run.variant, "training latents", "code_perplexity",
                float(np.mean(perplexity)), **common),
            Row("table3", "", "DisCo-Diff", run.variant, "training latents", "prior_nll_nats_per_latent",
                float(m.stage2.info["final_loss"]), **common)]
