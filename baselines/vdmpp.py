"""VDM++ (Kingma & Gao, NeurIPS 2023) — not built yet (issue 17).

What goes here: the weighted-ELBO loss with the EDM-monotonic and sigmoid weightings, the shifted
noise schedule used for ImageNet-128, the DDPM ancestral sampler and the ODE sampler on the same
model; its network is the U-ViT of App. D. Importing this module defines nothing to run.
"""
