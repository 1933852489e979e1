"""EDM's sampler settings beyond its Heun grid (bench/diffusion/samplers.py): Restart sampling's
published settings for EDM's class-conditional ImageNet-64 network (Xu et al., NeurIPS 2023)."""
from __future__ import annotations

from bench.diffusion.samplers import RestartConfig, RestartInterval

# S_noise of every ImageNet-64 setting below: 1.003. Sources in Newbeeer/diffusion_restart_sampling
# (commit 8cbcb07): README.md's and benchmarks/README.md's ImageNet-64 command (the 203-NFE,
# FID 1.41 result) pass `--S_noise 1.003`, and benchmarks/hyperparam.py, which sweeps
# params_imagenet_edm.txt, passes s_noise = 1.003 for ImageNet (1.0 for CIFAR-10). Before 8cbcb07
# (Dec 2023) benchmarks/README.md showed `--S_noise 1.` in that command while README.md said
# 1.003; generate_restart.py's own default is S_noise 0 (no restart noise), so the value must be
# given. A study of S_noise 1.0 passes dataclasses.replace(config, S_noise=1.0) (or `python -m
# bench sample --S_noise 1.0`).
RESTART_IMAGENET64_S_NOISE = 1.003
# S_min 0.01, S_max 1 (the window of restart_gamma 0.05): the authors' commands and hyperparam.py.


def _setting(num_steps: int, intervals: dict) -> RestartConfig:
    """A line of params_imagenet_edm.txt: N_main {i: [N_restart, K, t_min, t_max]}."""
    return RestartConfig(num_steps=num_steps, intervals=tuple(RestartInterval(*v) for v in intervals.values()),
                         S_noise=RESTART_IMAGENET64_S_NOISE, restart_gamma=0.05, S_min=0.01, S_max=1.0)


# All eight lines of the authors' benchmarks/params_imagenet_edm.txt (commit 8cbcb07; the
# paper's Table 5 / Fig. 3 sweep), keyed by NFE = 2 N_main - 1 + sum_i 2 K_i (N_restart,i - 1)
# (hyperparam.py's count). 203: the README's command (FID 1.41). 623: the setting DisCo-Diff's
# Table 1 compares with (the file's last line; the same values as the copy in
# UCSB-NLP-Chang/diffusion_resampling benchmarks/restart_params_imagenet.txt).
RESTART_IMAGENET64 = {
    39: _setting(14, {"0": [3, 1, 19.35, 40.79], "1": [3, 1, 1.09, 1.92], "2": [3, 1, 0.06, 0.30]}),
    67: _setting(18, {"0": [5, 1, 19.35, 40.79], "1": [5, 1, 1.09, 1.92], "2": [5, 1, 0.59, 1.09],
                      "3": [5, 1, 0.06, 0.30]}),
    99: _setting(18, {"0": [3, 1, 19.35, 40.79], "1": [4, 1, 1.09, 1.92], "2": [4, 4, 0.59, 1.09],
                      "3": [4, 1, 0.30, 0.59], "4": [4, 4, 0.06, 0.30]}),
    165: _setting(18, {"0": [3, 1, 19.35, 40.79], "1": [4, 1, 1.09, 1.92], "2": [4, 5, 0.59, 1.09],
                       "3": [4, 5, 0.30, 0.59], "4": [4, 10, 0.06, 0.30]}),
    203: _setting(36, {"0": [4, 1, 19.35, 40.79], "1": [4, 1, 1.09, 1.92], "2": [4, 5, 0.59, 1.09],
                       "3": [4, 5, 0.30, 0.59], "4": [6, 6, 0.06, 0.30]}),
    385: _setting(36, {"0": [3, 1, 19.35, 40.79], "1": [6, 1, 1.09, 1.92], "2": [6, 5, 0.59, 1.09],
                       "3": [6, 5, 0.30, 0.59], "4": [6, 20, 0.06, 0.30]}),
    535: _setting(36, {"0": [6, 1, 19.35, 40.79], "1": [6, 1, 1.09, 1.92], "2": [7, 6, 0.59, 1.09],
                       "3": [7, 6, 0.30, 0.59], "4": [7, 25, 0.06, 0.30]}),
    623: _setting(36, {"0": [10, 3, 19.35, 40.79], "1": [10, 3, 1.09, 1.92], "2": [7, 6, 0.59, 1.09],
                       "3": [7, 6, 0.30, 0.59], "4": [7, 25, 0.06, 0.30]}),
}
