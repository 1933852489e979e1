"""The continuous-latent ablation of Table 3 — not built yet (issue 13).

What goes here: DisCo-Diff's encoder with a continuous (Gaussian, KL-regularised) latent in place
of the discrete one, on EDM's network and loss. Importing this module defines nothing to run.
"""
