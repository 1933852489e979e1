"""Self-describing sampling checkpoints: one `.pt` file with the configs (plain dicts) and the
state dicts of everything `python -m bench sample` needs — the EDM/DisCo denoiser and, for
DisCo-Diff, the autoregressive prior. Loaded with `weights_only=True` (no pickled code), and
rebuilt from typed configs.

Layout (all plain Python containers and tensors):
  format      "disco-bench/denoiser-v1"
  unet        ADMUNetConfig as a dict
  sigma_data  float
  context     LatentContextConfig as a dict, or None for a baseline (EDM) denoiser
  denoiser    state dict of EDMPrecond(ADMUNet) (keys "net.*"), or of DisCoADMDenoiser
  prior       {"config": ARPriorConfig dict, "state": state dict}, or None
  source      free text: where the weights came from (e.g. the EDM pickle's name, a run dir)
  use_fp16, sigma_min, sigma_max
              EDM's EDMPrecond attributes (an imported network keeps what its pickle says)
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from bench import atomic
from bench.provenance import config_dict

FORMAT = "disco-bench/denoiser-v1"


class CheckpointError(ValueError):
    """A file is not a readable DisCo-Bench sampling checkpoint, or does not fit its config."""


@dataclasses.dataclass
class DenoiserCheckpoint:
    unet: Any                                  # ADMUNetConfig
    sigma_data: float
    denoiser: dict[str, torch.Tensor]
    context: Any = None                        # LatentContextConfig or None
    prior_config: Any = None                   # ARPriorConfig or None
    prior: Optional[dict[str, torch.Tensor]] = None
    source: str = ""
    use_fp16: bool = False                     # EDM's EDMPrecond.use_fp16 (network in fp16 on CUDA)
    sigma_min: float = 0.0                     # the network's supported noise range (EDMPrecond)
    sigma_max: float = math.inf

    def save(self, path: Path) -> Path:
        return atomic.save_torch(Path(path), {
            "format": FORMAT, "unet": config_dict(self.unet), "sigma_data": float(self.sigma_data),
            "context": config_dict(self.context) if self.context is not None else None,
            "denoiser": self.denoiser,
            "prior": ({"config": config_dict(self.prior_config), "state": self.prior}
                      if self.prior is not None else None),
            "source": self.source, "use_fp16": bool(self.use_fp16), "sigma_min": float(self.sigma_min),
            "sigma_max": float(self.sigma_max)})

    @classmethod
    def load(cls, path: Path) -> "DenoiserCheckpoint":
        from bench.disco.latent_context import LatentContextConfig
        from bench.disco.prior import ARPriorConfig
        from bench.nets.adm_unet import ADMUNetConfig

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, foreign, or a pickle with code in it
            raise CheckpointError(f"{path}: not a readable DisCo-Bench checkpoint ({e}). "
                                  "EDM pickles must be converted first: python -m bench import-edm SRC --out CKPT") from e
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a DisCo-Bench sampling checkpoint (format "
                                  f"{blob.get('format') if isinstance(blob, dict) else type(blob).__name__!r}, "
                                  f"expected {FORMAT!r})")
        try:
            prior = blob.get("prior")
            return cls(unet=ADMUNetConfig(**blob["unet"]), sigma_data=float(blob["sigma_data"]),
                       denoiser=blob["denoiser"],
                       context=LatentContextConfig(**blob["context"]) if blob.get("context") else None,
                       prior_config=ARPriorConfig(**prior["config"]) if prior else None,
                       prior=prior["state"] if prior else None, source=blob.get("source", ""),
                       # absent in checkpoints written before these were kept: EDM's defaults
                       use_fp16=bool(blob.get("use_fp16", False)), sigma_min=float(blob.get("sigma_min", 0.0)),
                       sigma_max=float(blob.get("sigma_max", math.inf)))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: malformed checkpoint ({e!r})") from e

    def build_denoiser(self) -> nn.Module:
        """EDMPrecond(ADMUNet) for a baseline, DisCoADMDenoiser when there is a latent context."""
        from bench.diffusion.preconditioning import EDMPrecond
        from bench.disco.image_denoiser import DisCoADMDenoiser
        from bench.nets.adm_unet import ADMUNet

        precond = dict(use_fp16=self.use_fp16, sigma_min=self.sigma_min, sigma_max=self.sigma_max)
        model = (DisCoADMDenoiser(self.unet, self.context, self.sigma_data, **precond) if self.context is not None
                 else EDMPrecond(ADMUNet(self.unet), self.sigma_data, **precond))
        _load_strict(model, self.denoiser, "denoiser")
        return model.eval().requires_grad_(False)

    def build_prior(self) -> Optional[nn.Module]:
        from bench.disco.prior import AutoregressivePrior

        if self.prior is None:
            return None
        prior = AutoregressivePrior(self.prior_config)
        _load_strict(prior, self.prior, "prior")
        return prior.eval().requires_grad_(False)


def _load_strict(model: nn.Module, state: dict, what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{what} weights do not fit the checkpoint's own config: "
                              f"{str(e).splitlines()[0]}") from e
