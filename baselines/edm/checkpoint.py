"""EDM's published networks: read NVlabs/edm network pickles (and plain state dicts) into an
`EDMNetwork` (ADM config, sigma_data, EDMPrecond state dict), without executing any code from the
pickle. `python -m bench import-edm` (bench/images/edm_import.py) turns one into a sampling
checkpoint.

What an EDM pickle holds (NVlabs/edm, commit 0a2ff34):
  * training/training_loop.py writes `pickle.dump(dict(ema=..., loss_fn=..., augment_pipe=...,
    dataset_kwargs=dict(...)), f)` (default protocol); generate.py reads `pickle.load(f)['ema']`.
  * Every network class in training/networks.py is `@persistence.persistent_class`. Such an object
    reduces (torch_utils/persistence.py, `Decorator.__reduce__`) to
    `torch_utils.persistence._reconstruct_persistent_obj(meta)` with
    `meta = dict(type='class', version=6, module_src=<source of the whole module>,
    class_name=<e.g. 'EDMPrecond'>, state=<obj.__dict__>)`. A normal unpickle *exec()s module_src*;
    here that function is replaced by bench/safe_pickle.py's `_reconstruct_persistent_obj`, which only records
    `class_name` and `state`. The decorator also stores the constructor arguments in the state as
    `_init_args` (tuple) and `_init_kwargs` (dict), or None when `_record_init_args` is False.
  * `state` is a torch.nn.Module `__dict__`: `_parameters`, `_buffers` (OrderedDicts, values may
    be None), `_non_persistent_buffers_set`, `_modules`, hook dicts, plus plain attributes.
    `DhariwalUNet.enc`/`.dec` are plain `torch.nn.ModuleDict`s (pickled by class reference, NEWOBJ +
    BUILD); they become `ModuleRecord`s here.
  * Tensors reduce to `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` over a storage
    pickled as `torch.storage._load_from_bytes(<legacy torch.save bytes>)`, whose torch version
    calls `torch.load(..., weights_only=False)`; here it is replaced by a `weights_only=True` load
    (checked in this environment: torch 2.13 emits exactly these globals for `pickle.dump`).
  * UNetBlock/Linear init kwargs contain numpy float64 (`np.sqrt(1/3)`), pickled as
    `numpy(._)core.multiarray.scalar(numpy.dtype('f8'), <8 bytes>)`: decoded here from the bytes.
  * `EDMPrecond` attributes: img_resolution, img_channels, label_dim, use_fp16, sigma_min,
    sigma_max, sigma_data; its network is the sub-module `model` (ours: `net`), built as
    `DhariwalUNet(img_resolution, in_channels=img_channels, out_channels=img_channels, label_dim,
    **model_kwargs)`. EDM's DhariwalUNet fixes `channels_per_head=64`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from bench.diffusion.preconditioning import EDMPrecond
from bench.safe_pickle import ModuleRecord, PersistentRecord, PickleRefused, RestrictedUnpickler
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig, EDMStateDictError, load_edm_state_dict

SUPPORTED = "only EDMPrecond + DhariwalUNet (ADM) is supported"
PRESETS = {"imagenet64": ADMUNetConfig.imagenet64}

# NVlabs/edm training/networks.py, DhariwalUNet.__init__: positional order of its arguments.
# Defaults of the optional ones equal ADMUNetConfig's defaults (192, [1,2,3,4], 4, 3, [32,16,8],
# 0.10, 0), so arguments that were not recorded fall back to the same values as in EDM.
DHARIWAL_ARGS = ("img_resolution", "in_channels", "out_channels", "label_dim", "augment_dim",
                 "model_channels", "channel_mult", "channel_mult_emb", "num_blocks",
                 "attn_resolutions", "dropout", "label_dropout")
# EDMPrecond.__init__ positional order; everything else in its kwargs goes to the model.
EDMPRECOND_ARGS = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min",
                   "sigma_max", "sigma_data", "model_type")


class EDMImportError(ValueError):
    """SRC is not a convertible EDM network (wrong format, refused content, unsupported class)."""


@dataclasses.dataclass
class EDMNetwork:
    """An EDM denoiser as data: EDMPrecond(DhariwalUNet) weights in our layout ("net.*")."""
    unet: ADMUNetConfig
    sigma_data: float
    denoiser: dict[str, torch.Tensor]   # state dict of EDMPrecond(ADMUNet(unet))
    source: str                         # the file it came from, with its sha256
    use_fp16: bool = False              # EDMPrecond.use_fp16: the network samples in fp16 on CUDA
    sigma_min: float = 0.0              # EDMPrecond's supported noise range (generate.py clamps to it)
    sigma_max: float = math.inf


# Reading the pickle: bench/safe_pickle.py (allowlisted globals, inert records, nothing executed).

def load_edm_pickle(path: Path) -> Any:
    """Unpickle `path` with bench.safe_pickle's RestrictedUnpickler; every failure becomes an EDMImportError."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, allowlist="EDM-pickle").load()
    except (EDMImportError, PickleRefused) as e:
        raise EDMImportError(f"{path}: {e}") from e
    except OSError:
        raise
    except EOFError as e:
        raise EDMImportError(f"{path}: file is truncated (pickle data ends early): {e}") from e
    except pickle.UnpicklingError as e:
        what = "file is truncated" if "truncated" in str(e) else "not a pickle file"
        raise EDMImportError(f"{path}: {what} ({e}); expected an NVlabs/edm network pickle "
                             "or a torch.save'd state dict") from e
    except Exception as e:   # a whitelisted constructor got arguments it rejects
        raise EDMImportError(f"{path}: malformed EDM pickle ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------------------------------
# From records to an ADMUNetConfig and a state dict.

def _as_dict(x: Any) -> dict[str, Any]:
    return x.state if isinstance(x, (PersistentRecord, ModuleRecord)) else {}


def _collect_state(node: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Walk `_parameters` / `_buffers` / `_modules` like nn.Module.state_dict() does."""
    state = _as_dict(node)
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for kind in ("_parameters", "_buffers"):
        for name, t in (state.get(kind) or {}).items():
            if t is None or (kind == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise EDMImportError(f"{prefix}{name}: expected a tensor, found {type(t).__name__}")
            out[prefix + name] = t.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, (PersistentRecord, ModuleRecord)):
            raise EDMImportError(f"{prefix}{name}: unexpected sub-module {type(child).__name__}")
        _collect_state(child, f"{prefix}{name}.", out)


def _named_args(args: Any, kwargs: Any, names: Sequence[str], who: str) -> dict[str, Any]:
    args, kwargs = tuple(args or ()), dict(kwargs or {})
    if len(args) > len(names):
        raise EDMImportError(f"{who}: {len(args)} positional arguments recorded, at most {len(names)} known")
    out = dict(zip(names, args))
    out.update(kwargs)
    return out


def unet_config_from_records(precond: PersistentRecord, unet: PersistentRecord) -> ADMUNetConfig:
    """ADMUNetConfig from DhariwalUNet's recorded init args (else EDMPrecond's), EDM defaults."""
    if unet.state.get("_init_kwargs") is not None:
        kw = _named_args(unet.state.get("_init_args"), unet.state["_init_kwargs"], DHARIWAL_ARGS, "DhariwalUNet")
    elif precond.state.get("_init_kwargs") is not None:
        kw = _named_args(precond.state.get("_init_args"), precond.state["_init_kwargs"], EDMPRECOND_ARGS, "EDMPrecond")
        ch = kw.pop("img_channels", None)
        for k in ("use_fp16", "sigma_min", "sigma_max", "sigma_data", "model_type"):
            kw.pop(k, None)
        kw.update(in_channels=ch, out_channels=ch)
    else:
        raise EDMImportError("the pickle records no constructor arguments for DhariwalUNet or "
                             "EDMPrecond; convert its state dict with --config instead")
    unknown = sorted(set(kw) - set(DHARIWAL_ARGS))
    if unknown:
        raise EDMImportError(f"DhariwalUNet arguments not supported by ADMUNetConfig: {unknown}")
    missing = [k for k in DHARIWAL_ARGS[:3] if kw.get(k) is None]
    if missing:
        raise EDMImportError(f"DhariwalUNet arguments missing from the pickle: {missing}")
    try:
        return ADMUNetConfig(**kw)   # channels_per_head=64 and xattn_dim=0: EDM's ADM
    except (TypeError, ValueError) as e:
        raise EDMImportError(f"DhariwalUNet arguments do not form a valid ADMUNetConfig: {e}") from e


def _checkpoint(cfg: ADMUNetConfig, sigma_data: float, state: Mapping[str, torch.Tensor], prefix: str,
                source: str, path: Path) -> EDMNetwork:
    model = EDMPrecond(ADMUNet(cfg), sigma_data)
    try:
        load_edm_state_dict(model.net, state, prefix=prefix)
    except EDMStateDictError as e:
        raise EDMImportError(f"{path}: {e}") from e
    return EDMNetwork(unet=cfg, sigma_data=float(sigma_data), denoiser=model.state_dict(), source=source)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_edm_pickle(path: Path, data: Any = None) -> EDMNetwork:
    """EDM network pickle (dict with 'ema', or the network itself) -> EDMNetwork."""
    path = Path(path)
    if data is None:
        data = load_edm_pickle(path)
    net = data.get("ema") if isinstance(data, dict) else data
    if not isinstance(net, PersistentRecord):
        keys = sorted(map(str, data)) if isinstance(data, dict) else None
        raise EDMImportError(f"{path}: no EDM network found (expected a dict with 'ema' or a "
                             f"persistent network object; top level is {type(data).__name__}"
                             + (f" with keys {keys})" if keys is not None else ")"))
    model = (net.state.get("_modules") or {}).get("model")
    model_name = model.class_name if isinstance(model, PersistentRecord) else type(model).__name__
    if net.class_name != "EDMPrecond" or model_name != "DhariwalUNet":
        raise EDMImportError(f"{path}: network is {net.class_name}({model_name}); {SUPPORTED}")
    cfg = unet_config_from_records(net, model)
    st = net.state
    for attr, want in (("img_resolution", cfg.img_resolution), ("img_channels", cfg.in_channels),
                       ("img_channels", cfg.out_channels), ("label_dim", cfg.label_dim)):
        if attr in st and st[attr] != want:
            raise EDMImportError(f"{path}: EDMPrecond.{attr}={st[attr]!r} disagrees with DhariwalUNet ({want!r})")
    if "sigma_data" not in st:
        raise EDMImportError(f"{path}: EDMPrecond has no sigma_data attribute")
    state: dict[str, torch.Tensor] = {}
    _collect_state(net, "", state)
    source = f"EDM pickle {path.name} ['ema'] sha256:{_sha256(path)[:16]}"
    got = _checkpoint(cfg, float(st["sigma_data"]), state, "model.", source, path)
    try:   # EDMPrecond's own attributes, with EDM's defaults where an old pickle lacks them
        return dataclasses.replace(got, use_fp16=bool(st.get("use_fp16", False)),
                                   sigma_min=float(st.get("sigma_min", 0.0)),
                                   sigma_max=float(st.get("sigma_max", math.inf)))
    except (TypeError, ValueError) as e:
        raise EDMImportError(f"{path}: EDMPrecond's use_fp16 / sigma_min / sigma_max are malformed ({e})") from e


def load_unet_config(path: Path) -> ADMUNetConfig:
    """ADMUNetConfig from a JSON object of its fields."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise EDMImportError(f"{path}: cannot read the config JSON ({e})") from e
    fields = {f.name for f in dataclasses.fields(ADMUNetConfig)}
    if not isinstance(d, dict) or set(d) - fields:
        raise EDMImportError(f"{path}: expected a JSON object of ADMUNetConfig fields; unknown: "
                             f"{sorted(set(d) - fields) if isinstance(d, dict) else type(d).__name__}")
    try:
        return ADMUNetConfig(**d)
    except (TypeError, ValueError) as e:
        raise EDMImportError(f"{path}: invalid ADMUNetConfig ({e})") from e


def convert_state_dict(path: Path, unet: ADMUNetConfig, sigma_data: float = 0.5) -> EDMNetwork:
    """torch.save'd state dict (EDMPrecond keys `model.*`, ours `net.*`, or bare DhariwalUNet keys)."""
    path = Path(path)
    if unet.xattn_dim:
        raise EDMImportError("an EDM state dict has no cross-attention weights: use xattn_dim=0")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EDMImportError(f"{path}: not a loadable torch state dict ({e})") from e
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in sd.items()):
        raise EDMImportError(f"{path}: expected a flat {{name: tensor}} state dict, got {type(sd).__name__}")
    prefix = next((p for p in ("model.", "net.") if any(k.startswith(p) for k in sd)), "")
    source = f"state dict {path.name} sha256:{_sha256(path)[:16]}"
    return _checkpoint(unet, sigma_data, sd, prefix, source, path)


def convert(src: Path, unet: Optional[ADMUNetConfig] = None,
            sigma_data: Optional[float] = None) -> EDMNetwork:
    """Dispatch on the file: zip (torch.save) or legacy torch.save -> state dict; else EDM pickle.

    For a pickle, `unet` / `sigma_data` are optional cross-checks; for a state dict `unet` is required.
    """
    src = Path(src)
    if not src.is_file():
        raise EDMImportError(f"{src}: no such file")
    data = None
    if not zipfile.is_zipfile(src):
        data = load_edm_pickle(src)
    # A legacy (non-zip) torch.save file starts with a pickle of torch's magic number.
    if data is None or (type(data) is int and data == torch.serialization.MAGIC_NUMBER):
        if unet is None:
            raise EDMImportError(f"{src}: a plain state dict carries no architecture: pass "
                                 f"--config FILE.json or --preset {'|'.join(PRESETS)}")
        return convert_state_dict(src, unet, 0.5 if sigma_data is None else sigma_data)
    ckpt = convert_edm_pickle(src, data)
    if unet is not None and unet != ckpt.unet:
        diff = {f.name: (getattr(unet, f.name), getattr(ckpt.unet, f.name))
                for f in dataclasses.fields(ADMUNetConfig) if getattr(unet, f.name) != getattr(ckpt.unet, f.name)}
        raise EDMImportError(f"{src}: the given config disagrees with the pickle (given, pickle): {diff}")
    if sigma_data is not None and sigma_data != ckpt.sigma_data:
        raise EDMImportError(f"{src}: --sigma-data {sigma_data} disagrees with the pickle's {ckpt.sigma_data}")
    return ckpt
