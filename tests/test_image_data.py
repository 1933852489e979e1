"""The image data path: EDM's zip streamed by a Dataset, the seeded infinite order (a pure function
of (seed, step), so resumption reads on exactly), global batches sharded over ranks, the held-out
ImageNet slice, DataLoader workers that change nothing, and clear errors."""
import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest
import torch

from bench import atomic
from bench.data.images import (DatasetError, EDMImages, GlobalBatchSampler, ImageDataset, InfiniteOrder, image_loader,
                               load_digits_standin, load_edm_dataset, write_edm_zip)
from bench.distributed import Shard
from bench.images.pipeline import (IMAGENET64_ENV, IMAGENET64_VAL_ENV, ImageTensors, LoaderConfig, TrainingBatches,
                                   extract_latents, load_preset_dataset, to_model_input, train_stage1)
from bench.images.presets import image_preset
from bench.train import checkpoint_step


def _random_set(n=12, res=8, channels=3, labels=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, channels, res, res), dtype=np.uint8)
    return ImageDataset("random", images, rng.integers(0, 5, n) if labels else None, 5 if labels else 0)


def _pil(data: bytes) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(data)))
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_zip_dataset_reads_what_load_edm_dataset_and_pil_read(tmp_path, channels):
    src = _random_set(channels=channels)
    path = write_edm_zip(tmp_path / "ds.zip", src)
    lazy, eager = EDMImages(path), load_edm_dataset(path)
    assert len(lazy) == len(eager) == 12 and lazy.shape == (channels, 8, 8) and lazy.streamed
    assert np.array_equal(eager.images, src.images) and np.array_equal(eager.labels, src.labels)
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        table = dict(json.loads(z.read("dataset.json"))["labels"])
        for i, n in enumerate(names):               # independently of our reader: PIL on the raw member
            img, label = lazy[i]
            assert img.dtype == np.uint8 and np.array_equal(img, _pil(z.read(n))) and label == table[n]
            assert np.array_equal(img, eager.images[i]) and label == eager.labels[i]
    assert np.array_equal(lazy.labels, eager.labels) and lazy.num_classes == eager.num_classes


def test_deflated_zip_and_folder_read_the_same(tmp_path):
    src = _random_set(labels=False)
    stored = write_edm_zip(tmp_path / "a.zip", src)
    with zipfile.ZipFile(stored) as z, zipfile.ZipFile(tmp_path / "b.zip", "w", zipfile.ZIP_DEFLATED) as out:
        for n in z.namelist():
            out.writestr(n, z.read(n))
            (tmp_path / "folder" / n).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "folder" / n).write_bytes(z.read(n))
    for path in (tmp_path / "b.zip", tmp_path / "folder"):
        ds = EDMImages(path)
        assert ds.labels is None and [ds[i][1] for i in range(len(ds))] == [-1] * 12
        assert np.array_equal(np.stack([ds[i][0] for i in range(len(ds))]), src.images)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_are_the_sampler_rows_whatever_the_workers(tmp_path, workers):
    src = _random_set(n=20)
    ds = EDMImages(write_edm_zip(tmp_path / "ds.zip", src))
    sampler = GlobalBatchSampler(InfiniteOrder(len(ds), seed=3), batch_size=8)
    it = iter(image_loader(ds, batch_sampler=sampler, num_workers=workers))
    for step in range(6):                               # 48 positions: more than two laps of 20
        images, labels = next(it)
        rows = sampler.global_batch(step)
        assert images.dtype == torch.uint8 and images.shape == (8, 3, 8, 8)
        assert np.array_equal(images.numpy(), src.images[rows]) and np.array_equal(labels.numpy(), src.labels[rows])


def test_infinite_order_is_a_pure_function_of_seed_and_position():
    n = 37
    whole = InfiniteOrder(n, seed=5).take(0, 10 * n)
    for lap in range(10):                               # every row once per lap, each lap reshuffled
        assert sorted(whole[lap * n:(lap + 1) * n]) == list(range(n))
    assert not np.array_equal(whole[:n], whole[n:2 * n])
    for start, stop in [(0, 1), (36, 38), (100, 250), (333, 370)]:   # a fresh object, any window
        assert np.array_equal(InfiniteOrder(n, seed=5).take(start, stop), whole[start:stop])
    assert not np.array_equal(InfiniteOrder(n, seed=6).take(0, n), whole[:n])
    assert len(InfiniteOrder(3, seed=0).take(0, 20)) == 20           # batches longer than the dataset


def test_sampler_resumed_at_step_k_reads_what_an_uninterrupted_one_reads():
    order = InfiniteOrder(50, seed=1)
    full = iter(GlobalBatchSampler(order, 16))
    uninterrupted = [next(full) for _ in range(12)]
    resumed = iter(GlobalBatchSampler(InfiniteOrder(50, seed=1), 16, start_step=7))
    assert [next(resumed) for _ in range(5)] == uninterrupted[7:]


def test_rank_slices_concatenate_to_the_one_process_batch():
    one = GlobalBatchSampler(InfiniteOrder(30, seed=2), 12)
    for world in (2, 3, 4):
        ranks = [GlobalBatchSampler(InfiniteOrder(30, seed=2), 12, Shard(r, world)) for r in range(world)]
        for step in range(8):
            parts = [r.local_batch(step) for r in ranks]
            assert all(len(p) == 12 // world for p in parts)
            assert sum(parts, []) == one.local_batch(step)
    with pytest.raises(ValueError, match="not divisible"):
        GlobalBatchSampler(InfiniteOrder(30, seed=2), 12, Shard(0, 5))


@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_two_ranks_and_resumed_equal_one_uninterrupted(workers):
    digits = load_digits_standin().subset(slice(0, 100))
    cfg = LoaderConfig(workers)

    def stream(shard=Shard(), start=0):
        return TrainingBatches(digits, 8, seed=4, shard=shard, device=torch.device("cpu"), label_dim=10,
                               start_step=start, loader=cfg)

    one, r0, r1, late = stream(), stream(Shard(0, 2)), stream(Shard(1, 2)), stream(start=5)
    try:
        for step in range(20):
            y, labels = one.next()
            a, b = r0.next(), r1.next()
            assert torch.equal(torch.cat([a[0], b[0]]), y) and torch.equal(torch.cat([a[1], b[1]]), labels)
            if step >= 5:
                yl, ll = late.next()
                assert torch.equal(yl, y) and torch.equal(ll, labels)
    finally:
        for s in (one, r0, r1, late):
            s.close()
    assert y.dtype == torch.float32 and labels.shape == (8, 10)


def test_float_conversion_is_edms_and_as_before():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    y = to_model_input(x, torch.device("cpu"))
    assert y.dtype == torch.float32 and y.min() == -1 and y.max() == 1
    assert np.array_equal(y.numpy(), ImageDataset("x", x.numpy(), None).as_float())   # bit for bit


def test_checkpoint_step_reads_the_checkpoints_step_only(tmp_path):
    assert checkpoint_step(tmp_path) == 0
    atomic.save_torch(tmp_path / "checkpoint.pt", {"model": {"w": torch.zeros(1000)}, "step": 17})
    assert checkpoint_step(tmp_path) == 17
    (tmp_path / "model.pt").write_bytes(b"x")        # finished: nothing to resume
    assert checkpoint_step(tmp_path) == 0


def _imagenet_like(tmp_path, n, name):
    """A stand-in 'ImageNet-64' zip (64x64 RGB, 1000-class labels) of n images."""
    rng = np.random.default_rng(n)
    data = ImageDataset(name, rng.integers(0, 256, (n, 3, 64, 64), dtype=np.uint8), rng.integers(0, 1000, n), 1000)
    return write_edm_zip(tmp_path / name, data)


def test_held_out_slice_is_never_trained_on(tmp_path, monkeypatch):
    p = image_preset("DisCo-Diff", "paper")
    monkeypatch.setenv(IMAGENET64_ENV, str(_imagenet_like(tmp_path, 60, "imagenet-64x64.zip")))
    monkeypatch.delenv(IMAGENET64_VAL_ENV, raising=False)
    train, test = load_preset_dataset(p, "train"), load_preset_dataset(p, "test")
    assert len(train) == 54 and len(test) == 6                        # a tenth of a small zip
    assert "held out" in train.name and "last 6 images" in test.name and IMAGENET64_VAL_ENV in test.name
    assert set(test.rows) == set(range(54, 60)) and train.streamed
    sampler = GlobalBatchSampler(InfiniteOrder(len(train), seed=0), 16)
    seen = np.concatenate([train.rows[sampler.global_batch(s)] for s in range(40)])   # ~12 laps
    assert set(seen) == set(range(54)) and not set(seen) & set(test.rows)
    assert np.array_equal(ImageTensors.of(test, 1000, torch.device("cpu")).y.numpy(),
                          load_edm_dataset(tmp_path / "imagenet-64x64.zip").as_float()[54:])

    monkeypatch.setenv(IMAGENET64_VAL_ENV, str(_imagenet_like(tmp_path, 7, "imagenet-64x64-val.zip")))
    train, test = load_preset_dataset(p, "train"), load_preset_dataset(p, "test")
    assert len(train) == 60 and len(test) == 7 and "ImageNet validation" in test.name


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="not found"):
        EDMImages(tmp_path / "missing.zip")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="readable zip"):
        EDMImages(tmp_path / "bad.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("dataset.json", json.dumps({"labels": None}))
    with pytest.raises(DatasetError, match="no PNG/JPEG images"):
        EDMImages(tmp_path / "empty.zip")
    ds = EDMImages(write_edm_zip(tmp_path / "ds.zip", _random_set()))
    with pytest.raises(DatasetError, match="the run expects 64x64"):
        ds.check(64, 3, conditional=True)
    with pytest.raises(DatasetError, match="channels"):
        ds.check(8, 1, conditional=True)
    monkeypatch.setenv(IMAGENET64_ENV, str(tmp_path / "ds.zip"))       # 8x8 where ImageNet-64 should be
    with pytest.raises(DatasetError, match="expects 64x64"):
        load_preset_dataset(image_preset("EDM", "paper"))
    extra = ("00000/img99999999.png", write_png(np.zeros((16, 16, 3), np.uint8)))
    with zipfile.ZipFile(tmp_path / "ds.zip") as z, zipfile.ZipFile(tmp_path / "more.zip", "w") as out:
        for n in z.namelist():
            out.writestr(n, z.read(n))
        out.writestr(*extra)
    with pytest.raises(DatasetError, match="no label for 00000/img99999999.png"):
        EDMImages(tmp_path / "more.zip")
    write_edm_zip(tmp_path / "unlabelled.zip", _random_set(labels=False))
    with zipfile.ZipFile(tmp_path / "unlabelled.zip", "a") as z:
        z.writestr(*extra)
    mixed = EDMImages(tmp_path / "unlabelled.zip")       # opening reads only the first image ...
    with pytest.raises(DatasetError, match="differ in shape"):   # ... one of another shape fails where read
        next(iter(image_loader(mixed, batch_size=len(mixed), num_workers=2)))   # raised in a worker
    monkeypatch.setenv("DISCO_BENCH_DATA_WORKERS", "two")
    with pytest.raises(DatasetError, match="whole number"):
        LoaderConfig.for_data(ds)


def write_png(a):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="png")
    return buf.getvalue()


def test_training_from_the_zip_with_workers_equals_training_from_memory(tmp_path):
    """One data path: the smoke preset trained on digits in memory (no workers) and on the same
    digits written as EDM's zip and streamed by two workers gives the same weights."""
    p = image_preset("DisCo-Diff", "smoke")
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, steps=4, batch_size=8, checkpoint_every=2))
    digits = load_preset_dataset(p)
    streamed = EDMImages(write_edm_zip(tmp_path / "digits.zip", digits)).named(digits.name)
    a = train_stage1(p, digits, tmp_path / "a", progress=False, loader=LoaderConfig(0))
    b = train_stage1(p, streamed, tmp_path / "b", progress=False, loader=LoaderConfig(2))
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), k
    codes = extract_latents(a.ema, digits, 0.01, seed=0, batch=512)
    assert torch.equal(codes, extract_latents(a.ema, streamed, 0.01, seed=0, batch=7, loader=LoaderConfig(2)))
