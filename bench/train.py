"""One training loop: Adam, progress bar, JSONL log, atomic checkpoints, exact resume, and a
checkpoint cache keyed by the config hash (a harness reuses a trained model instead of
retraining).

The loop owns one torch.Generator for every random draw of training (batches, noise levels,
Gumbel noise, latent dropout); its state is checkpointed, so a killed-and-resumed run ends with
the same weights as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from bench import atomic
from bench.provenance import config_dict, config_hash


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 1000   # steps between atomic checkpoints
    log_every: int = 50


class CheckpointMismatch(RuntimeError):
    pass


def build_seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Construct a model with its initial weights drawn from `seed`, leaving global RNG state
    untouched (so the same config and seed give the same weights in any process)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


LossFn = Callable[[nn.Module, torch.Generator], torch.Tensor]   # -> scalar loss


def run_dir_for(cache: Path, name: str, model_config: Any, train_config: TrainConfig) -> Path:
    """runs/<name>-<hash of model + training config>."""
    key = config_hash({"model": config_dict(model_config), "train": config_dict(train_config)})
    return Path(cache) / f"{name}-{key}"


def fit(model: nn.Module, loss_fn: LossFn, cfg: TrainConfig, run_dir: Path,
        model_config: Any, desc: str = "train", progress: bool = True,
        stop_after: Optional[int] = None) -> dict:
    """Train model in place; returns {'seconds', 'final_loss', 'resumed_from', 'cached'}.

    run_dir/model.pt (final weights) + run_dir/config.json make a finished run: it is loaded,
    not retrained. run_dir/checkpoint.pt holds the latest resumable state.
    stop_after: stop (with a checkpoint) after this many steps — used to test resumption.
    """
    run_dir = Path(run_dir)
    config = {"model": config_dict(model_config), "train": config_dict(cfg)}
    final, ckpt, cfg_path = run_dir / "model.pt", run_dir / "checkpoint.pt", run_dir / "config.json"
    if cfg_path.exists():
        saved = json.loads(cfg_path.read_text())
        if saved != config:
            raise CheckpointMismatch(f"{run_dir}: config.json differs from the requested config; "
                                     "delete the folder or choose another cache")
    if final.exists():
        state = _load(final)
        model.load_state_dict(state["model"])
        return {"seconds": state.get("seconds", 0.0), "final_loss": state.get("final_loss"),
                "resumed_from": cfg.steps, "cached": True}
    atomic.write_json(cfg_path, config)

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, seconds, history = 0, 0.0, []
    if ckpt.exists():
        state = _load(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, seconds, history = state["step"], state["seconds"], state["history"]
    resumed_from = step

    def save(path: Path, final_loss: Optional[float] = None) -> None:
        atomic.save_torch(path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "generator": gen.get_state(), "step": step, "seconds": seconds,
                                 "history": history, "final_loss": final_loss})

    bar = _progress(cfg.steps, step, desc, progress)
    log = open(run_dir / "log.jsonl", "a", encoding="utf-8")
    running = None
    try:
        while step < cfg.steps:
            t0 = time.perf_counter()
            loss = loss_fn(model, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seconds += time.perf_counter() - t0
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            if step % cfg.log_every == 0 or step == cfg.steps:
                history.append((step, running))
                log.write(json.dumps({"step": step, "loss": running, "seconds": round(seconds, 3)}) + "\n")
                if bar is not None:
                    bar.set_postfix(loss=f"{running:.4f}", it_s=f"{step / max(seconds, 1e-9):.0f}")
            if bar is not None:
                bar.update(1)
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                save(ckpt)
            if stop_after is not None and step >= stop_after and step < cfg.steps:
                save(ckpt)
                return {"seconds": seconds, "final_loss": running, "resumed_from": resumed_from,
                        "cached": False, "stopped_at": step}
    finally:
        log.close()
        if bar is not None:
            bar.close()
    save(final, final_loss=running)
    if ckpt.exists():
        ckpt.unlink()
    return {"seconds": seconds, "final_loss": running, "resumed_from": resumed_from, "cached": False}


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
