"""Figures rendered from saved arrays (npz), so a figure can be redrawn without rerunning."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np

from bench import atomic


def png_metadata() -> dict[str, str]:
    """PNG text chunks naming the code that drew the figure (a result file carries its commit)."""
    from bench.provenance import git_sha
    return {"Software": f"DisCo-Bench git {git_sha()}"}


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata=png_metadata())
    import matplotlib.pyplot as plt

    plt.close(fig)
    return atomic.write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure3(npz: Path, png: Path, title_suffix: str = "") -> Path:
    """Fig. 3: data | DM samples | DisCo-Diff samples coloured by latent, with ODE trajectories."""
    plt = _pyplot()
    d = np.load(npz)
    methods = [k[len("samples_"):] for k in d.files if k.startswith("samples_")]
    fig, axes = plt.subplots(1, 1 + len(methods), figsize=(4 * (1 + len(methods)), 4.2), squeeze=False)
    ax = axes[0, 0]
    ax.scatter(d["data"][:, 0], d["data"][:, 1], s=1, c=d["data_labels"], cmap="tab10", alpha=0.5)
    ax.set_title("data (8-mode mixture)")
    for ax, name in zip(axes[0, 1:], methods):
        x = d[f"samples_{name}"]
        codes = d[f"codes_{name}"] if f"codes_{name}" in d.files else None
        with np.errstate(over="ignore", invalid="ignore"):
            far = ~np.isfinite(x).all(1) | (np.linalg.norm(np.nan_to_num(x, nan=np.inf), axis=1) > 30)
        if far.mean() > 0.01:
            ax.text(0, 0, f"sampler diverged:\n{far.mean():.0%} of samples\nbeyond 10 radii",
                    ha="center", va="center", fontsize=10, color="tab:red")
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5, c=codes if codes is not None else "tab:gray",
                   cmap="tab10" if codes is not None else None)
        traj = d[f"traj_{name}"]  # [steps+1, n, 2]
        for j in range(traj.shape[1]):
            ax.plot(traj[:, j, 0], traj[:, j, 1], ":", lw=0.8, color="k", alpha=0.7)
        ax.set_title(name.replace("__", " ") + (" (colour = latent)" if codes is not None else ""), fontsize=9)
    for ax in axes[0]:
        ax.set_xlim(-4.5, 4.5)
        ax.set_ylim(-4.5, 4.5)
        ax.set_aspect("equal")
    fig.suptitle("2D mixture of Gaussians (DisCo-Diff Fig. 3)" + title_suffix, fontsize=10)
    return _save(fig, png)


def figure4(npz: Path, png: Path, title_suffix: str = "") -> Path:
    """Fig. 4: mean curvature and E||dG/dx||_F^2 versus backward ODE time t, per model."""
    plt = _pyplot()
    d = np.load(npz)
    t = d["t"]
    methods = [k[len("curvature_"):] for k in d.files if k.startswith("curvature_")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in methods:
        label = name.replace("__", " ")
        for ax, what in zip(axes, ("curvature", "jacobian", "jacobiannet")):
            line, = ax.plot(t, d[f"{what}_{name}"], marker=".", label=label)
            if f"runs-{what}_{name}" in d.files:   # every training run: the band spans them
                runs = d[f"runs-{what}_{name}"]
                ax.fill_between(t, runs.min(0), runs.max(0), color=line.get_color(), alpha=0.2, lw=0)
    axes[0].set_title("mean curvature", fontsize=10)
    axes[1].set_title(r"$E\,\|\partial G/\partial x\|_F^2$, G = the whole score", fontsize=10)
    axes[2].set_title(r"$E\,\|\partial G_{net}/\partial x\|_F^2$, the learned part of the score", fontsize=10)
    missing = [n.replace("__", " ") for n in methods if not np.isfinite(d[f"curvature_{n}"]).any()]
    if missing:
        fig.text(0.5, -0.07, "not drawn (sampler diverged, geometry undefined): " + ", ".join(missing),
                 ha="center", fontsize=9, color="tab:red")
    for ax in axes:
        ax.set_xlabel("backward ODE time t")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("ODE curvature and Jacobian norm (DisCo-Diff Fig. 4)" + title_suffix, fontsize=10)
    return _save(fig, png)


def loss_versus_sigma(npz: Path, png: Path, title: str = "", baseline: str = "EDM") -> Path:
    """Fig. 7 left / Fig. 10: training loss at fixed sigma, one curve per model (npz keys:
    sigmas, and loss__<model> for each model)."""
    plt = _pyplot()
    d = np.load(npz)
    fig, (ax, rel) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [k[len("loss__"):] for k in d.files if k.startswith("loss__")]
    base = baseline if baseline in names else names[0]       # ratios are model / baseline
    for name in names:
        ax.plot(d["sigmas"], d[f"loss__{name}"], marker="o", ms=3, label=name)
        if name != base:
            rel.plot(d["sigmas"], d[f"loss__{name}"] / d[f"loss__{base}"], marker="o", ms=3,
                     label=f"{name} / {base} (< 1: lower loss)")
    for a in (ax, rel):
        a.set_xscale("log")
        a.set_xlabel("sigma (= t)")
        a.grid(alpha=0.3)
        a.legend()
    ax.set_ylabel("EDM-weighted training loss")
    rel.axhline(1.0, color="grey", lw=0.8)
    rel.set_ylabel("loss ratio")
    fig.suptitle(title)
    return _save(fig, png)


def _tile(images: np.ndarray) -> np.ndarray:
    """uint8 [rows, cols, C, H, W] -> one [rows * H, cols * W(, 3)] image for imshow (1 px gaps)."""
    r, q, c, h, w = images.shape
    out = np.full((r * (h + 1) - 1, q * (w + 1) - 1, c), 255, dtype=np.uint8)
    for i in range(r):
        for j in range(q):
            out[i * (h + 1):i * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = images[i, j].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def figure7(npz: Path, png: Path, title: str = "") -> Path:
    """Fig. 7: loss versus sigma (figure10's arrays, if saved beside), the latent-switching grid (a row per
    triple, a column per switch point) and the distances to the z_a / z_b images per switch point."""
    plt = _pyplot()
    d = np.load(npz)
    fractions = d["fractions"]
    fig, (loss, grid, dist) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.1, 1.0, 1.1]})
    names = [k[len("loss__"):] for k in d.files if k.startswith("loss__")]
    for name in names:
        loss.plot(d["loss_sigmas"], d[f"loss__{name}"], marker="o", ms=3, label=name)
    if names:
        loss.set_xscale("log")
        loss.set_xlabel("sigma (= t)")
        loss.set_ylabel("training loss (held-out images)")
        loss.legend()
        loss.grid(alpha=0.3)
        loss.set_title(f"loss vs sigma (figure10, git {str(d['loss_git_sha'])[:7]})", fontsize=9)
    else:
        loss.text(0.5, 0.5, "figure10 has not run at this scale:\nno loss-versus-sigma panel\n"
                  "(python -m bench figure10 draws it)", ha="center", va="center", fontsize=9)
        loss.set_axis_off()
    grid.imshow(_tile(d["grid"]), cmap="gray", vmin=0, vmax=255)
    w = d["grid"].shape[-1] + 1
    grid.set_xticks([w * j + w / 2 - 1 for j in range(len(fractions))])
    grid.set_xticklabels(["z_a" if f == 1 else "z_b" if f == 0 else f"{f:.0%}" for f in fractions], fontsize=8)
    grid.set_yticks([])
    grid.set_title("switch z_a -> z_b after this share of the steps", fontsize=9)
    pct = 100 * fractions
    for metric, label in (("latent_switch_change", "to the z_a image"), ("latent_switch_distance_to_b", "to the z_b image")):
        v = np.stack([d[f"{metric}__{f:g}"] for f in fractions])   # [fractions, triples that switch]
        if v.shape[1] == 0:
            dist.text(0.5, 0.5, "no triple switched: the prior drew z_b = z_a in every one", ha="center",
                      va="center", transform=dist.transAxes, fontsize=9)
            continue
        dist.errorbar(pct, v.mean(1), yerr=v.std(1, ddof=1) if v.shape[1] > 1 else None, marker="o", capsize=3,
                      label=label)
    dist.set_xlabel("switch point (% of Heun steps under z_a)")
    dist.set_ylabel("Inception pool-feature distance")
    dist.set_title("distance per switch point (mean ± sd over triples)", fontsize=9)
    dist.legend()
    dist.grid(alpha=0.3)
    fig.suptitle("DisCo-Diff Fig. 7: " + title, fontsize=10)
    return _save(fig, png)


def captioned_grids(panels: list[tuple[str, np.ndarray]], png: Path, title: str,
                    row_labels: Optional[list[list[str]]] = None) -> Path:
    """Image grids side by side, each uint8 [rows, cols, C, H, W] under its own title, with a caption
    (the figure title: scale and dataset). row_labels: per panel, a label per grid row."""
    plt = _pyplot()
    widths = [p[1].shape[1] for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.0, 0.55 * sum(widths) + 1.5 * len(panels)),
                                                      0.55 * max(p[1].shape[0] for p in panels) + 1.4),
                             gridspec_kw={"width_ratios": widths, "wspace": 0.45}, squeeze=False)
    for i, (ax, (name, grid)) in enumerate(zip(axes[0], panels)):
        ax.imshow(_tile(grid), cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        h = grid.shape[-2] + 1
        labels = (row_labels or [[]] * len(panels))[i]
        ax.set_yticks([h * r + h / 2 - 1 for r in range(len(labels))])
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, png)


def image_grid(images: np.ndarray, png: Path, columns: int = 8) -> Path:
    """uint8 [N, C, H, W] -> one PNG grid (greyscale or RGB)."""
    from PIL import Image

    n, c, h, w = images.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * h, columns * w, c), dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, columns)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = img.transpose(1, 2, 0)
    pil = Image.fromarray(grid[..., 0] if c == 1 else grid)
    scale = max(1, 256 // (columns * w))
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    for k, v in png_metadata().items():
        info.add_text(k, v)
    pil.save(buf, format="PNG", pnginfo=info)
    return atomic.write_bytes(png, buf.getvalue())


def figure8(npz: Path, png: Path, title: str = "") -> Path:
    """Fig. 8: per shown complex, a 2D view (the poses' two principal axes) of the pocket C-alphas, the crystal
    ligand (black) and every pose coloured by its latent, with each latent's pointed-to node starred; below,
    each pose's RMSD to the crystal pose grouped by latent (npz keys <key>__<i> of bench/harnesses/figure8.py)."""
    plt = _pyplot()
    d = np.load(npz)
    names = [str(n) for n in d["names"]]
    fig, axes = plt.subplots(2, max(1, len(names)), figsize=(5.2 * max(1, len(names)), 8.4),
                             gridspec_kw={"height_ratios": [3, 1.4]}, squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for i, name in enumerate(names):
        poses, rmsd, latents = d[f"poses__{i}"], d[f"rmsd__{i}"], d[f"latents__{i}"]
        crystal, pocket, bonds = d[f"crystal__{i}"], d[f"pocket__{i}"], d[f"bonds__{i}"]
        n_lig = int(d[f"num_ligand__{i}"])
        cloud = np.concatenate([crystal, poses.reshape(-1, 3)])
        centre = cloud.mean(0)
        axes_2d = np.linalg.svd(cloud - centre, full_matrices=False)[2][:2].T     # [3, 2] principal axes
        proj = lambda x: (np.asarray(x) - centre) @ axes_2d   # noqa: E731
        ax = axes[0, i]
        ax.scatter(*proj(pocket).T, s=14, color="0.82", zorder=0, label="pocket C-alpha")
        for lat in range(len(latents)):
            c = colours[lat % len(colours)]
            for s in range(poses.shape[1]):
                xy = proj(poses[lat, s])
                for a, b in bonds:
                    ax.plot(*xy[[a, b]].T, color=c, lw=1.1, alpha=0.55, zorder=1)
            for node in latents[lat]:   # a pointer names a ligand atom (< n_lig) or a residue
                xy = proj(poses[lat, :, node].mean(0)) if node < n_lig else proj(pocket[node - n_lig])
                ax.scatter(*xy, marker="*", s=170, color=c, edgecolor="k", lw=0.6, zorder=3)
            ax.plot([], [], color=c, lw=2, label=f"latent {tuple(int(v) for v in latents[lat])}: median "
                                                  f"{np.nanmedian(rmsd[lat]):.1f} A")
        xy = proj(crystal)
        for a, b in bonds:
            ax.plot(*xy[[a, b]].T, color="k", lw=2.2, zorder=2)
        ax.plot([], [], color="k", lw=2.2, label="crystal pose")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{name}: within-latent pose RMSD {float(d[f'within__{i}']):.2f} A, "
                     f"between {float(d[f'between__{i}']):.2f} A", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="best")
        bx = axes[1, i]
        for lat in range(len(latents)):
            x = lat + np.linspace(-0.15, 0.15, poses.shape[1])
            bx.scatter(x, rmsd[lat], color=colours[lat % len(colours)], s=22)
        bx.axhline(2.0, color="grey", lw=0.8, ls="--")
        bx.set_xticks(range(len(latents)))
        bx.set_xticklabels([f"latent {k}" for k in range(len(latents))], fontsize=8)
        bx.set_ylabel("RMSD to crystal (A)")
        bx.grid(alpha=0.3)
    if not names:
        axes[0, 0].text(0.5, 0.5, "no complex to show", ha="center", va="center")
    fig.suptitle(title + "\n(stars: the node each latent points to; a pointed-to ligand atom is drawn at its "
                 "mean position over that latent's poses)", fontsize=9)
    return _save(fig, png)


def docking_range(rmsds: list[np.ndarray], threshold: float = 2.0) -> tuple[float, str]:
    """The x range of the success curves and a note for the plot when no sample reaches the threshold.
    The range reaches the RMSDs actually met (95th percentile, within 10..50 A), so a weak run (smoke
    scale) draws its curves instead of flat zeros, and says why nothing succeeds."""
    finite = np.concatenate([r[np.isfinite(r)] for r in rmsds] + [np.zeros(0)])
    if not len(finite):
        return 10.0, "every complex failed: nothing to draw"
    x_max = float(np.clip(np.quantile(finite, 0.95), 10, 50))
    if finite.min() >= threshold:
        return x_max, f"no sample of any complex is below {threshold:g} A at this scale"
    return x_max, ""


def docking_success(npz: Path, png: Path, title: str = "", threshold: float = 2.0) -> Path:
    """Table 4 as curves: fraction of complexes whose top-1 (by confidence) / best sample RMSD is below x
    (npz keys rmsds__<method>, confidence__<method>: [n_complexes, n_samples], NaN = failed)."""
    plt = _pyplot()
    d = np.load(npz)
    fig, ax = plt.subplots(figsize=(6, 4))
    keys = [k for k in d.files if k.startswith("rmsds__")]
    x_max, note = docking_range([d[k] for k in keys], threshold)
    xs = np.linspace(0, x_max, 201)
    if note:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="firebrick")
    for key in keys:
        method = key[len("rmsds__"):]
        r = np.nan_to_num(d[key], nan=np.inf)
        conf = np.nan_to_num(d[f"confidence__{method}"], nan=-np.inf)
        top1 = r[np.arange(len(r)), np.argmax(conf, axis=1)]
        line, = ax.plot(xs, [(top1 < x).mean() for x in xs], label=f"{method} top-1")
        ax.plot(xs, [(r.min(1) < x).mean() for x in xs], ls="--", color=line.get_color(),
                label=f"{method} best of {r.shape[1]}")
    ax.axvline(threshold, color="grey", lw=0.8)
    ax.set_xlabel("ligand RMSD (A, symmetry-corrected)")
    ax.set_ylabel("fraction of complexes below")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _save(fig, png)
