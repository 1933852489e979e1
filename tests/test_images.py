"""Image datasets: EDM's zip/folder format, the offline stand-ins, and clear errors."""
import gzip
import io
import json
import struct
import zipfile

import numpy as np
import pytest

from bench.data.images import (FASHION_MNIST_ROOT, DatasetError, load_digits_standin, load_edm_dataset,
                               load_fashion_mnist, read_idx)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _edm_files(n=6, res=8, rgb=True, labels=True):
    rng = np.random.default_rng(0)
    files, table = {}, []
    for i in range(n):
        shape = (res, res, 3) if rgb else (res, res)
        name = f"00000/img{i:08d}.png"
        files[name] = _png(rng.integers(0, 256, shape, dtype=np.uint8))
        table.append([name, i % 3])
    if labels:
        files["dataset.json"] = json.dumps({"labels": table}).encode()
    return files


@pytest.mark.parametrize("as_zip", [True, False])
def test_edm_format_zip_and_folder(tmp_path, as_zip):
    files = _edm_files()
    if as_zip:
        path = tmp_path / "ds.zip"
        with zipfile.ZipFile(path, "w") as z:
            for n, b in files.items():
                z.writestr(n, b)
    else:
        path = tmp_path / "ds"
        for n, b in files.items():
            (path / n).parent.mkdir(parents=True, exist_ok=True)
            (path / n).write_bytes(b)
    ds = load_edm_dataset(path).check(resolution=8, channels=3, conditional=True)
    assert ds.images.shape == (6, 3, 8, 8) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2] and ds.num_classes == 3
    f = ds.as_float()
    assert f.min() >= -1 and f.max() <= 1
    from PIL import Image
    first = np.asarray(Image.open(io.BytesIO(files["00000/img00000000.png"]))).transpose(2, 0, 1)
    assert np.array_equal(ds.images[0], first)


def test_edm_format_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_edm_dataset(tmp_path / "missing.zip")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="readable zip"):
        load_edm_dataset(tmp_path / "bad.zip")
    folder = tmp_path / "nolabels"
    for n, b in _edm_files(labels=False).items():
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b)
    ds = load_edm_dataset(folder)
    assert ds.labels is None
    with pytest.raises(DatasetError, match="needs labels"):
        ds.check(8, 3, conditional=True)
    with pytest.raises(DatasetError, match="expects 64x64"):
        ds.check(64, 3, conditional=False)
    with pytest.raises(DatasetError, match="channels"):
        ds.check(8, 1, conditional=False)
    (folder / "00000" / "broken.png").write_bytes(b"xx")
    with pytest.raises(DatasetError, match="unreadable image"):
        load_edm_dataset(folder)


def test_digits_standin_is_named_as_such():
    ds = load_digits_standin().check(8, 1, conditional=True)
    assert len(ds) == 1797 and ds.num_classes == 10 and "stand-in" in ds.name
    assert ds.images.max() == 255


def test_idx_reader_and_fashion_mnist_padding(tmp_path):
    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 28, 28) + imgs.tobytes()
    lab = bytes([0, 0, 8, 1]) + struct.pack(">I", 2) + bytes([7, 3])
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab))
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), imgs)
    ds = load_fashion_mnist(tmp_path, resolution=32)
    assert ds.images.shape == (2, 1, 32, 32) and ds.labels.tolist() == [7, 3]
    assert np.array_equal(ds.images[:, 0, 2:30, 2:30], imgs) and ds.images[:, :, :2].max() == 0
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(DatasetError, match="expected"):
        read_idx(tmp_path / "trunc.gz")
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")


@pytest.mark.skipif(not FASHION_MNIST_ROOT.exists(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    ds = load_fashion_mnist(split="test")
    assert ds.images.shape == (10_000, 1, 32, 32) and sorted(set(ds.labels.tolist())) == list(range(10))
