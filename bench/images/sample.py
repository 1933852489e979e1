"""`python -m bench sample --checkpoint CKPT --seeds 0-63 --out FILE.npz` — generate images from a
sampling checkpoint (a converted EDM network, or a DisCo-Diff denoiser + prior written by a
harness), with per-sample seeds (EDM generate.py's scheme) and counted NFE.

FILE.npz holds images (uint8 [N, C, H, W]), seeds, class_labels, latents (DisCo-Diff) and nfe;
a PNG grid of the first 64 images is written beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from baselines.edm.sampler import RESTART_IMAGENET64
from bench.diffusion.samplers import Stochasticity
from bench.diffusion.seeds import format_seeds, parse_seeds
from bench.images.checkpoints import CheckpointError, DenoiserCheckpoint


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench sample", description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--checkpoint", type=Path, required=True, help="a .pt from `import-edm` or a harness")
    p.add_argument("--seeds", default="0-63", help="e.g. 0-63 or 0,5,9 (one image per seed)")
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--sampler", choices=["heun", "euler", "edm-sde", "restart"], default="heun")
    p.add_argument("--steps", type=int, default=18, help="time steps (heun: NFE = 2 steps - 1)")
    p.add_argument("--restart-nfe", type=int, choices=sorted(RESTART_IMAGENET64), default=623,
                   help="which published ImageNet-64 Restart setting (--sampler restart)")
    p.add_argument("--class-idx", type=int, default=None, help="fixed class (default: random per seed)")
    p.add_argument("--cfg", type=float, default=0.0, help="latent guidance scale (DisCo-Diff); 0 = none")
    p.add_argument("--temperature", type=float, default=1.0, help="the prior's sampling temperature")
    p.add_argument("--S_churn", type=float, default=0.0)
    p.add_argument("--S_min", type=float, default=0.0)
    p.add_argument("--S_max", type=float, default=float("inf"))
    p.add_argument("--S_noise", type=float, default=1.0)
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--rho", type=float, default=7.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from bench import atomic, plots
    from bench.images.sampling import SamplerSpec, generate

    seeds = parse_seeds(args.seeds)
    if args.steps < 1 or args.batch < 1:
        raise ValueError("--steps and --batch must be >= 1")
    if args.out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {args.out}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch.cuda.is_available() is False on this machine")
    ckpt = DenoiserCheckpoint.load(args.checkpoint)
    u = ckpt.unet
    if args.class_idx is not None and not 0 <= args.class_idx < max(u.label_dim, 1):
        raise ValueError(f"--class-idx {args.class_idx} out of range: the network has {u.label_dim} classes")
    if args.cfg and ckpt.context is None:
        raise ValueError("--cfg is latent guidance: this checkpoint has no discrete latents")
    device = torch.device(args.device)
    denoiser = ckpt.build_denoiser().to(device)
    prior = ckpt.build_prior()
    if ckpt.context is not None and prior is None:
        raise ValueError(f"{args.checkpoint}: a DisCo-Diff denoiser without its prior cannot sample latents")
    spec = SamplerSpec(args.sampler, args.steps, args.sigma_min, args.sigma_max, args.rho,
                       Stochasticity(args.S_churn, args.S_min, args.S_max, args.S_noise), args.cfg,
                       args.temperature, RESTART_IMAGENET64[args.restart_nfe] if args.sampler == "restart" else None)
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    with tqdm(total=len(seeds), desc="sample", unit="img", disable=None) as bar:
        g = generate(denoiser, seeds, spec, img_shape=(u.in_channels, u.img_resolution, u.img_resolution),
                     label_dim=u.label_dim, class_idx=args.class_idx,
                     prior=prior.to(device) if prior is not None else None,
                     latent_shape=(ckpt.context.m, ckpt.context.k) if ckpt.context is not None else None,
                     batch=args.batch, device=device, progress=bar.update)
    dt = time.perf_counter() - t0
    arrays = {"images": g.images, "seeds": np.array(g.seeds), "nfe": np.array(g.nfe)}
    if g.class_labels is not None:
        arrays["class_labels"] = g.class_labels
    if g.latents is not None:
        arrays["latents"] = g.latents
    atomic.save_npz(args.out, **arrays)
    plots.image_grid(g.images[:64], args.out.with_suffix(".png"))
    print(f"{len(seeds)} images (seeds {format_seeds(seeds)}) -> {args.out}; NFE {g.nfe} per image, "
          f"{len(seeds) / dt:.2f} images/s, {g.nfe * len(seeds) / dt:.1f} image-NFE/s")
    return 0
