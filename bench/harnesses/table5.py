"""Table 5: the ImageNet network configurations, checked against our paper-scale preset, with
the parameter count of every network DisCo-Diff adds (built on the meta device: no memory).

ImageNet-128 has no preset yet (its U-ViT denoiser comes with VDM++, issue 17): none of its three
Table 5 cells is checked. (An encoder config written here with patch 16 would only check itself.)
"""
from __future__ import annotations

import time

from bench.disco.latent_context import LatentContext
from bench.disco.prior import AutoregressivePrior
from bench.images.presets import image_preset
from bench.nets import meta_parameter_count
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig
from bench.nets.vit_encoder import ViTEncoder
from bench.provenance import device_name, git_sha
from bench.reference import load_reference
from bench.registry import RunContext, harness
from bench.rows import Row
from bench.tolerance import EXACT

# The paper-scale ImageNet-64 DisCo-Diff preset (App. D, Table 5): the configuration that trains.
_PAPER = image_preset("DisCo-Diff", "paper")
LATENTS, UNET_64, ENCODER_64, PRIOR = _PAPER.model.context, _PAPER.model.unet, _PAPER.model.encoder, _PAPER.prior

def table5_notation(unet: ADMUNetConfig) -> dict[str, str]:
    """Our config written the way Table 5 writes it."""
    return {"feature_maps": "-".join(map(str, unet.channel_mult)) + f" (x{unet.model_channels})",
            "attention_resolutions": "(" + ",".join(map(str, sorted(unet.attn_resolutions))) + ")"}


@harness("table5", "Table 5: ImageNet network configurations (parameter counts at paper scale)", ("table5",),
         code=("bench/harnesses/table5.py", "bench/images/presets.py", "baselines/edm/preset.py", "bench/nets/",
               "bench/disco/"),
         tolerances=(("matches_table5", EXACT), ("parameters", EXACT)))
def table5(ctx: RunContext) -> list[Row]:
    t0 = time.perf_counter()
    ref = load_reference()
    ours = {**{f"table5.imagenet64.{k}": v for k, v in table5_notation(UNET_64).items()},
            "table5.imagenet64.encoder_patch": f"{ENCODER_64.patch}x{ENCODER_64.patch}"}
    counts = {"ADM U-Net (EDM baseline)": meta_parameter_count(lambda: ADMUNet(ADMUNetConfig.imagenet64())),
              "ADM U-Net + cross-attention": meta_parameter_count(lambda: ADMUNet(UNET_64)),
              "ViT encoder": meta_parameter_count(lambda: ViTEncoder(ENCODER_64)),
              "latent context": meta_parameter_count(lambda: LatentContext(LATENTS)),
              "autoregressive prior": meta_parameter_count(lambda: AutoregressivePrior(PRIOR))}
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
