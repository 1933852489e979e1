"""Train one of the image models (FID tables, figures) on its own, into the harnesses' cache, so that models
which do not depend on each other train at once in separate processes (one intra-op thread each):

    python -m bench.images.pretrain edm --scale small &
    python -m bench.images.pretrain disco-diff --scale small &
    wait; python -m bench table3 --scale small      # finds them trained, goes on from there

The models are the ones table1, table3 and figure10 would train themselves (same presets, data,
seeds and cache keys: bench.images.pipeline.train_model); a finished run is loaded, an interrupted
one resumes. `--list` names them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.provenance import REPO_ROOT

# name -> (preset label, class-conditional)
MODELS = {
    "edm": ("EDM", True),
    "disco-diff": ("DisCo-Diff", True),
    "continuous-kld0.1": ("continuous latent, KLD weight 0.1", True),
    "continuous-kld1": ("continuous latent, KLD weight 1", True),
    "edm-uncond": ("EDM", False),
    "disco-diff-uncond": ("DisCo-Diff", False),
    "disco-diff-hierarchical": ("DisCo-Diff (hierarchical)", True),   # Figs. 6, 15, 16
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.images.pretrain", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", choices=list(MODELS), help="which model (stage 1 and its prior)")
    ap.add_argument("--scale", default="small", choices=("smoke", "small", "paper"))
    ap.add_argument("--cache", type=Path, default=REPO_ROOT / "runs",
                    help="the cache the harnesses read (default: runs/ in the repository, as `python -m bench`)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1: two processes share 2 cores)")
    ap.add_argument("--list", action="store_true", help="name the models and the tables that use them")
    args = ap.parse_args(argv)
    if args.list or args.model is None:
        for name, (label, cond) in MODELS.items():
            print(f"{name:<20} {label}{'' if cond else ' (unconditional)'}")
        return 0 if args.list else 2

    import torch

    from bench.data.images import DatasetError
    from bench.images.pipeline import load_preset_dataset, train_model
    from bench.images.presets import image_preset
    torch.set_num_threads(args.threads)
    label, cond = MODELS[args.model]
    preset = image_preset(label, args.scale, cond)
    try:
        data = load_preset_dataset(image_preset("EDM", args.scale), "train")
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    m = train_model(preset, data, args.cache, args.seed)
    print(f"{args.model} [{args.scale}]: ready in {time.perf_counter() - t0:.0f} s ({m.stage1.run_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
