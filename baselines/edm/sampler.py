"""EDM's sampler settings beyond its Heun grid (bench/diffusion/samplers.py): Restart sampling's
published settings for EDM's class-conditional ImageNet-64 network (Xu et al., NeurIPS 2023)."""
from __future__ import annotations

from bench.diffusion.samplers import RestartConfig, RestartInterval

# Restart's published ImageNet-64 settings for EDM's class-conditional ADM (S_noise 1.003,
# S_min 0.01, S_max 1, main grid 36 Heun steps). 203 NFE: the authors' README (FID 1.41).
# 623 NFE: the setting DisCo-Diff's Table 1 uses; from the list of Restart's ImageNet-64
# configurations as copied in UCSB-NLP-Chang/diffusion_resampling
# benchmarks/restart_params_imagenet.txt (the authors' params_imagenet_edm.txt is not public
# in our index). Intervals: (N_restart, K, t_min, t_max).
RESTART_IMAGENET64 = {
    203: RestartConfig(num_steps=36, intervals=(
        RestartInterval(4, 1, 19.35, 40.79), RestartInterval(4, 1, 1.09, 1.92),
        RestartInterval(4, 5, 0.59, 1.09), RestartInterval(4, 5, 0.30, 0.59),
        RestartInterval(6, 6, 0.06, 0.30))),
    623: RestartConfig(num_steps=36, intervals=(
        RestartInterval(10, 3, 19.35, 40.79), RestartInterval(10, 3, 1.09, 1.92),
        RestartInterval(7, 6, 0.59, 1.09), RestartInterval(7, 6, 0.30, 0.59),
        RestartInterval(7, 25, 0.06, 0.30))),
}
