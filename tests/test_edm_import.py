"""EDM pickle / state-dict import (baselines/edm/checkpoint.py and bench.images.edm_import) without executing pickled code.

The fake EDM pickles are written in a subprocess that can import small stand-in modules
`torch_utils/persistence.py` and `dnnlib/util.py` (written here, not EDM's code) mimicking
NVlabs/edm's persistence layout: each network object reduces to
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with
`meta = dict(type='class', version=6, module_src=..., class_name=..., state=obj.__dict__)`.
Here `module_src` writes a marker file when executed, as a real unpickle would do (EDM exec()s it).
The conversion runs in this process, where neither stand-in module is importable.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench.diffusion.preconditioning import EDMPrecond
from bench.images.checkpoints import DenoiserCheckpoint
from bench.images.edm_import import SUPPORTED, EDMImportError, convert, convert_edm_pickle, load_edm_pickle, main
from bench.nets.adm_unet import ADMUNet, ADMUNetConfig
from bench.provenance import config_dict

# Small but EDM-expressible: EDM's DhariwalUNet fixes channels_per_head=64, so attention (at 8x8,
# 64 channels) has one head. ADMUNetConfig.tiny() uses 8 and could not come from an EDM pickle.
CFG = ADMUNetConfig(img_resolution=16, label_dim=10, model_channels=32, channel_mult=(1, 2),
                    num_blocks=1, attn_resolutions=(8,), dropout=0.0)
SIGMA_DATA = 0.45  # not EDM's default 0.5, so the test proves it is read from the pickle
MARKER_ENV = "FAKE_EDM_MARKER"

PERSISTENCE_PY = '''
"""Test stand-in for NVlabs/edm torch_utils/persistence.py (same pickled layout, not its code)."""
MODULE_SRC = "import os\\nopen(os.environ['FAKE_EDM_MARKER'], 'w').write('module_src executed')\\n"

def _reconstruct_persistent_obj(meta):
    exec(meta["module_src"], {})   # what EDM does with the pickled source (via _src_to_module)
    return None

def persistent_class(orig_class):
    class Decorator(orig_class):
        def __reduce__(self):
            fields = list(super().__reduce__()) + [None, None, None]
            meta = dict(type="class", version=6, module_src=MODULE_SRC,
                        class_name=orig_class.__name__, state=fields[2])
            return (_reconstruct_persistent_obj, (meta,), None)
    Decorator.__name__ = orig_class.__name__
    return Decorator
'''

DNNLIB_UTIL_PY = '''
class EasyDict(dict):
    def __getattr__(self, name):
        return self[name]
    def __setattr__(self, name, value):
        self[name] = value
'''

MAKE_PICKLES_PY = '''
import json, os, pickle, sys
import numpy as np
import torch
import dnnlib.util
from torch_utils import persistence
from bench.nets.adm_unet import ADMBlock, ADMUNet, ADMUNetConfig

out, cfg, sigma_data = sys.argv[1], ADMUNetConfig(**json.loads(sys.argv[2])), float(sys.argv[3])
torch.manual_seed(0)
net = ADMUNet(cfg)
with torch.no_grad():
    for p in net.parameters():   # no zero-initialised layers: outputs depend on every weight
        p.normal_(0.0, 0.1)
torch.save(net.state_dict(), os.path.join(out, "reference.pt"))

OURS_TO_EDM = {"ADMUNet": "DhariwalUNet", "ADMBlock": "UNetBlock"}
classes = {}
def edm_class(name, base=torch.nn.Module):
    if name not in classes:
        classes[name] = persistence.persistent_class(type(name, (base,), {}))
    return classes[name]

def mirror(mod, name=None):
    """Our module tree under EDM's class names; ModuleDict stays a plain torch.nn.ModuleDict."""
    if isinstance(mod, torch.nn.ModuleDict):
        new = torch.nn.ModuleDict()
    else:
        new = edm_class(name or OURS_TO_EDM.get(type(mod).__name__, type(mod).__name__))()
        new._init_args, new._init_kwargs = (), {}
    for k, p in mod._parameters.items():
        new._parameters[k] = None if p is None else torch.nn.Parameter(p.detach().clone(), requires_grad=False)
    for k, b in mod._buffers.items():
        new._buffers[k] = None if b is None else b.detach().clone()
    for k, c in mod._modules.items():
        new._modules[k] = None if c is None else mirror(c)
    if isinstance(mod, ADMBlock):   # EDM records numpy float64 init gains (np.sqrt(1/3))
        new.num_heads = mod.num_heads
        new._init_kwargs = dict(in_channels=mod.in_channels, out_channels=mod.out_channels,
                                init=dict(init_mode="kaiming_uniform", init_weight=np.sqrt(1 / 3),
                                          init_bias=np.sqrt(1 / 3)), resample_filter=[1, 1])
    return new

unet_kwargs = dict(img_resolution=cfg.img_resolution, in_channels=cfg.in_channels,
                   out_channels=cfg.out_channels, label_dim=cfg.label_dim,
                   model_channels=cfg.model_channels, channel_mult=list(cfg.channel_mult),
                   num_blocks=cfg.num_blocks, attn_resolutions=list(cfg.attn_resolutions),
                   dropout=cfg.dropout)

def precond(cls_name="EDMPrecond", model_name="DhariwalUNet", record_unet_args=True, use_fp16=False,
            sigma_min=0, sigma_max=float("inf")):
    model = mirror(net, model_name)
    model.label_dropout = 0
    model._init_args, model._init_kwargs = ((), dict(unet_kwargs)) if record_unet_args else (None, None)
    p = edm_class(cls_name)()
    p.img_resolution, p.img_channels, p.label_dim = cfg.img_resolution, cfg.in_channels, cfg.label_dim
    p.use_fp16, p.sigma_min, p.sigma_max, p.sigma_data = use_fp16, sigma_min, sigma_max, sigma_data
    p.model = model
    model_kwargs = {k: v for k, v in unet_kwargs.items()
                    if k not in ("img_resolution", "in_channels", "out_channels", "label_dim")}
    p._init_args = ()
    p._init_kwargs = dict(img_resolution=cfg.img_resolution, img_channels=cfg.in_channels,
                          label_dim=cfg.label_dim, use_fp16=use_fp16, sigma_min=sigma_min, sigma_max=sigma_max,
                          sigma_data=sigma_data,
                          model_type=model_name, **model_kwargs)
    return p

loss_fn = edm_class("EDMLoss", object)()
loss_fn.P_mean, loss_fn.P_std, loss_fn.sigma_data = -1.2, 1.2, sigma_data
loss_fn._init_args, loss_fn._init_kwargs = (), dnnlib.util.EasyDict(P_mean=-1.2, P_std=1.2)

def dump(name, obj):
    with open(os.path.join(out, name), "wb") as f:
        pickle.dump(obj, f)   # as training_loop.py: plain pickle, default protocol

dump("network-snapshot-000100.pkl", dict(
    ema=precond(), loss_fn=loss_fn, augment_pipe=None,
    dataset_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="data.zip",
                        use_labels=True, xflip=False, cache=True, resolution=16, max_size=100)))
dump("ema-only.pkl", dict(ema=precond()))
dump("net-only.pkl", precond())
dump("vp.pkl", dict(ema=precond("VPPrecond")))
dump("songunet.pkl", dict(ema=precond(model_name="SongUNet")))
dump("precond-args-only.pkl", dict(ema=precond(record_unet_args=False)))
# as edm-imagenet-64x64-cond-adm.pkl: the network samples in fp16 on CUDA
dump("fp16.pkl", dict(ema=precond(use_fp16=True, sigma_min=0.002, sigma_max=80.0)))

# Fixture self-check: a plain pickle.load of these files does execute module_src.
os.environ["FAKE_EDM_MARKER"] = os.path.join(out, "plain-pickle-executed")
with open(os.path.join(out, "net-only.pkl"), "rb") as f:
    pickle.load(f)
'''


@pytest.fixture(scope="module")
def fake_edm(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake_edm")
    lib = root / "fakelib"
    (lib / "torch_utils").mkdir(parents=True)
    (lib / "dnnlib").mkdir()
    (lib / "torch_utils" / "__init__.py").write_text("")
    (lib / "torch_utils" / "persistence.py").write_text(PERSISTENCE_PY)
    (lib / "dnnlib" / "__init__.py").write_text("from .util import EasyDict\n")
    (lib / "dnnlib" / "util.py").write_text(DNNLIB_UTIL_PY)
    (root / "make_pickles.py").write_text(MAKE_PICKLES_PY)
    env = dict(os.environ, PYTHONPATH=str(lib), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(root / "make_pickles.py"), str(root),
                        json.dumps(config_dict(CFG)), str(SIGMA_DATA)],
                       cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (root / "plain-pickle-executed").exists()   # the fixture's pickles really carry code
    return root


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    """Where module_src (or an attack payload) would write if anything were executed."""
    path = tmp_path / "executed"
    monkeypatch.setenv(MARKER_ENV, str(path))
    return path


def _reference_state(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "reference.pt", weights_only=True)


def test_stand_in_modules_are_not_importable_here():
    assert importlib.util.find_spec("torch_utils") is None
    assert importlib.util.find_spec("dnnlib") is None


@pytest.mark.parametrize("name", ["network-snapshot-000100.pkl", "ema-only.pkl", "net-only.pkl",
                                  "precond-args-only.pkl"])
def test_convert_pickle_exact_weights_and_config(fake_edm, marker, name):
    ckpt = convert_edm_pickle(fake_edm / name)
    assert not marker.exists()
    assert ckpt.unet == CFG
    assert ckpt.sigma_data == SIGMA_DATA
    assert ckpt.context is None and ckpt.prior is None
    ref = _reference_state(fake_edm)
    assert set(ckpt.denoiser) == {f"net.{k}" for k in ref}
    for k, v in ref.items():
        assert torch.equal(ckpt.denoiser[f"net.{k}"], v), k


def test_converted_denoiser_matches_reference(fake_edm, marker, tmp_path):
    ckpt = convert_edm_pickle(fake_edm / "network-snapshot-000100.pkl")
    ckpt.save(tmp_path / "edm.pt")
    D = DenoiserCheckpoint.load(tmp_path / "edm.pt").build_denoiser()
    ref = EDMPrecond(ADMUNet(CFG), SIGMA_DATA)
    ref.net.load_state_dict(_reference_state(fake_edm))
    ref.eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    sigma = torch.tensor([0.3, 4.0])
    labels = torch.nn.functional.one_hot(torch.tensor([2, 9]), CFG.label_dim).float()
    with torch.no_grad():
        out, want = D(x, sigma, class_labels=labels), ref(x, sigma, class_labels=labels)
    assert torch.equal(out, want)
    assert not marker.exists()


def test_cli_subprocess_without_edm_code(fake_edm, tmp_path):
    out = tmp_path / "ckpt.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", **{MARKER_ENV: str(tmp_path / "executed")})
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from bench.images.edm_import import main; sys.exit(main(sys.argv[1:]))",
                        str(fake_edm / "network-snapshot-000100.pkl"), "--out", str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "16x16x3" in r.stdout and "label_dim=10" in r.stdout and "network-snapshot-000100.pkl" in r.stdout
    assert DenoiserCheckpoint.load(out).unet == CFG
    assert not (tmp_path / "executed").exists()


class _Call:
    """Pickles as fn(arg): what an attacker would put into a .pkl."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval"])
def test_code_in_pickle_is_refused(tmp_path, marker, attack):
    payload = (_Call(os.system, f"touch {marker}") if attack == "os.system"
               else _Call(eval, f"open({str(marker)!r}, 'w').write('x')"))
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ema": {"model": payload}}))
    with pytest.raises(EDMImportError, match="refusing to load global") as e:
        load_edm_pickle(path)
    assert ("system" if attack == "os.system" else "builtins.eval") in str(e.value)
    assert main([str(path), "--out", str(tmp_path / "o.pt")]) == 2
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


def test_persistent_id_is_refused(tmp_path):
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage/0" if obj == "weights" else None

    path = tmp_path / "pid.pkl"
    with open(path, "wb") as f:
        P(f).dump({"ema": "weights"})
    with pytest.raises(EDMImportError, match="persistent id"):
        load_edm_pickle(path)


def _run_main(capsys, *args: str) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("name,expect", [("vp.pkl", "VPPrecond(DhariwalUNet)"),
                                         ("songunet.pkl", "EDMPrecond(SongUNet)")])
def test_unsupported_network_exit_2(fake_edm, tmp_path, capsys, name, expect):
    out = tmp_path / "o.pt"
    rc, err = _run_main(capsys, str(fake_edm / name), "--out", str(out))
    assert rc == 2 and err.startswith("error: ")
    assert expect in err and SUPPORTED in err
    assert not out.exists()


def test_truncated_and_foreign_files_exit_2(fake_edm, tmp_path, capsys):
    data = (fake_edm / "ema-only.pkl").read_bytes()
    (tmp_path / "trunc.pkl").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pkl").write_text("hello, not a pickle\n")
    out = tmp_path / "o.pt"
    rc, err = _run_main(capsys, str(tmp_path / "trunc.pkl"), "--out", str(out))
    assert rc == 2 and "truncated" in err
    rc, err = _run_main(capsys, str(tmp_path / "text.pkl"), "--out", str(out))
    assert rc == 2 and "not a pickle file" in err
    rc, err = _run_main(capsys, str(tmp_path / "missing.pkl"), "--out", str(out))
    assert rc == 2 and "no such file" in err
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    rc, err = _run_main(capsys, str(tmp_path / "list.pkl"), "--out", str(out))
    assert rc == 2 and "no EDM network found" in err
    assert not out.exists()


@pytest.mark.parametrize("keys", ["model.", "", "net."])
def test_plain_state_dict_with_config(fake_edm, tmp_path, capsys, keys):
    ref = _reference_state(fake_edm)
    src = tmp_path / "sd.pt"
    torch.save({keys + k: v for k, v in ref.items()}, src)
    cfg_json = tmp_path / "unet.json"
    cfg_json.write_text(json.dumps(config_dict(CFG)))
    out = tmp_path / "o.pt"
    assert main([str(src), "--out", str(out), "--config", str(cfg_json), "--sigma-data", "0.45"]) == 0
    assert "label_dim=10" in capsys.readouterr().out
    ckpt = DenoiserCheckpoint.load(out)
    assert ckpt.unet == CFG and ckpt.sigma_data == 0.45
    for k, v in ref.items():
        assert torch.equal(ckpt.denoiser[f"net.{k}"], v), k


def test_plain_state_dict_errors(fake_edm, tmp_path, capsys):
    src = tmp_path / "sd.pt"
    torch.save({"model." + k: v for k, v in _reference_state(fake_edm).items()}, src)
    out = tmp_path / "o.pt"
    rc, err = _run_main(capsys, str(src), "--out", str(out))
    assert rc == 2 and "--config" in err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(dict(config_dict(CFG), num_blocks=2)))
    rc, err = _run_main(capsys, str(src), "--out", str(out), "--config", str(wrong))
    assert rc == 2 and "missing non-xattn keys" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"img_resolution": 16, "heads": 4}))
    rc, err = _run_main(capsys, str(src), "--out", str(out), "--config", str(bad))
    assert rc == 2 and "heads" in err
    assert main([str(src), "--out", str(out), "--preset", "cifar10"]) == 2   # argparse choices
    assert not out.exists()


def test_pickle_cross_checks(fake_edm, tmp_path):
    with pytest.raises(EDMImportError, match="disagrees"):
        convert(fake_edm / "ema-only.pkl", sigma_data=0.5)
    with pytest.raises(EDMImportError, match="num_blocks"):
        convert(fake_edm / "ema-only.pkl", unet=ADMUNetConfig(**dict(config_dict(CFG), num_blocks=2)))


def test_an_fp16_pickle_keeps_use_fp16_and_its_sigma_range(fake_edm, marker, tmp_path):
    ckpt = convert_edm_pickle(fake_edm / "fp16.pkl")
    assert (ckpt.use_fp16, ckpt.sigma_min, ckpt.sigma_max) == (True, 0.002, 80.0)
    plain = convert_edm_pickle(fake_edm / "ema-only.pkl")   # EDM's defaults
    assert (plain.use_fp16, plain.sigma_min, plain.sigma_max) == (False, 0.0, float("inf"))
    out = tmp_path / "fp16.pt"
    assert main([str(fake_edm / "fp16.pkl"), "--out", str(out)]) == 0 and not marker.exists()
    back = DenoiserCheckpoint.load(out)
    assert (back.use_fp16, back.sigma_min, back.sigma_max) == (True, 0.002, 80.0)
    D = back.build_denoiser()
    assert (D.use_fp16, D.sigma_min, D.sigma_max) == (True, 0.002, 80.0)
    # on the CPU the network runs in fp32, as EDM's EDMPrecond does off CUDA: same output as without
    x, sigma = torch.randn(2, CFG.in_channels, CFG.img_resolution, CFG.img_resolution), torch.tensor([0.5, 3.0])
    labels = torch.eye(CFG.label_dim)[:2] if CFG.label_dim else None
    fp32 = DenoiserCheckpoint.load(out)
    fp32.use_fp16 = False
    with torch.no_grad():
        assert torch.equal(D(x, sigma, class_labels=labels), fp32.build_denoiser()(x, sigma, class_labels=labels))


def test_a_checkpoint_written_before_fp16_was_kept_loads_with_edms_defaults(fake_edm, tmp_path):
    out = tmp_path / "old.pt"
    convert_edm_pickle(fake_edm / "ema-only.pkl").save(out)
    blob = torch.load(out, weights_only=True)
    for k in ("use_fp16", "sigma_min", "sigma_max"):
        del blob[k]
    torch.save(blob, out)
    old = DenoiserCheckpoint.load(out)
    assert (old.use_fp16, old.sigma_min, old.sigma_max) == (False, 0.0, float("inf"))


@pytest.mark.gpu
def test_fp16_network_on_cuda_is_close_to_fp32(fake_edm):
    ckpt = convert_edm_pickle(fake_edm / "fp16.pkl")
    D16 = ckpt.build_denoiser().cuda()
    ckpt.use_fp16 = False
    D32 = ckpt.build_denoiser().cuda()
    x = torch.randn(4, CFG.in_channels, CFG.img_resolution, CFG.img_resolution, device="cuda")
    sigma = torch.tensor([0.01, 0.5, 3.0, 40.0], device="cuda")
    labels = torch.eye(CFG.label_dim, device="cuda")[:4] if CFG.label_dim else None
    with torch.no_grad():
        a, b = D16(x, sigma, class_labels=labels), D32(x, sigma, class_labels=labels)
    assert a.dtype == torch.float32 and not torch.equal(a, b)
    torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)
