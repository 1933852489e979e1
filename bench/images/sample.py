"""`python -m bench sample --checkpoint CKPT --seeds 0-63 --out FILE.npz` — generate images from a
sampling checkpoint (a converted EDM network, or a DisCo-Diff denoiser + prior written by a
harness), with per-sample seeds (EDM generate.py's scheme) and counted NFE.

FILE.npz holds images (uint8 [N, C, H, W]), seeds, class_labels, latents (DisCo-Diff) and nfe;
a PNG grid of the first 64 images is written beside it.

No flag is silently ignored: a flag that the chosen sampler (or checkpoint) would not use is
refused with one line on stderr and exit status 2 (see `resolve_spec`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from baselines.edm.sampler import RESTART_IMAGENET64
from bench.diffusion.samplers import Stochasticity
from bench.diffusion.seeds import format_seeds, parse_seeds
from bench.images.checkpoints import CheckpointError, DenoiserCheckpoint

if TYPE_CHECKING:
    from bench.images.sampling import SamplerSpec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench sample", description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--checkpoint", type=Path, required=True, help="a .pt from `import-edm` or a harness")
    p.add_argument("--seeds", default="0-63", help="e.g. 0-63 or 0,5,9 (one image per seed)")
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--sampler", choices=["heun", "euler", "edm-sde", "restart"], default="heun",
                   help="heun / euler: EDM Alg. 1; edm-sde: EDM Alg. 2 (needs --S_churn > 0); restart: "
                        "Restart sampling with a published ImageNet-64 setting (--restart-nfe)")
    p.add_argument("--steps", type=int, default=None,
                   help="time steps (default 18; heun: NFE = 2 steps - 1). Not with restart, whose main "
                        "grid is fixed by the setting (refused unless equal to it)")
    p.add_argument("--restart-nfe", type=int, choices=sorted(RESTART_IMAGENET64), default=None,
                   help=f"which published ImageNet-64 Restart setting (--sampler restart; default "
                        f"{DEFAULT_RESTART_NFE}, the one DisCo-Diff's Table 1 uses)")
    p.add_argument("--class-idx", type=int, default=None, help="fixed class (default: random per seed)")
    p.add_argument("--cfg", type=float, default=0.0, help="latent guidance scale (DisCo-Diff); 0 = none")
    p.add_argument("--temperature", type=float, default=None,
                   help="the prior's sampling temperature (DisCo-Diff; default 1)")
    p.add_argument("--S_churn", type=float, default=None, help="EDM Alg. 2 churn (--sampler edm-sde only)")
    p.add_argument("--S_min", type=float, default=None,
                   help="lower end of the churn window (edm-sde: default 0; restart: overrides the setting's 0.01)")
    p.add_argument("--S_max", type=float, default=None,
                   help="upper end of the churn window (edm-sde: default inf; restart: overrides the setting's 1)")
    p.add_argument("--S_noise", type=float, default=None,
                   help="noise inflation (edm-sde: default 1; restart: overrides the setting's 1.003, "
                        "scaling the restart noise and churn as generate_restart.py's --S_noise)")
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--rho", type=float, default=7.0)
    p.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                   help="run the network in fp16 (CUDA only, as EDM's use_fp16); default: what the checkpoint "
                        "says (an imported EDM network keeps its pickle's use_fp16)")
    p.add_argument("--net-sigma-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="the noise range the network supports, to which the grid is clamped (as EDM's "
                        "generate.py); default: the checkpoint's (an imported network keeps its pickle's); "
                        "'0 inf' turns the clamp off")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (torch.set_num_threads; default: torch's). On a busy "
                        "machine 1 can be much faster than 2")
    return p


DEFAULT_RESTART_NFE = 623


def resolve_spec(args: argparse.Namespace) -> "SamplerSpec":
    """The sampler settings from the flags, refusing (ValueError, exit 2) every flag the chosen
    sampler would not use. Flags left unset are None, so a given flag is told from a default."""
    from bench.images.sampling import SamplerSpec

    given = {f: getattr(args, a) for f, a in [("--S_churn", "S_churn"), ("--S_min", "S_min"),
                                                ("--S_max", "S_max"), ("--S_noise", "S_noise")]
             if getattr(args, a) is not None}
    if args.steps is not None and args.steps < 1:
        raise ValueError("--steps must be >= 1")
    if args.restart_nfe is not None and args.sampler != "restart":
        raise ValueError(f"--restart-nfe chooses a Restart setting: it needs --sampler restart (got {args.sampler})")
    if args.sampler in ("heun", "euler"):
        if given:
            flags = ", ".join(given)
            where = ("--sampler edm-sde (EDM Alg. 2 churn)" if "--S_churn" in given else
                     "--sampler edm-sde (with --S_churn > 0) or --sampler restart")
            raise ValueError(f"{flags} {'acts' if len(given) == 1 else 'act'} only with {where}; the deterministic "
                             f"{args.sampler} sampler would ignore {'it' if len(given) == 1 else 'them'}")
        return SamplerSpec(args.sampler, args.steps, args.sigma_min, args.sigma_max, args.rho)
    if args.sampler == "edm-sde":
        if not (given.get("--S_churn") or 0) > 0:
            raise ValueError("--sampler edm-sde needs --S_churn > 0 (EDM's ImageNet-64 setting: --S_churn 40 "
                             "--S_min 0.05 --S_max 50 --S_noise 1.003); with 0 it is --sampler heun")
        churn = Stochasticity(args.S_churn, 0.0 if args.S_min is None else args.S_min,
                              math.inf if args.S_max is None else args.S_max,
                              1.0 if args.S_noise is None else args.S_noise)
        if churn.S_min > churn.S_max or churn.S_noise < 0:
            raise ValueError(f"need --S_min <= --S_max and --S_noise >= 0, got {churn}")
        return SamplerSpec("edm-sde", args.steps, args.sigma_min, args.sigma_max, args.rho, churn)
    # restart
    nfe = DEFAULT_RESTART_NFE if args.restart_nfe is None else args.restart_nfe
    config = RESTART_IMAGENET64[nfe]
    if "--S_churn" in given:
        raise ValueError("--S_churn is not a Restart setting: its main pass is deterministic in the published "
                         "settings, and its churn inside the restart intervals is restart_gamma "
                         f"{config.restart_gamma} (use --sampler edm-sde for EDM's churn)")
    if args.steps is not None and args.steps != config.num_steps:
        raise ValueError(f"--steps {args.steps} with --sampler restart: the Restart setting's main grid is "
                         f"{config.num_steps} steps (its t_min values snap to that grid); choose a setting "
                         f"with --restart-nfe ({', '.join(map(str, sorted(RESTART_IMAGENET64)))})")
    config = dataclasses.replace(config, **{k: v for k, v in [("S_noise", args.S_noise), ("S_min", args.S_min),
                                                             ("S_max", args.S_max)] if v is not None})
    return SamplerSpec("restart", None, args.sigma_min, args.sigma_max, args.rho, restart=config)


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
    from bench.images.sampling import generate

    seeds = parse_seeds(args.seeds)
    if args.batch < 1:
        raise ValueError("--batch must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {args.out}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch.cuda.is_available() is False on this machine")
    spec = resolve_spec(args)
    ckpt = DenoiserCheckpoint.load(args.checkpoint)
    u = ckpt.unet
    if args.class_idx is not None and not u.label_dim:
        raise ValueError(f"--class-idx {args.class_idx}: the network is unconditional (no class labels)")
    if args.class_idx is not None and not 0 <= args.class_idx < u.label_dim:
        raise ValueError(f"--class-idx {args.class_idx} out of range: the network has {u.label_dim} classes")
    if args.cfg and ckpt.context is None:
        raise ValueError("--cfg is latent guidance: this checkpoint has no discrete latents")
    if args.temperature is not None and ckpt.context is None:
        raise ValueError("--temperature is the prior's: this checkpoint has no discrete latents")
    if args.temperature is not None:
        spec = dataclasses.replace(spec, temperature=args.temperature)
    spec = dataclasses.replace(spec, cfg=args.cfg)
    if args.fp16 and args.device != "cuda":
        raise ValueError("--fp16 runs the network in fp16 on CUDA only (as EDM's EDMPrecond): use --device cuda")
    if args.fp16 is not None:
        ckpt.use_fp16 = args.fp16
    if args.net_sigma_range is not None:
        lo, hi = args.net_sigma_range
        if not 0 <= lo < hi:
            raise ValueError(f"--net-sigma-range needs 0 <= MIN < MAX, got {lo:g} {hi:g}")
        ckpt.sigma_min, ckpt.sigma_max = lo, hi
    device = torch.device(args.device)
    denoiser = ckpt.build_denoiser().to(device)
    prior = ckpt.build_prior()
    if ckpt.context is not None and prior is None:
        raise ValueError(f"{args.checkpoint}: a DisCo-Diff denoiser without its prior cannot sample latents")
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
