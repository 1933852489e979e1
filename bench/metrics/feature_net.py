"""A Fréchet distance in the feature space of a small CNN classifier trained on the stand-in
dataset itself: a cheap second distance beside FID where Inception-v3 is too slow on a CPU
(~4 images/s here, so ~1k samples per row).

It is not FID and is never reported as one: the metric is `fd_<network>` (e.g. `fd_fmnist_cnn`),
and every row can say which network (its weights' sha256) and how well it classifies held-out
images (its test accuracy), which is what says its features mean something. The construction
is FID's (Heusel et al. 2017: the Fréchet distance of Gaussians fitted to a classifier's
penultimate features) with a classifier of the stand-in's own domain in place of Inception, so
its numbers are comparable only with other fd_<same network, same sha256> numbers.

Network: `len(channels)` stages of [conv3x3 - GroupNorm - SiLU] x 2, each followed by a 2x2
average pool while the map is even-sized; the last map is flattened (at 32x32 and 3 stages a
128 x 4 x 4 map: where a stroke is matters on small, centred images) into a Linear + SiLU layer
whose `feature_dim` activations are the features (the input of the classifier's last linear
layer, as Inception's pool3 is of its logits). GroupNorm (Wu & He 2018) rather than BatchNorm:
it normalises each image alone, so features do not depend on the batch, on running statistics
or on train/eval mode; groups of >= 4 channels (where there are 4), so a group at a 1x1 map
never normalises a single value to zero.
Trained with bench.train.fit (cache, exact resume), cross-entropy, no augmentation.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench import atomic
from bench.data.images import DatasetError, ImageSet, image_loader
from bench.distributed import Shard
from bench.metrics.detectors import weights_sha256
from bench.train import TrainConfig, build_seeded, fit, run_dir_for


@dataclasses.dataclass(frozen=True)
class FeatureNetConfig:
    channels: tuple[int, ...] = (32, 64, 128)   # one stage each: [conv3x3-GroupNorm-SiLU] x 2 + 2x2 avg-pool
    feature_dim: int = 128                      # penultimate width = the features
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


def _groups(c: int) -> int:
    """GroupNorm groups for c channels: at most 32 (ADM/EDM's count), each of >= 4 channels."""
    return max(g for g in range(1, max(1, min(32, c // 4)) + 1) if c % g == 0)


class FeatureNet(nn.Module):
    """Classifier of images in [-1, 1]: [B, C, H, W] -> logits [B, num_classes];
    .features(x) -> [B, feature_dim] (the penultimate activations)."""

    def __init__(self, cfg: FeatureNetConfig, in_channels: int, resolution: int, num_classes: int):
        super().__init__()
        if not cfg.channels or num_classes < 2:
            raise ValueError(f"need >= 1 stage and >= 2 classes, got channels {cfg.channels}, {num_classes} classes")
        self.cfg, self.in_channels, self.resolution = cfg, in_channels, resolution
        layers: list[nn.Module] = []
        cin, side = in_channels, resolution
        for c in cfg.channels:
            for i in range(2):
                layers += [nn.Conv2d(cin if i == 0 else c, c, 3, padding=1), nn.GroupNorm(_groups(c), c), nn.SiLU()]
            cin = c
            if side % 2 == 0:            # 8x8 with 3 stages: 8 -> 4 -> 2 -> 1; an odd map is left whole
                layers.append(nn.AvgPool2d(2))
                side //= 2
        self.stages = nn.Sequential(*layers)
        self.embed = nn.Linear(cin * side * side, cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(x)                               # [B, C_last, side, side]
        return F.silu(self.embed(h.flatten(1)))          # [B, feature_dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))               # [B, num_classes]


@dataclasses.dataclass
class FeatureExtractor:
    name: str               # the network's name: the metric is fd_<name> (e.g. fd_fmnist_cnn)
    net: FeatureNet         # trained, eval mode
    sha256: str             # of the trained weights (sorted names, float32 bytes; detectors.weights_sha256)
    test_accuracy: float    # on the dataset's held-out split: says the features mean something
    dataset: str = ""       # the training set's name (shown by describe)
    train_info: dict = dataclasses.field(default_factory=dict)   # bench.train.fit's return (cached, seconds, ...)
    _net64: Optional[FeatureNet] = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def metric(self) -> str:
        return f"fd_{self.name}"

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]

    @property
    def feature_dim(self) -> int:
        return self.net.cfg.feature_dim

    def describe(self) -> str:
        return (f"{self.name} ({len(self.net.cfg.channels)}-stage CNN classifier trained on {self.dataset or 'unknown data'}, "
                f"test accuracy {self.test_accuracy:.2f}, sha256 {self.short_sha})")

    @torch.no_grad()
    def _run(self, net: FeatureNet, images: Union[np.ndarray, torch.Tensor], batch_size: int,
             logits: bool) -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        shape = (self.net.in_channels, self.net.resolution, self.net.resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != shape or x.dtype != torch.uint8:
            raise ValueError(f"{self.metric}: images must be uint8 [N, {', '.join(map(str, shape))}], "
                             f"got {x.dtype} {tuple(x.shape)}")
        p = next(net.parameters())
        out = [(net if logits else net.features)(x[i:i + batch_size].to(p.device, p.dtype) / 127.5 - 1).cpu()
               for i in range(0, len(x), batch_size)]   # EDM's uint8 -> [-1, 1]
        width = net.head.out_features if logits else self.feature_dim
        return torch.cat(out) if out else torch.zeros(0, width, dtype=p.dtype)

    def features(self, images: Union[np.ndarray, torch.Tensor], batch_size: int = 512) -> np.ndarray:
        """uint8 [N, C, H, W] -> float64 [N, feature_dim]; eval mode, no grad, batch-size invariant.
        Computed in float64 (3x float32's time, still ~15x faster than Inception here): float32
        convolutions round differently with the batch size (3.6e-7 measured at 32x32)."""
        if self._net64 is None:
            self._net64 = copy.deepcopy(self.net).to(torch.float64).eval()
        return self._run(self._net64, images, batch_size, logits=False).numpy()

    def accuracy(self, data: ImageSet, batch_size: int = 512) -> float:
        """Top-1 accuracy on a labelled ImageSet (float32: an argmax needs no more)."""
        images, labels = _arrays(data)
        return float((self._run(self.net.eval(), images, batch_size, logits=True).argmax(1) == labels).double().mean())


def _arrays(data: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row of a labelled ImageSet: uint8 [N, C, H, W], int64 [N] (a stand-in fits in memory)."""
    if data.labels is None:
        raise DatasetError(f"{data.name}: a feature network is a classifier and needs labels")
    batches = list(image_loader(data, batch_size=4096))
    return torch.cat([b[0] for b in batches]).to(torch.uint8), torch.cat([b[1] for b in batches]).long()


def _dataset_key(data: ImageSet) -> dict[str, Any]:
    return {"name": data.name, "size": len(data), "shape": list(data.shape), "num_classes": data.num_classes}


def feature_net_run_dir(train: ImageSet, name: str, cache: Path, cfg: FeatureNetConfig = FeatureNetConfig()) -> Path:
    """cache/feature_nets/<name>-<hash of the network config, the training config and the training
    set's name, size, shape and classes>: another dataset never reuses a network."""
    return run_dir_for(Path(cache) / "feature_nets", name, _model_key(train, cfg), _train_config(cfg))


def _model_key(train: ImageSet, cfg: FeatureNetConfig) -> dict[str, Any]:
    return {"feature_net": cfg, "dataset": _dataset_key(train)}


def _train_config(cfg: FeatureNetConfig) -> TrainConfig:
    return TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                       log_every=max(1, min(50, cfg.steps)))


def train_feature_net(train: ImageSet, test: ImageSet, name: str, cache: Path,
                      cfg: FeatureNetConfig = FeatureNetConfig(), progress: bool = False) -> FeatureExtractor:
    """Train (or load from the cache) a FeatureNet classifier on `train`; its accuracy on `test`
    (held-out rows) is computed once and kept beside the weights."""
    if test.shape != train.shape:
        raise DatasetError(f"{test.name} is {test.shape}, {train.name} is {train.shape}")
    if train.labels is None:
        raise DatasetError(f"{train.name}: a feature network is a classifier and needs labels")
    c, h, w = train.shape
    if h != w:
        raise DatasetError(f"{train.name}: images are {h}x{w}; a feature network expects square images")
    num_classes = max(train.num_classes, int(train.labels.max()) + 1)
    tcfg, key = _train_config(cfg), _model_key(train, cfg)
    net = build_seeded(lambda: FeatureNet(cfg, c, h, num_classes), cfg.seed)
    rows: dict[str, torch.Tensor] = {}   # the training set in memory, read only if fit trains

    def loss_fn(m: nn.Module, gen: torch.Generator, sh: Shard) -> torch.Tensor:
        if not rows:
            rows["x"], rows["y"] = _arrays(train)                                    # uint8 [N, C, H, W], int64 [N]
        idx = sh.take(torch.randint(len(rows["y"]), (tcfg.batch_size,), generator=gen))   # with replacement
        x = rows["x"][idx].to(torch.float32) / 127.5 - 1                             # [b, C, H, W] in [-1, 1]
        return F.cross_entropy(m(x), rows["y"][idx])

    run = feature_net_run_dir(train, name, cache, cfg)
    info = fit(net, loss_fn, tcfg, run, key, desc=f"feature net {name}", progress=progress)
    net.eval()
    out = FeatureExtractor(name, net, weights_sha256(net.state_dict()), float("nan"), train.name, info)
    # The held-out accuracy, kept beside the weights (evaluating 10k images takes a while on a CPU).
    acc_path, test_key = run / "test_accuracy.json", {**_dataset_key(test), "sha256": out.sha256}
    saved = json.loads(acc_path.read_text()) if acc_path.exists() else {}
    if saved.get("test") == test_key:
        out.test_accuracy = float(saved["accuracy"])
    else:
        out.test_accuracy = out.accuracy(test)
        atomic.write_json(acc_path, {"test": test_key, "accuracy": out.test_accuracy})
    return out
