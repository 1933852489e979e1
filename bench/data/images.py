"""Image datasets: EDM's dataset format (zip or folder of PNGs + dataset.json labels), and the
offline stand-ins — scikit-learn's digits (smoke) and Debian's Fashion-MNIST (small).

Every loader returns an `ImageDataset` (uint8 images [N, C, H, W], labels [N] or None) and
fails with a `DatasetError` that says what is wrong and where: a missing path, a wrong
resolution or channel count, labels missing for a class-conditional run, an unreadable file.
Stand-ins carry their own name, so results never present them as the paper's dataset.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")   # Debian: dataset-fashion-mnist


class DatasetError(ValueError):
    pass


@dataclasses.dataclass
class ImageDataset:
    name: str                       # shown in results; stand-ins say so
    images: np.ndarray              # uint8 [N, C, H, W]
    labels: Optional[np.ndarray]    # int64 [N], or None when unlabelled
    num_classes: int = 0

    def __len__(self) -> int:
        return len(self.images)

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def subset(self, rows: slice) -> "ImageDataset":
        """The same dataset restricted to `rows` (e.g. a held-out slice)."""
        return dataclasses.replace(self, images=self.images[rows],
                                   labels=None if self.labels is None else self.labels[rows])

    def as_float(self) -> np.ndarray:
        """[-1, 1] float32, EDM's convention (x / 127.5 - 1)."""
        return self.images.astype(np.float32) / 127.5 - 1

    def check(self, resolution: int, channels: int, conditional: bool) -> "ImageDataset":
        if self.resolution != resolution or self.images.shape[-2] != resolution:
            raise DatasetError(f"{self.name}: images are {self.images.shape[-2]}x{self.resolution}, "
                               f"the run expects {resolution}x{resolution}")
        if self.channels != channels:
            raise DatasetError(f"{self.name}: images have {self.channels} channels, the run expects {channels}")
        if conditional and self.labels is None:
            raise DatasetError(f"{self.name}: a class-conditional run needs labels "
                               "(dataset.json with a 'labels' list) and this dataset has none")
        return self


# ------------------------------------------------------------------------- EDM dataset format

def load_edm_dataset(path: Path | str, max_images: Optional[int] = None) -> ImageDataset:
    """A zip or folder as written by EDM's dataset_tool.py: image files (PNG) anywhere inside,
    and optionally dataset.json = {"labels": [[relative/path.png, class], ...]} (null = none)."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if path.is_dir():
        names = sorted(str(p.relative_to(path)).replace("\\", "/") for p in path.rglob("*") if p.is_file())
        read = lambda n: (path / n).read_bytes()  # noqa: E731
        archive = None
    else:
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise DatasetError(f"{path}: neither a folder nor a readable zip ({e})") from e
        names = sorted(archive.namelist())
        read = archive.read
    try:
        image_names = [n for n in names if n.lower().endswith((".png", ".jpg", ".jpeg"))]
        if max_images is not None:
            image_names = image_names[:max_images]
        if not image_names:
            raise DatasetError(f"{path}: no PNG/JPEG images inside")
        arrays = []
        for n in image_names:
            try:
                img = np.asarray(Image.open(io.BytesIO(read(n))))
            except Exception as e:
                raise DatasetError(f"{path}/{n}: unreadable image ({e})") from e
            arrays.append(img[None] if img.ndim == 2 else img.transpose(2, 0, 1))
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise DatasetError(f"{path}: images differ in shape ({sorted(shapes)[:3]} ...)")
        labels = None
        if "dataset.json" in names:
            meta = json.loads(read("dataset.json"))
            if meta.get("labels") is not None:
                table = dict(meta["labels"])
                missing = [n for n in image_names if n not in table]
                if missing:
                    raise DatasetError(f"{path}: dataset.json has no label for {missing[0]} "
                                       f"({len(missing)} images unlabelled)")
                labels = np.array([table[n] for n in image_names], dtype=np.int64)
    finally:
        if archive is not None:
            archive.close()
    images = np.stack(arrays).astype(np.uint8)
    return ImageDataset(path.name, images, labels, int(labels.max()) + 1 if labels is not None else 0)


# ------------------------------------------------------------------------- offline stand-ins

def load_digits_standin() -> ImageDataset:
    """scikit-learn's bundled digits: 1,797 real 8x8 greyscale digits, 10 classes (0..16 -> 0..255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255 / 16)).clip(0, 255).astype(np.uint8)[:, None]
    return ImageDataset("digits 8x8 (scikit-learn; stand-in for ImageNet)", images,
                        d.target.astype(np.int64), 10)


def read_idx(path: Path) -> np.ndarray:
    """The IDX format of (Fashion-)MNIST: magic (0, 0, dtype 0x08 = uint8, ndim), big-endian
    uint32 sizes, then the data. Gzipped files are read transparently."""
    raw = gzip.open(path).read() if str(path).endswith(".gz") else Path(path).read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: expected {int(np.prod(dims))} values for shape {dims}, found {data.size}")
    return data.reshape(dims)


def load_fashion_mnist(root: Path | str = FASHION_MNIST_ROOT, split: str = "train",
                       resolution: int = 32) -> ImageDataset:
    """Debian's Fashion-MNIST (28x28, 10 classes), zero-padded to `resolution` (32 by default,
    so a U-Net can halve it three times). The pad is black, the images' own background."""
    root = Path(root)
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    img_path = root / f"{prefix}-images-idx3-ubyte.gz"
    lab_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    for p in (img_path, lab_path):
        if not p.exists():
            raise DatasetError(f"Fashion-MNIST not found at {p}: install the Debian package "
                               "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass its folder")
    images, labels = read_idx(img_path), read_idx(lab_path)
    if resolution < 28:
        raise DatasetError(f"Fashion-MNIST is 28x28; resolution {resolution} would crop it")
    pad = resolution - 28
    images = np.pad(images, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    return ImageDataset(f"Fashion-MNIST {resolution}x{resolution} (stand-in for ImageNet)",
                        images[:, None], labels.astype(np.int64), 10)
