"""Our image training step beside NVlabs/edm's own, on the same ADM config, data and batch:
the ours/EDM wall-time ratio, median over alternated steps (a peer measurement; EDM's code is not a
dependency, so this is a script, not part of the test tiers).

    git -C <edm mirror> archive HEAD | tar -x -C /tmp/edm      # NVlabs/edm, any checkout
    python benchmarks/edm_peer_step.py --edm /tmp/edm [--steps 12 --batch 8 --res 32 --channels 64]

One step each, as the two training loops do it: the EDM loss of a batch (log-normal sigma,
lambda(sigma)-weighted squared error summed over pixels, divided by the batch), backward,
nan_to_num on the gradients, Adam, EMA update. Both networks start from the same weights.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edm", required=True, help="an NVlabs/edm checkout (its training/ and torch_utils/)")
    ap.add_argument("--steps", type=int, default=12, help="timed steps of each, alternated (after 2 warm-up)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--res", type=int, default=32)
    ap.add_argument("--channels", type=int, default=64, help="model_channels")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, args.edm)
    from training.loss import EDMLoss               # noqa: E402  (EDM's code, from --edm)
    from training.networks import EDMPrecond as EDMsPrecond

    from bench.diffusion.loss import EDMLossConfig
    from bench.images.model import ImageDiffusionModel, ImageModelConfig, draw_batch
    from bench.nets.adm_unet import ADMUNetConfig, load_edm_state_dict

    cfg = ADMUNetConfig(img_resolution=args.res, in_channels=3, out_channels=3, label_dim=10,
                        model_channels=args.channels, channel_mult=(1, 2, 2), num_blocks=2,
                        attn_resolutions=(args.res // 2,), dropout=0.10)
    torch.manual_seed(0)
    edm = EDMsPrecond(img_resolution=args.res, img_channels=3, label_dim=10, model_type="DhariwalUNet",
                      model_channels=cfg.model_channels, channel_mult=list(cfg.channel_mult),
                      num_blocks=cfg.num_blocks, attn_resolutions=list(cfg.attn_resolutions), dropout=0.10)
    ours = ImageDiffusionModel(ImageModelConfig(cfg))
    load_edm_state_dict(ours.denoiser.net, edm.model.state_dict())   # the same weights
    loss_cfg = EDMLossConfig()
    edm_loss = EDMLoss(P_mean=loss_cfg.P_mean, P_std=loss_cfg.P_std, sigma_data=loss_cfg.sigma_data)
    y = torch.rand(args.batch, 3, args.res, args.res) * 2 - 1
    labels = torch.eye(10)[torch.arange(args.batch) % 10]
    opt = {"ours": torch.optim.Adam(ours.parameters(), lr=1e-4), "edm": torch.optim.Adam(edm.parameters(), lr=1e-4)}
    ema = {"ours": [p.detach().clone() for p in ours.parameters()],
           "edm": [p.detach().clone() for p in edm.parameters()]}
    gen = torch.Generator().manual_seed(1)

    def step(name: str) -> float:
        net = ours if name == "ours" else edm
        t0 = time.perf_counter()
        if name == "ours":     # bench.images.pipeline's loss_fn
            draw = draw_batch(ours.cfg, loss_cfg, args.batch, gen)
            loss = ours(y, labels, draw, loss_cfg).mean()
        else:                  # EDM training_loop: loss.sum().mul(loss_scaling / batch_gpu_total)
            loss = edm_loss(net=edm, images=y, labels=labels).sum().mul(1 / args.batch)
        opt[name].zero_grad(set_to_none=True)
        loss.backward()
        for p in net.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt[name].step()
        with torch.no_grad():
            for e, p in zip(ema[name], net.parameters()):
                e.copy_(p.detach().lerp(e, 0.999))
        return time.perf_counter() - t0

    for _ in range(2):
        step("ours"), step("edm")
    ratios, t_ours, t_edm = [], [], []
    for i in range(args.steps):
        a, b = (step("ours"), step("edm")) if i % 2 == 0 else reversed((step("edm"), step("ours")))
        t_ours.append(a), t_edm.append(b), ratios.append(a / b)
    print(f"ADM {args.res}x{args.res}, {args.channels} channels x (1,2,2), batch {args.batch}, "
          f"{args.threads} thread(s), {sum(p.numel() for p in ours.parameters()):,} parameters")
    print(f"step time median: ours {statistics.median(t_ours):.3f} s, EDM {statistics.median(t_edm):.3f} s; "
          f"ours/EDM ratio median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
          f"{len(ratios)} alternated steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
