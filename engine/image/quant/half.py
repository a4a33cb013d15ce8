"""Half-precision (float16/bfloat16) models that compute right.

MLX's half-precision reductions accumulate in half precision, and a trained network's
BatchNorm statistics (variances in the millions at the stem) and feature maps (values in
the thousands before the pool) exceed float16's range (65504). So the fp16/bf16 recipes
fold every foldable BatchNorm in float32 first, the pools average in float32
(``models.layers.mean_f32``), and a BatchNorm that cannot be folded (DenseNet's
pre-activation norms) keeps float32 statistics and normalises in float32, handing
its output back in the activations' dtype.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from engine.image.quant.hooks import replace_modules

HALF_DTYPES = ("float16", "bfloat16")


class WideBatchNorm(nn.BatchNorm):
    """A BatchNorm with float32 statistics that normalises in float32 and returns the input's dtype."""

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm) -> WideBatchNorm:
        """The same normalisation (parameters widened to float32, same names) as ``bn``."""
        dims = bn.running_mean.shape[0] if "running_mean" in bn else bn.weight.shape[0]
        new = cls(
            dims, eps=bn.eps, momentum=bn.momentum, affine="weight" in bn, track_running_stats="running_mean" in bn
        )
        new.update({k: v.astype(mx.float32) for k, v in bn.items() if isinstance(v, mx.array)})
        if not bn.training:
            new.eval()
        return new

    def __call__(self, x: mx.array) -> mx.array:
        return super().__call__(x.astype(mx.float32)).astype(x.dtype)


def widen_batchnorms(model: nn.Module) -> list[str]:
    """Replace every (unfolded) BatchNorm of ``model`` with a WideBatchNorm, in place.

    Returns:
        The paths replaced, in definition order.
    """
    found = {
        p: WideBatchNorm.from_batchnorm(m)
        for p, m in reversed(model.named_modules())
        if p and isinstance(m, nn.BatchNorm) and not isinstance(m, WideBatchNorm)
    }
    replace_modules(model, found)
    return list(found)
