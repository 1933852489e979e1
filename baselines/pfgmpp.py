"""PFGM++ (Xu et al., ICML 2023) — not built yet (issue 17).

What goes here: the perturbation with D augmented dimensions (radius r = sigma * sqrt(D) drawn
through the Beta-prime law with a uniform direction, D = 128 for ImageNet-64), the matching prior
for x_T, EDM preconditioning and Heun sampling from bench/diffusion. DisCo-PFGM++ is this plus
bench/disco's latents. Importing this module defines nothing to run.
"""
