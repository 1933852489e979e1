"""Harnesses, one module per paper table/figure; importing this package registers them all.

Harnesses that are not built yet are registered too, so `python -m bench list` says so honestly.
"""
from bench.registry import Harness, register
from bench.harnesses import (figure7, figure8, figure10, figure17, hierarchical, sample_grids, table1, table3, table4, table5,  # noqa: F401  (register them)
                             timing, toy2d)   # toy2d: figure3, figure4, w2; sample_grids: figure2, 9, 11, 12, 14; hierarchical: figure6, 15, 16

for _label, _what, _rows, _issue in [
    ("table2", "Table 2: ImageNet-128 FID/NFE, VDM++ with and without discrete latents", ("table2",), "issue 17"),
    ("figure13", "Fig. 13: samplers on ImageNet-128 (ODE / DDPM / VDM++ correction)", ("table2.fig13",), "issue 17"),
]:
    register(Harness(_label, _what, _rows, None, _issue))
