"""Fig. 17 / App. G.5: latents derived from a real image and fed to the denoisers. The continuous latent
with KLD weight 0.1 over-fits (every sample is nearly the real image); with weight 1 the encoder collapses
(the denoiser ignores the latent); DisCo-Diff's discrete latent gives diverse samples that share the real
image's layout and colour.

For R training images (their latents as Table 3's oracle rows take them: DisCo-Diff's encoder at
tau = 0.01, a sample of the continuous encoder's Gaussian) and each of the three models (the scale's
table3 models, from the same cache): S samples with the image's latent and class, each its own seed.
Numbers per model and image, in the FID detector's pool features:
  - reconstruction_distance: mean distance of the samples to the real image (small: over-fitting);
  - sample_diversity: mean pairwise distance among them;
  - latent_effect: mean distance between the samples and those of the same seeds under the next image's
    latent and class (near 0: the latent is ignored, encoder collapse).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bench import plots
from bench.disco.continuous import with_presence
from bench.disco.latents import one_hot
from bench.harnesses.figure10 import VARIANT
from bench.harnesses.image_figures import IMAGE_FIGURE_CODE, FigureRun, figure_run, mean_cross, mean_pairwise
from bench.images.pipeline import train_model
from bench.images.presets import CONTINUOUS, image_preset
from bench.images.sampling import Latents, LatentSource
from bench.metrics.image_distance import feature_l2
from bench.registry import RunContext, harness
from bench.rows import Row
from bench.tolerance import Tolerance

MODELS = ("DisCo-Diff", *CONTINUOUS)   # Fig. 17 (d), (b), (c)
N_IMAGES = {"smoke": 2, "small": 4, "paper": 4}
N_SAMPLES = {"smoke": 3, "small": 8, "paper": 8}
FIRST_SEED = 80_000
IMAGE_STRIDE = 997   # training image i of the figure: index i * IMAGE_STRIDE (spread over the set)


@dataclasses.dataclass
class TrainingImageLatent(LatentSource):
    """Every sample takes training image `index`'s latent (as extracted for the prior) and its class."""
    latents: torch.Tensor   # [N, m] codes or [N, m, d]
    labels: torch.Tensor    # [N]
    index: int
    k: int = 0              # 0: continuous
    name = "real image"

    def draw(self, rnd, y_idx, device) -> Latents:
        z = self.latents[self.index].expand(len(rnd.seeds), *self.latents.shape[1:])
        w = one_hot(z, self.k) if self.k else with_presence(z)
        return Latents(w.to(device), z.cpu().numpy(), self.labels[self.index].expand(len(rnd.seeds)).to(device))


@harness("figure17", "Fig. 17 / App. G.5: a real image's continuous (KLD 0.1, 1) and discrete latents fed to the "
         "denoisers: over-fitting, collapse, diversity", (),
         code=("bench/harnesses/figure17.py", *IMAGE_FIGURE_CODE), options=("detector",),
         tolerances=(("*", Tolerance("spread", 4, floor=0.1)),))
def figure17(ctx: RunContext) -> list[Row]:
    n_img, n = N_IMAGES[ctx.scale], N_SAMPLES[ctx.scale]
    if ctx.dry_run:
        print(f"figure17 [{ctx.scale}]: {n_img} training images x {len(MODELS)} models ({', '.join(MODELS)}) x "
              f"{n} samples with the image's latent, + {n} with the next image's")
        return []
    base = figure_run(ctx)   # DisCo-Diff, data and detector
    runs = {"DisCo-Diff": base}
    for label in CONTINUOUS:
        p = image_preset(label, ctx.scale)
        runs[label] = dataclasses.replace(base, preset=p, model=train_model(p, base.train, ctx.cache, ctx.seed,
                                                                              base.device, ctx.shard))
    if not ctx.shard.is_main:
        return []
    idx = [(i * IMAGE_STRIDE) % len(base.train) for i in range(n_img)]
    real = np.stack([base.train[i][0] for i in idx])                # uint8 [R, C, H, W]
    real_f = base.features(real)
    seeds = list(range(FIRST_SEED, FIRST_SEED + n))
    rows, panels = [], []
    for label in MODELS:
        run: FigureRun = runs[label]
        s2, k = run.model.stage2, (0 if label in CONTINUOUS else run.preset.prior.k)
        labels = run.model.labels
        grid = []
        for j, i in enumerate(idx):
            im, _, nfe = run.sample(seeds, TrainingImageLatent(s2.codes, labels, i, k))
            other, _, _ = run.sample(seeds, TrainingImageLatent(s2.codes, labels, idx[(j + 1) % len(idx)], k))
            f, f_other = run.features(im), run.features(other)
            common = run.common(nfe=str(nfe), n_samples=n, seeds=f"{seeds[0]}-{seeds[-1]}",
                                feature_extractor=run.feature_name)
            setting = f"training image {i}"
            rows += [Row("figure17", "", label, VARIANT, setting, "reconstruction_distance",
                         mean_cross(f, real_f[j:j + 1]), **common),
                     Row("figure17", "", label, VARIANT, setting, "sample_diversity", mean_pairwise(f), **common),
                     Row("figure17", "", label, VARIANT, setting, "latent_effect", float(feature_l2(f, f_other).mean()),
                         **common)]
            grid.append(np.concatenate([real[j:j + 1], im]))
        panels.append((label.replace("continuous latent, ", "continuous, "), np.stack(grid)))
    plots.captioned_grids(panels, base.out / "figure17.png", "DisCo-Diff Fig. 17: " + base.caption(
        "first column the real training image, then samples fed its latent"),
        [[f"image {i}" for i in idx]] * len(panels))
    return rows
