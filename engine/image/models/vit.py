"""Vision Transformer (Dosovitskiy et al. 2021) and DeiT in MLX, parameter names as torchvision's.

``conv_proj`` patchifies, ``class_token`` is prepended and
``encoder.pos_embedding`` added; ``encoder.layers.encoder_layer_i`` are pre-norm
blocks (``ln_1`` -> ``self_attention`` -> ``ln_2`` -> ``mlp.0``/``mlp.3`` with
GELU), ``encoder.ln`` the final norm and ``heads.head`` the classifier on the
class token, as ``torchvision.models.VisionTransformer``. The attention's packed
``in_proj_weight``/``in_proj_bias`` become the Linear ``self_attention.in_proj``
so quantization sees it. timm's names (``cls_token``, ``pos_embed``,
``blocks.i.attn.qkv``...; ViT-S/16 and DeiT are timm models) are renamed by
:func:`sanitize`. Heads are 64 wide unless ``num_heads`` says otherwise.
Dropout is the identity at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from engine.core.errors import UserError
from engine.image.models.base import ArchConfig, head_classes, rename

EPS = 1e-6


@dataclass(frozen=True)
class ViTConfig(ArchConfig):
    num_classes: int = 1000
    image_size: int = 224
    patch_size: int = 16
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    mlp_dim: int = 3072
    in_channels: int = 3
    eps: float = EPS  # Hugging Face ViTs use 1e-12
    dist_token: bool = False  # DeiT's distillation token after the class token (the head reads the class token)


@dataclass(frozen=True)
class ViTS16Config(ViTConfig):
    num_heads: int = 6
    hidden_dim: int = 384
    mlp_dim: int = 1536


@dataclass(frozen=True)
class ViTB32Config(ViTConfig):
    patch_size: int = 32


@dataclass(frozen=True)
class ViTL16Config(ViTConfig):
    num_layers: int = 24
    num_heads: int = 16
    hidden_dim: int = 1024
    mlp_dim: int = 4096


@dataclass(frozen=True)
class DeiTTinyConfig(ViTConfig):
    num_heads: int = 3
    hidden_dim: int = 192
    mlp_dim: int = 768


class Attention(nn.Module):
    """Multi-head self-attention with a packed q/k/v projection (``in_proj``) and ``out_proj``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    @staticmethod
    def matmul_macs(input_shape: tuple[int, ...]) -> int:
        """q·kᵀ and attention·v for one input of (1, tokens, width): 2·n²·d."""
        _, n, d = input_shape
        return 2 * n * n * d

    def __call__(self, x: mx.array) -> mx.array:
        b, n, d = x.shape
        h = self.num_heads
        qkv = self.in_proj(x).reshape(b, n, 3, h, d // h).transpose(2, 0, 3, 1, 4)
        y = mx.fast.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=(d // h) ** -0.5)
        return self.out_proj(y.transpose(0, 2, 1, 3).reshape(b, n, d))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float = EPS):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.self_attention = Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = [nn.Linear(dim, mlp_dim), {}, {}, nn.Linear(mlp_dim, dim)]

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.self_attention(self.ln_1(x))
        return x + self.mlp[3](nn.gelu(self.mlp[0](self.ln_2(x))))


class PatchGrid(nn.Module):
    """The identity on the patch tokens seen as a (N, grid, grid, D) map: a ViT's Grad-CAM target.

    It sits on the last block's input, so the class score's gradient reaches it through that
    block's attention (after the last block the head reads the class token alone).
    """

    def __call__(self, x: mx.array) -> mx.array:
        return x


class Encoder(nn.Module):
    def __init__(self, seq_len: int, c: ViTConfig):
        super().__init__()
        self.pos_embedding = mx.zeros((1, seq_len, c.hidden_dim))
        self.layers = {
            f"encoder_layer_{i}": EncoderBlock(c.hidden_dim, c.num_heads, c.mlp_dim, c.eps) for i in range(c.num_layers)
        }
        self.ln = nn.LayerNorm(c.hidden_dim, eps=c.eps)

    def __call__(self, x: mx.array, patch_grid: nn.Module, prefix: int, grid: int) -> mx.array:
        """Position embeddings, the blocks (``patch_grid`` on the last one's patch tokens) and the final norm.

        Submodules are reached only by calling them (Grad-CAM wraps every module).
        """
        x = x + self.pos_embedding
        names = [f"encoder_layer_{i}" for i in range(len(self.layers))]
        for name in names[:-1]:
            x = self.layers[name](x)
        n, _, d = x.shape
        patches = patch_grid(x[:, prefix:].reshape(n, grid, grid, d))
        x = mx.concatenate([x[:, :prefix], patches.reshape(n, grid * grid, d)], axis=1)
        if names:
            x = self.layers[names[-1]](x)
        return self.ln(x)


class VisionTransformer(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        if config.image_size % config.patch_size:
            raise ValueError(f"image size {config.image_size} is not a multiple of the patch size {config.patch_size}")
        self.config = config
        self.grid = config.image_size // config.patch_size
        p = config.patch_size
        self.conv_proj = nn.Conv2d(config.in_channels, config.hidden_dim, p, p, bias=True)
        self.class_token = mx.zeros((1, 1, config.hidden_dim))
        if config.dist_token:
            self.dist_token = mx.zeros((1, 1, config.hidden_dim))
        self.encoder = Encoder(self.grid * self.grid + 1 + int(config.dist_token), config)
        self.heads = {"head": nn.Linear(config.hidden_dim, config.num_classes)}
        self.patch_grid = PatchGrid()

    def tokens(self, x: mx.array) -> mx.array:
        """(N, H, W, C) images -> (N, 1 [+ 1] + grid², D) tokens, before the position embeddings."""
        x = self.conv_proj(x)
        n, gh, gw, d = x.shape
        if (gh, gw) != (self.grid, self.grid):
            raise ValueError(
                f"this ViT takes {self.config.image_size}x{self.config.image_size} images, got a {gh}x{gw} patch grid"
            )
        x = x.reshape(n, gh * gw, d)
        prefix = [mx.broadcast_to(self.class_token, (n, 1, d))]
        if self.config.dist_token:
            prefix.append(mx.broadcast_to(self.dist_token, (n, 1, d)))
        return mx.concatenate([*prefix, x], axis=1)

    def __call__(self, x: mx.array) -> mx.array:
        x = self.encoder(self.tokens(x), self.patch_grid, 1 + int(self.config.dist_token), self.grid)
        return self.heads["head"](x[:, 0])


TIMM_RULES = [
    (r"^cls_token$", "class_token"),
    (r"^pos_embed$", "encoder.pos_embedding"),
    (r"^patch_embed\.proj\.", "conv_proj."),
    (r"^blocks\.(\d+)\.", r"encoder.layers.encoder_layer_\1."),
    (r"\.norm1\.", ".ln_1."),
    (r"\.norm2\.", ".ln_2."),
    (r"\.attn\.qkv\.", ".self_attention.in_proj."),
    (r"\.attn\.proj\.", ".self_attention.out_proj."),
    (r"\.mlp\.fc1\.", ".mlp.0."),
    (r"\.mlp\.fc2\.", ".mlp.3."),
    (r"^norm\.", "encoder.ln."),
    (r"^head\.", "heads.head."),
]

UNSUPPORTED = {
    "head_dist.weight": "distilled DeiT (dist_token, head_dist); use the non-distilled deit_* model",
    "heads.pre_logits.weight": "a ViT with a representation layer (heads.pre_logits)",
    "fc_norm.weight": "a ViT with global-average pooling (fc_norm)",
    "reg_token": "a ViT with register tokens (reg_token)",
}


def sanitize(weights: dict) -> dict:
    """torchvision or timm ViT/DeiT state dict -> this model's names.

    Raises:
        UserError: a variant this model does not implement, named.
    """
    for key, what in UNSUPPORTED.items():
        if key in weights:
            raise UserError(f"unsupported ViT variant: {what}")
    if any(".attn.q_norm." in k for k in weights):
        raise UserError("unsupported ViT variant: attention with q/k normalisation (attn.q_norm)")
    if "cls_token" in weights:
        weights = rename(weights, TIMM_RULES)
    out = {}
    for k, v in weights.items():
        k = k.replace(".self_attention.in_proj_weight", ".self_attention.in_proj.weight")
        k = k.replace(".self_attention.in_proj_bias", ".self_attention.in_proj.bias")
        # Old torchvision checkpoints name the MLP linear_1/linear_2.
        k = k.replace(".mlp.linear_1.", ".mlp.0.").replace(".mlp.linear_2.", ".mlp.3.")
        out[k] = v
    return out


def infer_config(weights: dict) -> dict:
    """Class count, widths, depth, patch and image size from a sanitized checkpoint (heads are 64 wide)."""
    cfg = head_classes(weights, "heads.head.weight")
    cls = weights.get("class_token")
    proj = weights.get("conv_proj.weight")
    pos = weights.get("encoder.pos_embedding")
    if cls is None or proj is None or pos is None:
        return cfg
    d = int(cls.shape[-1])
    # conv_proj is (D, C, p, p) in PyTorch layout or (D, p, p, C) in MLX layout.
    torch_layout = proj.shape[2] == proj.shape[3] and proj.shape[1] != proj.shape[2]
    p = int(proj.shape[2] if torch_layout else proj.shape[1])
    dist = "dist_token" in weights
    grid = int(round((pos.shape[1] - 1 - int(dist)) ** 0.5))
    n_layers = len({k.split(".")[2] for k in weights if k.startswith("encoder.layers.")})
    mlp = weights.get("encoder.layers.encoder_layer_0.mlp.0.weight")
    cfg.update(
        hidden_dim=d,
        num_heads=max(1, d // 64),
        patch_size=p,
        image_size=grid * p,
        num_layers=n_layers,
        in_channels=int(proj.shape[1] if torch_layout else proj.shape[3]),
        dist_token=dist,
    )
    if mlp is not None:
        cfg["mlp_dim"] = int(mlp.shape[0])
    return cfg
