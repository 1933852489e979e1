"""Image datasets: EDM's dataset format (zip or folder of PNGs + dataset.json labels), and the
offline stand-ins — scikit-learn's digits (smoke) and Debian's Fashion-MNIST (small) — as
`torch.utils.data` Datasets, and the order training reads them in.

One interface, `ImageSet` (uint8 images [C, H, W] with labels, by row), two kinds:
`ImageDataset` holds its images in memory (the stand-ins, evaluation slices); `EDMImages`
streams them from EDM's zip or folder, one decoded file per read, holding only an index. Both
are read the same way: a DataLoader (`image_loader`) whose batches a `GlobalBatchSampler` picks
from an `InfiniteOrder` -- seeded, every row once per lap, a pure function of (seed, position),
each rank loading its slice of the global batch.

Every loader fails with a `DatasetError` that says what is wrong and where: a missing path, a
wrong resolution or channel count, labels missing for a class-conditional run, an unreadable
file. Stand-ins carry their own name, so results never present them as the paper's dataset.
"""
from __future__ import annotations

import copy
import dataclasses
import gzip
import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from bench.distributed import Shard

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")   # Debian: dataset-fashion-mnist


class DatasetError(ValueError):
    pass


class ImageSet(torch.utils.data.Dataset):
    """What the image pipeline reads, in memory or streamed: len(s); s[i] -> (uint8 image
    [C, H, W], class label or -1 when unlabelled); name (shown in results; stand-ins say so);
    labels (int64 [len(s)] or None); num_classes; shape (C, H, W)."""
    name: str
    num_classes: int
    streamed = False   # True: images are read from storage on demand, never held whole

    @property
    def shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    @property
    def resolution(self) -> int:
        return self.shape[-1]

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def image_bytes(self) -> int:
        c, h, w = self.shape
        return c * h * w

    def check(self, resolution: int, channels: int, conditional: bool) -> "ImageSet":
        c, h, w = self.shape
        if w != resolution or h != resolution:
            raise DatasetError(f"{self.name}: images are {h}x{w}, the run expects {resolution}x{resolution}")
        if c != channels:
            raise DatasetError(f"{self.name}: images have {c} channels, the run expects {channels}")
        if conditional and self.labels is None:
            raise DatasetError(f"{self.name}: a class-conditional run needs labels "
                               "(dataset.json with a 'labels' list) and this dataset has none")
        return self


@dataclasses.dataclass(eq=False)
class ImageDataset(ImageSet):
    """Images held in memory (the stand-ins; evaluation slices)."""
    name: str                       # shown in results; stand-ins say so
    images: np.ndarray              # uint8 [N, C, H, W]
    labels: Optional[np.ndarray]    # int64 [N], or None when unlabelled
    num_classes: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], -1 if self.labels is None else int(self.labels[i])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, rows: slice) -> "ImageDataset":
        """The same dataset restricted to `rows` (e.g. a held-out slice)."""
        return dataclasses.replace(self, images=self.images[rows],
                                   labels=None if self.labels is None else self.labels[rows])

    def named(self, name: str) -> "ImageDataset":
        return dataclasses.replace(self, name=name)

    def as_float(self) -> np.ndarray:
        """[-1, 1] float32, EDM's convention (x / 127.5 - 1)."""
        return self.images.astype(np.float32) / 127.5 - 1


# ------------------------------------------------------------------------- EDM dataset format

def _is_image(name: str) -> bool:
    return name.lower().endswith((".png", ".jpg", ".jpeg"))


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        img = np.asarray(Image.open(io.BytesIO(data)))
    except Exception as e:
        raise DatasetError(f"{where}: unreadable image ({e})") from e
    return np.ascontiguousarray(img[None] if img.ndim == 2 else img.transpose(2, 0, 1))   # HWC -> CHW


def _labels_from_json(meta: Optional[bytes], names: list[str], where: Path) -> Optional[np.ndarray]:
    """dataset.json = {"labels": [[relative/path.png, class], ...]} (null: unlabelled)."""
    if meta is None:
        return None
    try:
        table = json.loads(meta).get("labels")
    except (ValueError, AttributeError) as e:
        raise DatasetError(f"{where}/dataset.json: not a JSON object with a 'labels' list ({e})") from e
    if table is None:
        return None
    table = dict(table)
    missing = [n for n in names if n not in table]
    if missing:
        raise DatasetError(f"{where}: dataset.json has no label for {missing[0]} ({len(missing)} images unlabelled)")
    return np.array([table[n] for n in names], dtype=np.int64)


class EDMImages(ImageSet):
    """EDM's dataset format, streamed (after EDM training/dataset.py ImageFolderDataset): a zip or
    folder as dataset_tool.py writes it -- image files (PNG) anywhere inside, sorted by path, the
    first fixing the shape -- and optionally dataset.json labels. Opening reads only the index.

    A zip's central directory is read once, with zipfile, into a compact numpy index (names,
    member offsets, sizes, compression); every process (DataLoader workers included) then reads
    members through its own file handle with os.pread, so a worker neither rebuilds zipfile's
    per-member objects (~120 B each, 1.28 M for ImageNet) nor shares a file position with
    another process. Numpy arrays rather than Python lists, so forked workers share them
    copy-on-write without touching reference counts."""
    streamed = True

    def __init__(self, path: Path | str):
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"dataset not found: {path}")
        self.path, self.name, self._zip = path, path.name, not path.is_dir()
        if self._zip:
            try:
                with zipfile.ZipFile(path) as z:
                    infos = {i.filename: i for i in z.infolist() if not i.is_dir()}
                    meta = z.read("dataset.json") if "dataset.json" in infos else None
            except (zipfile.BadZipFile, OSError) as e:
                raise DatasetError(f"{path}: neither a folder nor a readable zip ({e})") from e
            names = sorted(n for n in infos if _is_image(n))
            members = [infos[n] for n in names]
            bad = [i.filename for i in members if i.flag_bits & 1 or i.compress_type not in (zipfile.ZIP_STORED,
                                                                                               zipfile.ZIP_DEFLATED)]
            if bad:
                raise DatasetError(f"{path}: {bad[0]} is encrypted or compressed other than stored/deflate "
                                   f"({len(bad)} such members); rewrite the zip with dataset_tool.py")
            self._offset = np.array([i.header_offset for i in members], dtype=np.int64)
            self._size = np.array([i.compress_size for i in members], dtype=np.int64)
            self._deflated = np.array([i.compress_type == zipfile.ZIP_DEFLATED for i in members], dtype=bool)
            del infos, members
        else:
            names = sorted(str(p.relative_to(path)).replace("\\", "/") for p in path.rglob("*")
                           if p.is_file() and _is_image(p.name))
            meta = (path / "dataset.json").read_bytes() if (path / "dataset.json").is_file() else None
        if not names:
            raise DatasetError(f"{path}: no PNG/JPEG images inside")
        self._all_labels = _labels_from_json(meta, names, path)
        self.num_classes = int(self._all_labels.max()) + 1 if self._all_labels is not None else 0
        self._names = np.array([n.encode() for n in names])        # fixed-width bytes
        self.rows = np.arange(len(names), dtype=np.int64)          # this set's members (a subset: fewer)
        self._fh, self._fh_pid = None, None
        self._shape = None
        self._shape = self._image(0).shape

    # -- reading
    def _file(self) -> int:
        if self._fh is None or self._fh_pid != os.getpid():   # one handle per process
            self._fh, self._fh_pid = open(self.path, "rb"), os.getpid()
        return self._fh.fileno()

    def _bytes(self, raw: int) -> bytes:
        name = self._names[raw].decode()
        if not self._zip:
            return (self.path / name).read_bytes()
        fd, offset, size = self._file(), int(self._offset[raw]), int(self._size[raw])
        head = os.pread(fd, 30, offset)                   # the member's local header (APPNOTE 4.3.7)
        if len(head) != 30 or head[:4] != b"PK\x03\x04":
            raise DatasetError(f"{self.path}/{name}: corrupt zip (no local header at {offset})")
        n_name, n_extra = struct.unpack("<HH", head[26:30])
        data = os.pread(fd, size, offset + 30 + n_name + n_extra)
        if len(data) != size:
            raise DatasetError(f"{self.path}/{name}: truncated zip ({len(data)} of {size} bytes)")
        return zlib.decompress(data, -15) if self._deflated[raw] else data

    def _image(self, raw: int) -> np.ndarray:
        where = f"{self.path}/{self._names[raw].decode()}"
        img = _decode(self._bytes(raw), where)
        if self._shape is not None and img.shape != self._shape:
            raise DatasetError(f"{where}: images differ in shape ({img.shape} here, {self._shape} for the first)")
        return img

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        raw = int(self.rows[i])
        return self._image(raw), -1 if self._all_labels is None else int(self._all_labels[raw])

    # -- the ImageSet interface
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self._shape)

    @property
    def labels(self) -> Optional[np.ndarray]:
        return None if self._all_labels is None else self._all_labels[self.rows]

    @property
    def index_bytes(self) -> int:
        """Memory of the index (names, offsets, labels, rows) each process holds."""
        arrays = [self._names, self.rows] + ([self._offset, self._size, self._deflated] if self._zip else [])
        return sum(a.nbytes for a in arrays) + (self._all_labels.nbytes if self._all_labels is not None else 0)

    def subset(self, rows: slice) -> "EDMImages":
        """The same files restricted to `rows` of this set (e.g. a held-out slice)."""
        out = copy.copy(self)
        out.rows, out._fh, out._fh_pid = self.rows[rows], None, None
        return out

    def named(self, name: str) -> "EDMImages":
        out = copy.copy(self)
        out.name = name
        return out

    def load(self) -> ImageDataset:
        """Every image of this set in memory."""
        images = np.stack([self._image(int(r)) for r in self.rows]).astype(np.uint8)
        return ImageDataset(self.name, images, self.labels, self.num_classes)

    def __getstate__(self) -> dict:   # (spawned workers) an open file does not travel
        return dict(self.__dict__, _fh=None, _fh_pid=None)


def load_edm_dataset(path: Path | str, max_images: Optional[int] = None) -> ImageDataset:
    """A zip or folder as written by EDM's dataset_tool.py, read whole into memory: image files
    (PNG) anywhere inside, and optionally dataset.json = {"labels": [[relative/path.png, class],
    ...]} (null = none). For a dataset of any size, stream it instead (`EDMImages`)."""
    return EDMImages(path).subset(slice(0, max_images)).load()


def write_edm_zip(path: Path | str, data: ImageDataset) -> Path:
    """`data` as EDM's dataset_tool.py writes a dataset: an uncompressed zip of PNGs (compress_level
    0) named 00000/img00000000.png ..., then dataset.json with [[name, label], ...] (or null)."""
    from PIL import Image

    path = Path(path)
    names = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for i, img in enumerate(data.images):
            idx = f"{i:08d}"
            names.append(f"{idx[:5]}/img{idx}.png")
            buf = io.BytesIO()
            Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(
                buf, format="png", compress_level=0, optimize=False)
            z.writestr(names[-1], buf.getvalue())
        labels = None if data.labels is None else [[n, int(c)] for n, c in zip(names, data.labels)]
        z.writestr("dataset.json", json.dumps({"labels": labels}))
    return path


# ------------------------------------------------------------------------- reading order

class InfiniteOrder:
    """An endless shuffled order of the rows 0..n-1, in laps: lap e (positions e*n .. e*n + n - 1)
    is the permutation drawn from (seed, e), so the row at any position is a pure function of
    (seed, position) -- a run resumed at step k reads what an uninterrupted one would, with
    nothing replayed. Every row once per lap.

    After EDM's InfiniteSampler (torch_utils/misc.py: a seeded permutation, then a random swap
    within a window behind each position read). That sampler's order at position p depends on
    all p swaps before it -- resuming at step k would replay k x batch swaps (5e8 at paper scale),
    and EDM itself restarts it from position 0 on resume -- so ours reshuffles whole laps instead."""

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise DatasetError("an empty dataset has no order to draw from")
        self.n, self.seed = int(n), int(seed)
        self._laps: dict[int, np.ndarray] = {}

    def lap(self, e: int) -> np.ndarray:
        if e not in self._laps:
            if len(self._laps) >= 2:   # the two latest laps: all a batch spans unless n < batch
                self._laps.pop(min(self._laps))
            self._laps[e] = np.random.default_rng([self.seed, e]).permutation(self.n)
        return self._laps[e]

    def take(self, start: int, stop: int) -> np.ndarray:
        """Rows at positions start .. stop - 1."""
        out = []
        while start < stop:
            e, i = divmod(start, self.n)
            j = min(self.n, i + stop - start)
            out.append(self.lap(e)[i:j])
            start += j - i
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class GlobalBatchSampler(torch.utils.data.Sampler):
    """A DataLoader batch sampler: for step s = start_step, start_step + 1, ... the global batch
    is the next `batch_size` positions of `order` (positions s*B .. s*B + B - 1), and this rank
    loads only its contiguous slice of it (`Shard.take`, the slice every other draw of the step
    takes), so N processes together load exactly the batch one process would."""

    def __init__(self, order: InfiniteOrder, batch_size: int, shard: Shard = Shard(), start_step: int = 0):
        if batch_size % shard.world:
            raise ValueError(f"global batch {batch_size} is not divisible by {shard.world} processes")
        self.order, self.batch_size, self.shard, self.start_step = order, batch_size, shard, start_step

    def global_batch(self, step: int) -> np.ndarray:
        return self.order.take(step * self.batch_size, (step + 1) * self.batch_size)

    def local_batch(self, step: int) -> list[int]:
        return self.shard.take(torch.from_numpy(self.global_batch(step))).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.local_batch(step)
            step += 1


def image_loader(data: ImageSet, *, batch_sampler: Optional[torch.utils.data.Sampler] = None,
                 batch_size: Optional[int] = None, num_workers: int = 0, prefetch_factor: int = 2,
                 pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over `data` yielding (uint8 images [b, C, H, W], labels int64 [b]): the rows of
    `batch_sampler`, or every row in order in batches of `batch_size`. num_workers = 0 reads in
    this process; otherwise each of the workers keeps up to prefetch_factor batches ready."""
    kw = dict(num_workers=num_workers, pin_memory=pin_memory)
    if num_workers > 0:
        kw["prefetch_factor"] = prefetch_factor
    if batch_sampler is not None:
        return torch.utils.data.DataLoader(data, batch_sampler=batch_sampler, **kw)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, **kw)


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
