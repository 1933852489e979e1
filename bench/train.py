"""One training loop: Adam, progress bar, JSONL log, atomic checkpoints, exact resume, and a
checkpoint cache keyed by the config hash (a harness reuses a trained model instead of
retraining).

The loop owns one torch.Generator for every random draw of training (batches, noise levels,
Gumbel noise, latent dropout); its state is checkpointed, so a killed-and-resumed run ends with
the same weights as an uninterrupted one.

Distributed data parallel (under `torchrun`): every rank holds the same generator and draws the
randomness of the whole global batch, then keeps its own contiguous slice (`Shard.take`), so N
processes see exactly the samples, noise and latents one process would; DDP averages the
gradients. Rank 0 alone writes checkpoints and logs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from bench import atomic
from bench.progress import stage
from bench.distributed import Shard
from bench.provenance import config_dict, config_hash


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 1000   # steps between atomic checkpoints
    log_every: int = 50
    lr_rampup_kimg: float = 0.0    # EDM: lr grows linearly over this many thousand images (0: off)
    ema_halflife_kimg: float = 0.0  # EDM's EMA half-life in thousand images (0: no EMA)
    ema_rampup_ratio: Optional[float] = 0.05  # EDM: half-life <= ratio x images seen so far
    bf16: bool = False             # bf16 autocast of the forward pass (CUDA only; fp32 weights)


def lr_at(cfg: TrainConfig, cur_nimg: int) -> float:
    """EDM training_loop: lr * min(cur_nimg / (lr_rampup_kimg * 1000), 1); cur_nimg counts the
    images seen before this step (so EDM's very first step has lr 0)."""
    if cfg.lr_rampup_kimg <= 0:
        return cfg.lr
    return cfg.lr * min(cur_nimg / max(cfg.lr_rampup_kimg * 1000, 1e-8), 1.0)


def ema_beta(cfg: TrainConfig, cur_nimg: int) -> float:
    """EDM training_loop: half-life h = min(ema_halflife_kimg * 1000, cur_nimg * ema_rampup_ratio)
    images; beta = 0.5 ** (batch_size / h); ema <- beta * ema + (1 - beta) * net."""
    h = cfg.ema_halflife_kimg * 1000
    if cfg.ema_rampup_ratio is not None:
        h = min(h, cur_nimg * cfg.ema_rampup_ratio)
    return 0.5 ** (cfg.batch_size / max(h, 1e-8))


class CheckpointMismatch(RuntimeError):
    pass


def build_seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Construct a model with its initial weights drawn from `seed`, leaving global RNG state
    untouched (so the same config and seed give the same weights in any process)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


# loss_fn(model, generator, shard) -> scalar loss over the shard's slice of the global batch.
# The generator draws the whole global batch's randomness on every rank (see module docstring).
LossFn = Callable[[nn.Module, torch.Generator, Shard], torch.Tensor]


def run_dir_for(cache: Path, name: str, model_config: Any, train_config: TrainConfig) -> Path:
    """runs/<name>-<hash of model + training config>."""
    key = config_hash({"model": config_dict(model_config), "train": config_dict(train_config)})
    return Path(cache) / f"{name}-{key}"


def checkpoint_step(run_dir: Path) -> int:
    """The step `fit` resumes run_dir from: its checkpoint.pt's "step", read with mmap so the
    weights stay on disk; 0 for a fresh or finished run. An unreadable checkpoint reads as 0 here;
    fit then refuses it with its own error. (A data sampler that is a function of the step starts
    there, so resuming never replays the data.)"""
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if (run_dir / "model.pt").exists() or not ckpt.exists():
        return 0
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:
        return 0


def fit(model: nn.Module, loss_fn: LossFn, cfg: TrainConfig, run_dir: Path,
        model_config: Any, desc: str = "train", progress: bool = True,
        stop_after: Optional[int] = None, ema: Optional[nn.Module] = None,
        shard: Shard = Shard()) -> dict:
    """Train model in place; returns {'seconds', 'final_loss', 'resumed_from', 'cached'}.

    run_dir/model.pt (final weights) + run_dir/config.json make a finished run: it is loaded,
    not retrained. run_dir/checkpoint.pt holds the latest resumable state.
    stop_after: stop (with a checkpoint) after this many steps — used to test resumption.
    ema: a copy of model, updated in place with EDM's EMA (required iff cfg.ema_halflife_kimg > 0).
    shard: this process's rank and the world size (see bench.distributed.init_process_group);
    with world > 1 the model is wrapped in DistributedDataParallel and rank 0 writes.
    """
    if (cfg.ema_halflife_kimg > 0) != (ema is not None):
        raise ValueError("pass ema (a copy of the model) exactly when ema_halflife_kimg > 0")
    run_dir = Path(run_dir)
    config = {"model": config_dict(model_config), "train": config_dict(cfg)}
    final, ckpt, cfg_path = run_dir / "model.pt", run_dir / "checkpoint.pt", run_dir / "config.json"
    if cfg_path.exists():
        saved = json.loads(cfg_path.read_text())
        if saved != config:
            raise CheckpointMismatch(f"{run_dir}: config.json differs from the requested config; "
                                     "delete the folder or choose another cache")
    if final.exists():
        stage(f"{desc}: trained model found in the cache ({run_dir})", shard.is_main)
        state = _load(final)
        shard.barrier()
        _restore(model, state["model"], final)
        if ema is not None:
            _restore(ema, state["ema"], final)
        return {"seconds": state.get("seconds", 0.0), "final_loss": state.get("final_loss"),
                "resumed_from": cfg.steps, "cached": True}
    if shard.is_main:
        atomic.write_json(cfg_path, config)
    shard.barrier()

    device = next(model.parameters()).device
    trained = shard.wrap(model)      # DDP when world > 1, else the model itself
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, seconds, history = 0, 0.0, []
    if ckpt.exists():
        state = _load(ckpt)
        _restore(model, state["model"], ckpt)
        if ema is not None:
            _restore(ema, state["ema"], ckpt)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])   # the global RNG drives dropout
        step, seconds, history = state["step"], state["seconds"], state["history"]
    resumed_from, seconds_at_start = step, seconds
    stage(f"training {desc}: " + (f"resuming at step {step:,} of {cfg.steps:,}" if step else f"{cfg.steps:,} steps")
          + f" x batch {cfg.batch_size} ({run_dir})", shard.is_main)

    def save(path: Path, final_loss: Optional[float] = None) -> None:
        if shard.is_main:
            atomic.save_torch(path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "ema": ema.state_dict() if ema is not None else None,
                                     "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                     "step": step, "seconds": seconds,
                                     "history": history, "final_loss": final_loss})
        shard.barrier()

    bar = _progress(cfg.steps, step, desc, progress and shard.is_main)
    log = open(run_dir / "log.jsonl", "a", encoding="utf-8") if shard.is_main else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda")
    running = reported = None
    nonfinite = 0       # steps with a non-finite loss (this process)
    try:
        while step < cfg.steps:
            t0 = time.perf_counter()
            cur_nimg = step * cfg.batch_size
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, cur_nimg)
            with autocast:
                loss = loss_fn(trained, gen, shard)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # EDM training_loop: nan_to_num on every gradient before the step (nan -> 0, +-inf ->
            # +-1e5), so one non-finite loss cannot turn the weights NaN for good.
            for p in model.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
            if ema is not None:
                beta = ema_beta(cfg, cur_nimg)
                with torch.no_grad():
                    for p_ema, p in zip(ema.parameters(), model.parameters()):
                        p_ema.copy_(p.detach().lerp(p_ema, beta))
            seconds += time.perf_counter() - t0
            step += 1
            # This rank's running loss; averaged over ranks only when reported (the average of
            # the ranks' running means is the running mean of the global batch's loss). A
            # non-finite loss is logged and left out of it.
            value = loss.item()
            if not math.isfinite(value):
                nonfinite += 1
                stage(f"warning: {desc}: non-finite loss ({value}) at step {step}; its gradients were "
                      "zeroed (EDM's nan_to_num)", shard.is_main)
                if log is not None:
                    log.write(json.dumps({"step": step, "event": "nonfinite_loss", "loss": str(value)}) + "\n")
            elif running is None:
                running = value
            else:
                running = 0.98 * running + 0.02 * value
            if step % cfg.log_every == 0 or step == cfg.steps:
                reported = shard.mean(math.nan if running is None else running)
                history.append((step, reported))
                examples_s = (step - resumed_from) * cfg.batch_size / max(seconds - seconds_at_start, 1e-9)
                if log is not None:
                    log.write(json.dumps({"step": step, "loss": reported, "seconds": round(seconds, 3),
                                          "examples_per_s": round(examples_s, 2)}) + "\n")
                    log.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{reported:.4f}", ex_s=f"{examples_s:.1f}")
            if bar is not None:
                bar.update(1)
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                save(ckpt)
            if stop_after is not None and step >= stop_after and step < cfg.steps:
                save(ckpt)
                return {"seconds": seconds, "final_loss": shard.mean(math.nan if running is None else running),
                        "resumed_from": resumed_from, "cached": False, "stopped_at": step,
                        "nonfinite_steps": nonfinite}
    finally:
        if log is not None:
            log.close()
        if bar is not None:
            bar.close()
    save(final, final_loss=reported)   # the last step always reports
    if shard.is_main and ckpt.exists():
        ckpt.unlink()
    return {"seconds": seconds, "final_loss": reported, "resumed_from": resumed_from, "cached": False,
            "nonfinite_steps": nonfinite}


def _restore(module: nn.Module, state: dict, path: Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:  # another architecture's weights
        raise CheckpointMismatch(f"{path}: weights do not fit this model ({str(e).splitlines()[0]})") from e


def _load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise CheckpointMismatch(f"{path}: not a readable DisCo-Bench checkpoint ({e})") from e


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, disable=None, dynamic_ncols=True)
