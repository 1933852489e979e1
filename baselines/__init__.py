"""The continuous baselines as the suite runs them, one module or package each.

A baseline defines its perturbation and loss, its network preset and its sampler settings from
bench's shared machinery (bench/diffusion, bench/nets, bench/docking's e3nn score model, the
training loop). DisCo-X (bench/disco/, bench/docking/disco_diffdock.py) is baseline X plus
discrete latents; harnesses compose the two. Dependencies run one way:
harnesses -> DisCo -> baselines -> shared machinery; nothing here imports bench.disco,
bench.images, bench.harnesses or a pipeline.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Baseline:
    name: str          # the paper's label
    paper: str         # where it comes from
    module: str        # where the suite defines it
    built: bool
    issue: str = ""    # where the unbuilt work is tracked


BASELINES = (
    Baseline("EDM", "Karras et al., NeurIPS 2022", "baselines.edm", True),
    Baseline("DiffDock-S", "Corso et al., ICLR 2023 (small score model, DisCo-Diff App. E)",
             "baselines.diffdock_s", True),
    Baseline("PFGM++", "Xu et al., ICML 2023", "baselines.pfgmpp", False, "issue 17"),
    Baseline("VDM++", "Kingma & Gao, NeurIPS 2023", "baselines.vdmpp", False, "issue 17"),
    # Table 3's ablation is DisCo-Diff with a Gaussian latent in place of the discrete one: built from
    # DisCo-Diff's encoder and latent context, it lives above this package (dependencies run one way).
    Baseline("continuous latents", "DisCo-Diff Table 3 ablation (a VAE-style continuous latent)",
             "bench.disco.continuous", True),
)
