"""`python -m bench import-edm SRC --out CKPT [--config JSON | --preset imagenet64] [--sigma-data S]`:
EDM's published network (read by baselines/edm/checkpoint.py, no pickled code executed) as a
DisCo-Bench sampling checkpoint for `python -m bench sample` and the harnesses.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from baselines.edm import checkpoint as edm_checkpoint
from baselines.edm.checkpoint import (PRESETS, SUPPORTED, EDMImportError, EDMNetwork,  # noqa: F401 (API)
                                      load_edm_pickle, load_unet_config)
from bench.images.checkpoints import CheckpointError, DenoiserCheckpoint


def as_checkpoint(net: EDMNetwork) -> DenoiserCheckpoint:
    """A baseline (latent-free) sampling checkpoint of EDM's network."""
    return DenoiserCheckpoint(unet=net.unet, sigma_data=net.sigma_data, denoiser=net.denoiser, source=net.source,
                              use_fp16=net.use_fp16, sigma_min=net.sigma_min, sigma_max=net.sigma_max)


def convert_edm_pickle(path: Path, data: Any = None) -> DenoiserCheckpoint:
    return as_checkpoint(edm_checkpoint.convert_edm_pickle(path, data))


def convert(src: Path, unet=None, sigma_data: Optional[float] = None) -> DenoiserCheckpoint:
    return as_checkpoint(edm_checkpoint.convert(src, unet, sigma_data))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench import-edm",
        description="Convert an NVlabs/edm network pickle (or a plain state dict) into a DisCo-Bench "
                    "sampling checkpoint, without executing code from the pickle.")
    parser.add_argument("src", type=Path, help="EDM .pkl (e.g. edm-imagenet-64x64-cond-adm.pkl, "
                                               "network-snapshot-*.pkl) or a torch.save'd state dict")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    arch = parser.add_mutually_exclusive_group()
    arch.add_argument("--config", type=Path, help="JSON of ADMUNetConfig fields (state dicts)")
    arch.add_argument("--preset", choices=sorted(PRESETS), help="named ADMUNetConfig (state dicts)")
    parser.add_argument("--sigma-data", type=float, default=None,
                        help="EDM sigma_data for state dicts (default 0.5); must match for pickles")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:   # --help (0) or a usage error (2): return instead of exiting
        return e.code if isinstance(e.code, int) else 2
    try:
        if args.out.resolve() == args.src.resolve():
            raise EDMImportError("--out must differ from SRC")
        unet = (load_unet_config(args.config) if args.config else
                PRESETS[args.preset]() if args.preset else None)
        ckpt = convert(args.src, unet, args.sigma_data)
        # Rebuild exactly as `bench sample` will (strict load) before anything is written.
        n_params = sum(p.numel() for p in ckpt.build_denoiser().parameters())
        ckpt.save(args.out)   # atomic: never a half-written file
    except (EDMImportError, CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = ckpt.unet
    print(f"imported {ckpt.source}: {n_params / 1e6:.2f}M parameters, "
          f"{c.img_resolution}x{c.img_resolution}x{c.in_channels}, label_dim={c.label_dim}, "
          f"sigma_data={ckpt.sigma_data:g}, use_fp16={ckpt.use_fp16}, sigma range [{ckpt.sigma_min:g}, "
          f"{ckpt.sigma_max:g}] -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
