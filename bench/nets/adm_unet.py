"""ADM U-Net as in EDM (Karras et al. 2022), with optional cross-attention for DisCo-Diff.

Source of every fact here: NVlabs/edm `training/networks.py` (commit 0a2ff34), classes
`DhariwalUNet`, `UNetBlock`, `Linear`, `Conv2d`, `GroupNorm`, `PositionalEmbedding`,
`AttentionOp` and `weight_init`. Parameter/buffer names and shapes are identical to EDM's, so
an EDM state dict (the `model.` sub-module of `EDMPrecond`) loads with `strict=True`.

DisCo-Diff addition: when `ADMUNetConfig.xattn_dim > 0`, every block that has self-attention
gets a cross-attention layer right after it (modules `xattn_norm`, `xattn_q`, `xattn_kv`,
`xattn_proj`). Queries come from the feature map, keys/values from `latent_tokens` [B, L, C_ctx].
`xattn_proj` is zero-initialised, so a fresh model computes exactly EDM's function.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional

import torch
from torch import nn
from torch.nn.functional import silu

XATTN_PREFIX = "xattn_"


@dataclasses.dataclass(frozen=True)
class ADMUNetConfig:
    img_resolution: int                        # H = W of input and output
    in_channels: int = 3                       # channels of x
    out_channels: int = 3                      # channels of the output (EDM: img_channels)
    label_dim: int = 0                         # number of classes, 0 = unconditional
    augment_dim: int = 0                       # augmentation-label dim, 0 = no augmentation
    model_channels: int = 192                  # base channel multiplier (EDM default)
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)  # per-resolution channel multipliers
    channel_mult_emb: int = 4                  # embedding dim = model_channels * this
    num_blocks: int = 3                        # residual blocks per resolution (encoder)
    attn_resolutions: tuple[int, ...] = (32, 16, 8)  # resolutions with self-attention
    dropout: float = 0.10                      # dropout before each block's conv1
    label_dropout: float = 0.0                 # class-label dropout (classifier-free guidance)
    channels_per_head: int = 64                # EDM hard-codes 64 for ADM: heads = C // 64
    xattn_dim: int = 0                         # C_ctx of latent_tokens; 0 disables cross-attn

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples (frozen + hashable).
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        if not self.channel_mult:
            raise ValueError("channel_mult must be non-empty")
        if self.img_resolution % (1 << (len(self.channel_mult) - 1)):
            raise ValueError("img_resolution must be divisible by 2**(len(channel_mult)-1)")
        if self.channels_per_head < 1:
            raise ValueError("channels_per_head must be >= 1")

    @property
    def emb_channels(self) -> int:
        return self.model_channels * self.channel_mult_emb

    @classmethod
    def imagenet64(cls, xattn_dim: int = 0) -> "ADMUNetConfig":
        """EDM's ImageNet-64 ADM (class-conditional), the backbone DisCo-Diff builds on."""
        return cls(img_resolution=64, label_dim=1000, xattn_dim=xattn_dim)

    @classmethod
    def tiny(cls, xattn_dim: int = 0) -> "ADMUNetConfig":
        """CPU-sized config for tests and smoke runs (attention active through channels_per_head=8)."""
        return cls(img_resolution=16, label_dim=10, model_channels=16, channel_mult=(1, 2),
                   num_blocks=1, attn_resolutions=(8,), channels_per_head=8, dropout=0.0,
                   xattn_dim=xattn_dim)


# ---------------------------------------------------------------------------------------------
# Weight initialisation. EDM's ADM uses weight_init('kaiming_uniform') * sqrt(1/3) for weights
# and biases: sqrt(3/fan_in) * U(-1, 1) * sqrt(1/3) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
# "init_zero" layers are all zeros. map_label: kaiming_normal * sqrt(label_dim) = N(0, 1).

def _uniform_fan_in_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        return t.uniform_(-bound, bound)


class Linear(nn.Module):
    """y = x W^T + b, W [out, in]. Same names as EDM's `Linear` (weight, bias)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, zero: bool = False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        if not zero:
            _uniform_fan_in_(self.weight, in_features)
            if self.bias is not None:
                _uniform_fan_in_(self.bias, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [..., in] -> [..., out]
        y = x @ self.weight.to(x.dtype).t()
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y


class Conv2d(nn.Module):
    """EDM's `Conv2d` with optional 2x up/down resampling by the [1,1] box filter.

    kernel=0 means no weight/bias (pure resampling, used by same-width up/down skips).
    The buffer `resample_filter` [1, 1, 2, 2] exists (and is saved) only when up or down, as in EDM.
    Order (EDM, non-fused path): resample first, then the kxk convolution, then the bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True,
                 up: bool = False, down: bool = False, zero: bool = False):
        if up and down:
            raise ValueError("up and down are exclusive")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, kernel, kernel)) if kernel else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel and bias else None
        if kernel and not zero:
            fan_in = in_channels * kernel * kernel
            _uniform_fan_in_(self.weight, fan_in)
            if self.bias is not None:
                _uniform_fan_in_(self.bias, fan_in)
        # EDM: f = outer([1,1], [1,1]) / sum([1,1])^2 -> 0.25 everywhere, shape [1, 1, 2, 2].
        filt = torch.full((1, 1, 2, 2), 0.25) if (up or down) else None
        self.register_buffer("resample_filter", filt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [B, Cin, H, W] -> [B, Cout, H', W'] with H' = 2H (up), H/2 (down) or H.
        if self.resample_filter is not None:
            f = self.resample_filter.to(x.dtype)
            c = x.shape[1]
            if self.up:   # EDM: conv_transpose2d with 4*f per channel, stride 2 (nearest upsample)
                x = torch.nn.functional.conv_transpose2d(x, (f * 4).tile([c, 1, 1, 1]), groups=c, stride=2)
            else:         # EDM: depthwise conv with f, stride 2 (2x2 average pool)
                x = torch.nn.functional.conv2d(x, f.tile([c, 1, 1, 1]), groups=c, stride=2)
        if self.weight is not None:
            w = self.weight.to(x.dtype)
            x = torch.nn.functional.conv2d(x, w, padding=w.shape[-1] // 2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """EDM's `GroupNorm`: groups = min(32, C // 4), affine weight=1 / bias=0 at init."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4,
                 eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        if self.num_groups < 1:
            raise ValueError(f"GroupNorm needs >= {min_channels_per_group} channels, got {num_channels}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.group_norm(x, self.num_groups, self.weight.to(x.dtype),
                                              self.bias.to(x.dtype), self.eps)


class PositionalEmbedding(nn.Module):
    """EDM's `PositionalEmbedding` (endpoint=False, max_positions=1e4), no parameters.

    t [B] -> [B, C] = cat(cos(t * w), sin(t * w)), w_i = (1/1e4) ** (i / (C/2)), i < C/2.
    """

    def __init__(self, num_channels: int, max_positions: int = 10000):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=t.device) / half
        freqs = (1.0 / self.max_positions) ** freqs
        a = torch.outer(t, freqs.to(t.dtype))                     # [B, C/2]
        return torch.cat([a.cos(), a.sin()], dim=1)                # [B, C]


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """EDM's AttentionOp + value mix. q [N, c, Q], k [N, c, K], v [N, c, K] -> [N, c, Q].

    Weights softmax_k(q . k / sqrt(c)) computed in float32 (EDM does the same), cast back.
    """
    k = k / math.sqrt(k.shape[1])
    w = torch.einsum("ncq,nck->nqk", q.float(), k.float()).softmax(dim=2).to(q.dtype)
    return torch.einsum("nqk,nck->ncq", w, v)


class ADMBlock(nn.Module):
    """EDM's `UNetBlock` as configured by `DhariwalUNet` (adaptive scale, skip_scale=1, eps=1e-5,
    resample_proj=False), plus optional DisCo-Diff cross-attention after self-attention."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *, up: bool = False,
                 down: bool = False, attention: bool = False, channels_per_head: int = 64,
                 dropout: float = 0.0, xattn_dim: int = 0):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        # EDM: num_heads = out_channels // channels_per_head when attention else 0 (may be 0!).
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout = dropout

        self.norm0 = GroupNorm(in_channels)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down)
        self.affine = Linear(emb_channels, 2 * out_channels)          # -> (scale, shift)
        self.norm1 = GroupNorm(out_channels)
        self.conv1 = Conv2d(out_channels, out_channels, 3, zero=True)

        self.skip: Optional[Conv2d] = None
        if out_channels != in_channels or up or down:
            # EDM: 1x1 projection iff the width changes, else a weightless resample (kernel 0).
            kernel = 1 if out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, up=up, down=down)

        if self.num_heads:
            self.norm2 = GroupNorm(out_channels)
            self.qkv = Conv2d(out_channels, 3 * out_channels, 1)
            self.proj = Conv2d(out_channels, out_channels, 1, zero=True)

        self.has_xattn = bool(self.num_heads and xattn_dim)
        if self.has_xattn:
            self.xattn_norm = GroupNorm(out_channels)
            self.xattn_q = Conv2d(out_channels, out_channels, 1)
            self.xattn_kv = Linear(xattn_dim, 2 * out_channels)
            self.xattn_proj = Conv2d(out_channels, out_channels, 1, zero=True)  # starts at EDM

    def forward(self, x: torch.Tensor, emb: torch.Tensor,
                latent_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        # x [B, Cin, H, W], emb [B, E], latent_tokens [B, L, C_ctx] or None -> [B, Cout, H', W']
        orig = x
        x = self.conv0(silu(self.norm0(x)))
        # EDM adaptive scale: h = silu(shift + norm1(x) * (scale + 1)), params [B, 2C, 1, 1].
        params = self.affine(emb).unsqueeze(2).unsqueeze(3).to(x.dtype)
        scale, shift = params.chunk(2, dim=1)
        x = silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        x = self.conv1(torch.nn.functional.dropout(x, p=self.dropout, training=self.training))
        x = x + (self.skip(orig) if self.skip is not None else orig)   # skip_scale = 1 for ADM

        if self.num_heads:
            b, c, h, w = x.shape
            heads = self.num_heads
            # EDM channel layout of qkv: [heads, c/heads, 3] -> q, k, v each [B*heads, c/heads, HW].
            q, k, v = self.qkv(self.norm2(x)).reshape(b * heads, c // heads, 3, h * w).unbind(2)
            a = _attention(q, k, v)                                       # [B*heads, c/heads, HW]
            x = self.proj(a.reshape(b, c, h, w)) + x

            if self.has_xattn and latent_tokens is not None:
                # DisCo-Diff cross-attention: queries from features, keys/values from the latents.
                n_tok = latent_tokens.shape[1]
                q = self.xattn_q(self.xattn_norm(x)).reshape(b * heads, c // heads, h * w)
                kv = self.xattn_kv(latent_tokens.to(x.dtype))            # [B, L, 2c]
                kv = kv.reshape(b, n_tok, 2, heads, c // heads).permute(2, 0, 3, 4, 1)
                k, v = kv.reshape(2, b * heads, c // heads, n_tok).unbind(0)  # [B*heads, c/heads, L]
                a = _attention(q, k, v)                                   # [B*heads, c/heads, HW]
                x = self.xattn_proj(a.reshape(b, c, h, w)) + x
        return x


class ADMUNet(nn.Module):
    """EDM's `DhariwalUNet` (same state-dict keys) with optional latent cross-attention."""

    def __init__(self, cfg: ADMUNetConfig):
        super().__init__()
        self.cfg = cfg
        mc, emb_ch = cfg.model_channels, cfg.emb_channels
        block_kw = dict(emb_channels=emb_ch, channels_per_head=cfg.channels_per_head,
                        dropout=cfg.dropout, xattn_dim=cfg.xattn_dim)

        # Mapping network (EDM DhariwalUNet.__init__, "Mapping").
        self.map_noise = PositionalEmbedding(mc)
        self.map_augment = Linear(cfg.augment_dim, mc, bias=False, zero=True) if cfg.augment_dim else None
        self.map_layer0 = Linear(mc, emb_ch)
        self.map_layer1 = Linear(emb_ch, emb_ch)
        self.map_label: Optional[Linear] = None
        if cfg.label_dim:
            self.map_label = Linear(cfg.label_dim, emb_ch, bias=False, zero=True)
            with torch.no_grad():  # EDM: kaiming_normal * sqrt(label_dim) -> N(0, 1)
                self.map_label.weight.normal_()

        # Encoder: level 0 starts with a 3x3 conv, later levels with a down block.
        self.enc = nn.ModuleDict()
        cout = cfg.in_channels
        for level, mult in enumerate(cfg.channel_mult):
            res = cfg.img_resolution >> level
            if level == 0:
                cin, cout = cout, mc * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = ADMBlock(cout, cout, down=True, **block_kw)
            for idx in range(cfg.num_blocks):
                cin, cout = cout, mc * mult
                self.enc[f"{res}x{res}_block{idx}"] = ADMBlock(
                    cin, cout, attention=res in cfg.attn_resolutions, **block_kw)
        skips = [m.out_channels for m in self.enc.values()]

        # Decoder: bottleneck (in0 with attention, in1) at the lowest level, up blocks elsewhere;
        # num_blocks + 1 blocks per level, each eating one encoder skip.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            res = cfg.img_resolution >> level
            if level == len(cfg.channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = ADMBlock(cout, cout, attention=True, **block_kw)
                self.dec[f"{res}x{res}_in1"] = ADMBlock(cout, cout, **block_kw)
            else:
                self.dec[f"{res}x{res}_up"] = ADMBlock(cout, cout, up=True, **block_kw)
            for idx in range(cfg.num_blocks + 1):
                cin, cout = cout + skips.pop(), mc * mult
                self.dec[f"{res}x{res}_block{idx}"] = ADMBlock(
                    cin, cout, attention=res in cfg.attn_resolutions, **block_kw)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, cfg.out_channels, 3, zero=True)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: Optional[torch.Tensor] = None, augment_labels: Optional[torch.Tensor] = None,
                latent_tokens: Optional[torch.Tensor | Mapping[int, torch.Tensor]] = None) -> torch.Tensor:
        # x [B, Cin, R, R], noise_labels [B], class_labels [B, label_dim] (one-hot) or None,
        # augment_labels [B, augment_dim] or None -> [B, Cout, R, R].
        # latent_tokens: [B, L, xattn_dim] for every cross-attention layer, or (group-hierarchical
        # DisCo-Diff, Fig. 5) {resolution: [B, L_g, xattn_dim]} for the decoder's layers at that
        # resolution only; other cross-attention layers are then skipped.
        if latent_tokens is not None and self.cfg.xattn_dim:
            for t in (latent_tokens.values() if isinstance(latent_tokens, Mapping) else [latent_tokens]):
                if t.ndim != 3 or t.shape[-1] != self.cfg.xattn_dim:
                    raise ValueError(f"latent_tokens must be [B, L, {self.cfg.xattn_dim}], got {tuple(t.shape)}")
        if not self.cfg.xattn_dim:
            latent_tokens = None  # no cross-attention layers: exactly EDM

        # Mapping (EDM order): posemb (+ augment) -> layer0 -> silu -> layer1 (+ label) -> silu.
        emb = self.map_noise(noise_labels)                               # [B, mc]
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(silu(self.map_layer0(emb)))                # [B, E]
        if self.map_label is not None:
            if class_labels is None:
                raise ValueError("class_labels required when label_dim > 0")
            lab = class_labels
            if self.training and self.cfg.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.cfg.label_dropout
                lab = lab * keep.to(lab.dtype)
            emb = emb + self.map_label(lab)
        emb = silu(emb)

        # Encoder: every module's output is a skip.
        grouped = isinstance(latent_tokens, Mapping)
        skips: list[torch.Tensor] = []
        for mod in self.enc.values():
            x = mod(x, emb, None if grouped else latent_tokens) if isinstance(mod, ADMBlock) else mod(x)
            skips.append(x)

        # Decoder: concatenate a skip whenever the block expects more channels (EDM's rule).
        for blk in self.dec.values():
            if x.shape[1] != blk.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            # Output resolution of an up block is twice its input's.
            res = x.shape[-1] * (2 if blk.conv0.up else 1)
            x = blk(x, emb, latent_tokens.get(res) if grouped else latent_tokens)
        return self.out_conv(silu(self.out_norm(x)))


def _is_xattn_key(key: str) -> bool:
    parts = key.split(".")
    return len(parts) >= 2 and parts[-2].startswith(XATTN_PREFIX)


class EDMStateDictError(ValueError):
    """An EDM state dict does not match ADMUNet (lists every offending key)."""


def load_edm_state_dict(model: ADMUNet, state_dict: Mapping[str, torch.Tensor],
                        prefix: str = "") -> list[str]:
    """Load EDM `DhariwalUNet` weights into `model` strictly; only new `xattn_*` keys may be missing.

    `prefix` (e.g. "model." for an `EDMPrecond` state dict) is stripped; keys without it count as
    unexpected. Missing xattn keys keep the model's current (zero-proj) values. Returns the list of
    xattn keys that were not in `state_dict`. Raises EDMStateDictError on any unexpected key,
    missing non-xattn key, or shape mismatch.
    """
    sd: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for k, v in state_dict.items():
        if prefix and not k.startswith(prefix):
            unexpected.append(k)
        else:
            sd[k[len(prefix):]] = v
    own = model.state_dict()
    unexpected += [k for k in sd if k not in own]
    missing = [k for k in own if k not in sd]
    bad_missing = [k for k in missing if not _is_xattn_key(k)]
    bad_shape = [f"{k}: got {tuple(sd[k].shape)}, expected {tuple(own[k].shape)}"
                 for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if unexpected or bad_missing or bad_shape:
        lines = ["EDM state dict does not match ADMUNet:"]
        if bad_missing:
            lines.append(f"  missing non-xattn keys ({len(bad_missing)}): {sorted(bad_missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {sorted(unexpected)}")
        if bad_shape:
            lines.append(f"  shape mismatches ({len(bad_shape)}): {bad_shape}")
        raise EDMStateDictError("\n".join(lines))
    allowed = [k for k in missing if _is_xattn_key(k)]
    full = dict(sd)
    full.update({k: own[k] for k in allowed})   # keep current xattn weights (zero proj)
    model.load_state_dict(full, strict=True)
    return allowed
