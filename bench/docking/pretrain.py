"""Train one of table4's two score models on its own, into the harness's cache, so that DiffDock-S and
DisCo-DiffDock-S stage 1 (which do not depend on each other) can train at once in two processes:

    python -m bench.docking.pretrain diffdock-s --scale small &
    python -m bench.docking.pretrain disco --scale small &
    wait; python -m bench table4 --scale small      # finds both trained, goes on from there

The models are the ones `table4` would train itself (same configs, seeds, data and cache keys); a finished
run is loaded, an interrupted one resumes. Each process uses one intra-op thread, so two share two cores.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.provenance import REPO_ROOT
from bench.threads import single_thread

PARTS = ("diffdock-s", "disco")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.docking.pretrain", description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=PARTS, help="which score model to train")
    ap.add_argument("--scale", default="small", choices=("smoke", "small", "paper"))
    ap.add_argument("--cache", type=Path, default=REPO_ROOT / "runs",
                    help="the cache table4 reads (default: runs/ in the repository, as `python -m bench`)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from bench.docking.data import DockingDataError
    from bench.docking.pipeline import load_docking_data, train_diffdock_s, train_disco_stage1
    from bench.docking.presets import docking_preset
    preset = docking_preset(args.scale)
    try:
        data = load_docking_data(preset)
    except DockingDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if data.train[0].esm is not None:
        preset = preset.with_esm(int(data.train[0].esm.shape[1]))
    train = train_diffdock_s if args.part == "diffdock-s" else train_disco_stage1
    with single_thread():
        _, run, info = train(preset, data.train, args.cache, args.seed, progress=True)
    print(f"{args.part} [{args.scale}]: {'cached' if info.get('cached') else 'trained'} in {run} "
          f"({info.get('seconds', 0.0):.0f} s, final loss {info.get('final_loss')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
