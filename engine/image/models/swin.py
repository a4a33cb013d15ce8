"""Swin Transformer (Liu et al. 2021) in MLX, NHWC, parameter names as torchvision's ``swin_t``/``_s``/``_b``.

``features.0`` patchify conv + LayerNorm (``features.0.0``/``features.0.2``), then
stages ``features.1,3,5,7`` of blocks (``norm1`` -> windowed ``attn`` with a
``relative_position_bias_table`` -> ``norm2`` -> ``mlp.0``/``mlp.3``), every second
block's windows shifted by half a window with the cross-window mask, and
``PatchMerging`` (``features.2,4,6``: 2x2 neighbours concatenated, ``norm``,
``reduction``) between; ``norm`` and ``head`` after global average pooling. The
``relative_position_index`` buffer is recomputed, not loaded. Swin V2
(``logit_scale``, ``cpb_mlp``) is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import UserError
from engine.image.models.base import ArchConfig, head_classes, in_channels_of

EPS = 1e-5


@dataclass(frozen=True)
class SwinConfig(ArchConfig):
    num_classes: int = 1000
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple = (2, 2, 6, 2)
    num_heads: tuple = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    in_channels: int = 3
    eps: float = EPS


@dataclass(frozen=True)
class SwinSConfig(SwinConfig):
    depths: tuple = (2, 2, 18, 2)


@dataclass(frozen=True)
class SwinBConfig(SwinConfig):
    embed_dim: int = 128
    depths: tuple = (2, 2, 18, 2)
    num_heads: tuple = (4, 8, 16, 32)


def relative_position_index(ws: int) -> np.ndarray:
    """(ws², ws²) indices into the (2ws-1)² bias table, as torchvision builds its buffer."""
    coords = np.stack(np.meshgrid(np.arange(ws), np.arange(ws), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def shift_mask(h: int, w: int, ws: int, sh: int, sw: int) -> np.ndarray:
    """(windows, ws², ws²) additive mask keeping attention inside the regions a cyclic shift brought together.

    Built as torchvision builds it, slices and all (a zero shift makes its last slice the whole axis).
    """
    region = np.zeros((h, w), np.float32)
    count = 0
    for h0, h1 in ((0, -ws), (-ws, -sh), (-sh, None)):
        for w0, w1 in ((0, -ws), (-ws, -sw), (-sw, None)):
            region[h0:h1, w0:w1] = count
            count += 1
    windows = region.reshape(h // ws, ws, w // ws, ws).transpose(0, 2, 1, 3).reshape(-1, ws * ws)
    diff = windows[:, None, :] - windows[:, :, None]
    return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.num_heads, self.window, self.shift = heads, window, shift
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = mx.zeros(((2 * window - 1) ** 2, heads))
        self._index = mx.array(relative_position_index(window).reshape(-1))

    def matmul_macs(self, input_shape: tuple[int, ...]) -> int:
        """q·kᵀ and attention·v over the padded map's windows for one (1, H, W, C) input."""
        _, h, w, c = input_shape
        ws = self.window
        windows = -(-h // ws) * -(-w // ws)
        return windows * 2 * (ws * ws) ** 2 * c

    def __call__(self, x: mx.array) -> mx.array:
        b, h, w, c = x.shape
        ws, heads = self.window, self.num_heads
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b or pad_r:
            x = mx.pad(x, [(0, 0), (0, pad_b), (0, pad_r), (0, 0)])
        ph, pw = h + pad_b, w + pad_r
        # No shift where one window covers the whole (padded) map.
        sh = self.shift if ws < ph else 0
        sw = self.shift if ws < pw else 0
        if sh or sw:
            x = mx.roll(x, shift=(-sh, -sw), axis=(1, 2))
        nw = (ph // ws) * (pw // ws)
        t = x.reshape(b, ph // ws, ws, pw // ws, ws, c).transpose(0, 1, 3, 2, 4, 5).reshape(b * nw, ws * ws, c)
        qkv = self.qkv(t).reshape(b * nw, ws * ws, 3, heads, c // heads).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
        n = ws * ws
        bias = self.relative_position_bias_table[self._index].reshape(n, n, heads).transpose(2, 0, 1)
        attn = q @ k.transpose(0, 1, 3, 2) + bias
        if sh or sw:
            mask = mx.array(shift_mask(ph, pw, ws, sh, sw))
            attn = (attn.reshape(b, nw, heads, n, n) + mask[None, :, None]).reshape(b * nw, heads, n, n)
        y = (mx.softmax(attn, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(b * nw, n, c)
        y = self.proj(y).reshape(b, ph // ws, pw // ws, ws, ws, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
        if sh or sw:
            y = mx.roll(y, shift=(sh, sw), axis=(1, 2))
        return y[:, :h, :w, :]


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, eps: float = EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = ShiftedWindowAttention(dim, heads, window, shift)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = [nn.Linear(dim, hidden), {}, {}, nn.Linear(hidden, dim)]

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp[3](nn.gelu(self.mlp[0](self.norm2(x))))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, eps: float = EPS):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def __call__(self, x: mx.array) -> mx.array:
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            x = mx.pad(x, [(0, 0), (0, h % 2), (0, w % 2), (0, 0)])
        x = mx.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)
        return self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    def __init__(self, config: SwinConfig):
        super().__init__()
        if len(config.depths) != len(config.num_heads):
            raise ValueError("depths and num_heads must have the same length")
        self.config = config
        c, p, ws = config.embed_dim, config.patch_size, config.window_size
        features: list = [[nn.Conv2d(config.in_channels, c, p, p, bias=True), {}, nn.LayerNorm(c, eps=config.eps)]]
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)):
            dim = c * 2**i
            features.append(
                [
                    SwinBlock(dim, heads, ws, 0 if j % 2 == 0 else ws // 2, config.mlp_ratio, config.eps)
                    for j in range(depth)
                ]
            )
            if i + 1 < len(config.depths):
                features.append(PatchMerging(dim, config.eps))
        self.features = features
        last = c * 2 ** (len(config.depths) - 1)
        self.norm = nn.LayerNorm(last, eps=config.eps)
        self.head = nn.Linear(last, config.num_classes)

    def forward_features(self, x: mx.array) -> mx.array:
        stem = self.features[0]
        x = stem[2](stem[0](x))
        for f in self.features[1:]:
            if isinstance(f, list):
                for blk in f:
                    x = blk(x)
            else:
                x = f(x)
        return self.norm(x)

    def __call__(self, x: mx.array) -> mx.array:
        return self.head(mx.mean(self.forward_features(x), axis=(1, 2)))


def sanitize(weights: dict) -> dict:
    """A torchvision Swin state dict -> this model's names (the index buffers are dropped).

    Raises:
        UserError: Swin V2 (``logit_scale``/``cpb_mlp``), named.
    """
    if any(k.endswith(".attn.logit_scale") or ".attn.cpb_mlp." in k for k in weights):
        raise UserError("unsupported Swin variant: Swin V2 (logit_scale, cpb_mlp); swin_t/s/b (V1) are supported")
    return {
        k: v
        for k, v in weights.items()
        if not k.endswith("relative_position_index") and not k.endswith("num_batches_tracked")
    }


def infer_config(weights: dict) -> dict:
    """Class count, embedding width, patch size, stage depths and window size from a sanitized checkpoint.

    Head counts are not in the weights: they follow Swin's 32-wide heads unless given.
    """
    cfg = {**head_classes(weights, "head.weight"), **in_channels_of(weights, "features.0.0.weight")}
    stem = weights.get("features.0.2.weight")
    proj = weights.get("features.0.0.weight")
    if stem is None or proj is None:
        return cfg
    c = int(stem.shape[0])
    depths = []
    s = 1
    while f"features.{s}.0.norm1.weight" in weights:
        depths.append(len({k.split(".")[2] for k in weights if k.startswith(f"features.{s}.")}))
        s += 2
    table = weights.get("features.1.0.attn.relative_position_bias_table")
    cfg.update(embed_dim=c, patch_size=int(proj.shape[-2]))
    if depths:
        cfg["depths"] = tuple(depths)
        cfg["num_heads"] = tuple(max(1, c * 2**i // 32) for i in range(len(depths)))
    if table is not None:
        cfg["window_size"] = int(round((table.shape[0] ** 0.5 + 1) / 2))
        if all(f"features.{2 * i + 1}.0.attn.relative_position_bias_table" in weights for i in range(len(depths))):
            cfg["num_heads"] = tuple(
                int(weights[f"features.{2 * i + 1}.0.attn.relative_position_bias_table"].shape[1])
                for i in range(len(depths))
            )
    mlp = weights.get("features.1.0.mlp.0.weight")
    if mlp is not None:
        cfg["mlp_ratio"] = float(mlp.shape[0] / c)
    return cfg
