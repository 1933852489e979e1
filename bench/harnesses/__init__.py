"""Harnesses, one module per paper table/figure; importing this package registers them all.

Harnesses that are not built yet are registered too, so `python -m bench list` says so honestly.
"""
from bench.registry import Harness, register
from bench.harnesses import figure10, table1, table3, table4, table5, toy2d  # noqa: F401  (register them; toy2d: figure3, figure4, w2)

for _label, _what, _rows, _issue in [
    ("table2", "Table 2: ImageNet-128 FID/NFE, VDM++ with and without discrete latents", ("table2",), "issue 17"),
    ("figure6", "Fig. 6: group-hierarchical latents (shape/layout vs colour/texture)", (), "issue 15"),
    ("figure7", "Fig. 7: loss versus sigma; switching latents late in sampling", (), "issue 15"),
    ("figure9", "Fig. 9: samples sharing a discrete latent (ImageNet-64)", (), "issue 15"),
    ("figure13", "Fig. 13: samplers on ImageNet-128 (ODE / DDPM / VDM++ correction)", ("table2.fig13",), "issue 17"),
    ("timing", "Sec. 4.1: sampling cost of the autoregressive prior versus the DM", ("timing",), "issue 15"),
]:
    register(Harness(_label, _what, _rows, None, _issue))
