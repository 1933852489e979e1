"""Reading NVlabs pickles (EDM's network snapshots, StyleGAN's FID Inception) without executing
any code from them.

Such pickles hold `torch_utils.persistence` objects: a normal unpickle calls
`_reconstruct_persistent_obj(meta)`, which exec()s the module source stored in `meta`. Here every
global resolves through an explicit allowlist; the persistent objects, torch.nn containers and
recorded calls become inert records (their source is never run), tensors load through
`torch.load(weights_only=True)`, and anything else is refused by name (`PickleRefused`).
Callers (baselines/edm/checkpoint.py, bench/metrics/detectors.py) add their own globals and turn
`PickleRefused` into their own error.
"""
from __future__ import annotations

import _compat_pickle
import collections
import dataclasses
import io
import pickle
from typing import Any, Callable

import numpy as np
import torch


class PickleRefused(ValueError):
    """The pickle references something off the allowlist, or a record is malformed."""


@dataclasses.dataclass
class PersistentRecord:
    """What `torch_utils.persistence._reconstruct_persistent_obj(meta)` would have rebuilt, as data."""
    class_name: str
    state: dict[str, Any]
    version: Any = None


class ModuleRecord:
    """Stand-in for a plain torch.nn container (e.g. ModuleDict); keeps the pickled __dict__."""
    torch_class = "torch.nn.Module"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:   # pickle BUILD
        if not isinstance(state, dict):
            raise PickleRefused(f"unexpected pickled state for {self.torch_class}: {type(state).__name__}")
        self.state = dict(state)


@dataclasses.dataclass
class CallRecord:
    """An allowlisted call that is recorded, not made (e.g. torch.jit.load(io.BytesIO(...)))."""
    func: str
    args: tuple


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access; nothing else needed)."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    # Replaces torch_utils.persistence._reconstruct_persistent_obj: module_src is never executed.
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise PickleRefused("malformed persistent-object record (expected meta dict with type='class')")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise PickleRefused(f"persistent {meta['class_name']}: state is {type(state).__name__}, not a dict")
    return PersistentRecord(meta["class_name"], dict(state), meta.get("version"))


def _load_storage_from_bytes(b: Any) -> Any:
    # Replaces torch.storage._load_from_bytes, which uses torch.load(weights_only=False).
    if not isinstance(b, (bytes, bytearray)):
        raise PickleRefused("malformed tensor storage record")
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _codecs_encode(obj: Any, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1'); allow nothing else.
    if encoding not in ("latin1", "latin-1") or not isinstance(obj, str):
        raise PickleRefused(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1")


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    # Replaces numpy.core.multiarray.scalar for plain numeric dtypes; returns a Python number
    # (EDM records init gains such as np.sqrt(1/3) in its constructor arguments).
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise PickleRefused("refusing a numpy scalar that is not plain numeric data")
    return np.frombuffer(data, dtype=dtype)[0].item()


def recorded(name: str) -> Callable[..., CallRecord]:
    """An allowlist entry for a call that is recorded with its arguments, not made."""
    return lambda *args: CallRecord(name, args)


def base_globals() -> dict[str, Any]:
    """What every NVlabs pickle needs: persistence records, dnnlib's EasyDict, tensors and dtypes."""
    allowed: dict[str, Any] = {
        "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
        "dnnlib.util.EasyDict": EasyDict, "dnnlib.EasyDict": EasyDict,
        "torch.storage._load_from_bytes": _load_storage_from_bytes,
        "_codecs.encode": _codecs_encode,
        "numpy.core.multiarray.scalar": _numpy_scalar, "numpy._core.multiarray.scalar": _numpy_scalar,
        "numpy.dtype": np.dtype,
        "collections.OrderedDict": collections.OrderedDict,
        "builtins.set": set, "builtins.frozenset": frozenset, "builtins.bytearray": bytearray,
        "torch.device": torch.device, "torch.Size": torch.Size,
    }
    # The tensor rebuild functions torch's own weights_only unpickler allows (those that exist).
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                 "_rebuild_parameter_with_state"):
        if hasattr(torch._utils, name):
            allowed[f"torch._utils.{name}"] = getattr(torch._utils, name)
    for name in dir(torch):   # dtypes, e.g. torch.float32
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[f"torch.{name}"] = getattr(torch, name)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `base_globals()` plus `extra`; torch.nn containers become `ModuleRecord`s.
    `allowlist` names the list in refusals (e.g. "EDM-pickle")."""

    def __init__(self, file: Any, extra: dict[str, Any] | None = None, allowlist: str = "allowlist") -> None:
        super().__init__(file)
        self._allowed = {**base_globals(), **(extra or {})}
        self._allowlist = allowlist
        self._module_records: dict[str, type] = {}   # per load: a pickle cannot alter later loads

    def find_class(self, module: str, name: str) -> Any:
        # Protocol <= 2 pickles use Python 2 names (__builtin__.set); map them like pickle does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = f"{module}.{name}"
        if key in self._allowed:
            return self._allowed[key]
        if module.startswith("torch.nn.modules.") and name.isidentifier() and name[:1].isupper():
            # Plain torch.nn containers (ModuleDict, ...): an inert record, torch's class is not used.
            return self._module_records.setdefault(key, type(name, (ModuleRecord,), {"torch_class": key}))
        raise PickleRefused(f"refusing to load global {key!r}: not on the {self._allowlist} allowlist "
                            "(the file may contain code; nothing was executed)")

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefused(f"refusing persistent id {str(pid)[:80]!r}: NVlabs pickles have none")
