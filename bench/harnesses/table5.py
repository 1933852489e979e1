"""Table 5: the ImageNet network configurations, checked against our paper-scale preset, with
the parameter count of every network DisCo-Diff adds (built on the meta device: no memory).

ImageNet-128's denoiser (U-ViT) is not built yet, so only its encoder patch is checked.
"""
from __future__ import annotations

import time

import torch

from bench.disco.latent_context import LatentContext, LatentContextConfig
from bench.disco.prior import ARPriorConfig, AutoregressivePrior
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig
from bench.nets.vit_encoder import ViTEncoder, ViTEncoderConfig
from bench.provenance import device_name, git_sha
from bench.reference import load_reference
from bench.registry import RunContext, harness
from bench.rows import Row

# Paper-scale ImageNet-64 DisCo-Diff (App. D, Table 5): m = 10 latents, codebook 100.
LATENTS = LatentContextConfig(m=10, k=100, width=192, depth=6, heads=4)
UNET_64 = ADMUNetConfig.imagenet64(xattn_dim=LATENTS.width)
ENCODER_64 = ViTEncoderConfig.imagenet64()
ENCODER_128 = ViTEncoderConfig(img_resolution=128, patch=16)
PRIOR = ARPriorConfig(m=10, k=100, num_classes=1000, width=512, depth=12, heads=8)


def table5_notation(unet: ADMUNetConfig) -> dict[str, str]:
    """Our config written the way Table 5 writes it."""
    return {"feature_maps": "-".join(map(str, unet.channel_mult)) + f" (x{unet.model_channels})",
            "attention_resolutions": "(" + ",".join(map(str, sorted(unet.attn_resolutions))) + ")"}


def _parameters(make) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in make().parameters())


@harness("table5", "Table 5: ImageNet network configurations (parameter counts at paper scale)", ("table5",))
def table5(ctx: RunContext) -> list[Row]:
    t0 = time.perf_counter()
    ref = load_reference()
    ours = {**{f"table5.imagenet64.{k}": v for k, v in table5_notation(UNET_64).items()},
            "table5.imagenet64.encoder_patch": f"{ENCODER_64.patch}x{ENCODER_64.patch}",
            "table5.imagenet128.encoder_patch": f"{ENCODER_128.patch}x{ENCODER_128.patch}"}
    counts = {"ADM U-Net (EDM baseline)": _parameters(lambda: ADMUNet(ADMUNetConfig.imagenet64())),
              "ADM U-Net + cross-attention": _parameters(lambda: ADMUNet(UNET_64)),
              "ViT encoder": _parameters(lambda: ViTEncoder(ENCODER_64)),
              "latent context": _parameters(lambda: LatentContext(LATENTS)),
              "autoregressive prior": _parameters(lambda: AutoregressivePrior(PRIOR))}
    if ctx.dry_run:
        for ref_id, v in ours.items():
            print(f"{ref_id}: ours {v!r}, paper {ref[ref_id].value!r}")
        for name, n in counts.items():
            print(f"{name}: {n:,} parameters")
        return []
    seconds = time.perf_counter() - t0
    common = dict(scale=ctx.scale, dataset="(configuration only)", device=device_name("cpu"),
                  git_sha=git_sha(), seconds=seconds)
    rows = [Row("table5", ref_id, "DisCo-Diff", "app-f",
                f"{ref[ref_id].setting} {ref[ref_id].metric}: ours {v}, paper {ref[ref_id].value}",
                "matches_table5", float(v == ref[ref_id].value), **common)
            for ref_id, v in ours.items()]
    rows += [Row("table5", "", name, "app-f", "ImageNet-64", "parameters", float(n), **common)
             for name, n in counts.items()]
    return rows
