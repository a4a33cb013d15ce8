"""AdaRound (Nagel et al. 2020): learn whether each weight rounds down or up, with MLX autograd.

The group scales and biases are MLX's RTN ones; each weight's code is ``floor(x) + h(V)``
with ``x = (w - bias) / scale`` and ``h`` the rectified sigmoid, so the final code is
floor or floor + 1: within one code of RTN by construction. ``V`` minimises the layer's
output error on the calibration inputs plus a regulariser that pushes ``h`` to 0 or 1
(its exponent annealed from 20 to 2 after a warm-up). The output error is written with
the input second moment ``H`` (``E||dW x||^2 = tr(dW H dW^T)``), so the captured
statistics suffice and no activations are stored; a depthwise kernel uses one H per
channel. The error is normalised by RTN's, so one regularisation weight fits all layers.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np

from engine.core.errors import Cancelled
from engine.image.quant.methods.affine import dequantize, expand, group_params, searched_group_params
from engine.image.quant.methods.gptq import QuantizedMatrix

GAMMA, ZETA = -0.1, 1.1  # the rectified sigmoid's stretch, as in the paper
DEFAULT_ITERS = 300
DEFAULT_LAMBDA = 0.1
WARMUP = 0.2
BETA = (20.0, 2.0)


def _rect_sigmoid(v: mx.array) -> mx.array:
    return mx.clip(mx.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def low_rank_factor(h: np.ndarray, tol: float = 1e-7, max_share: float = 0.5) -> np.ndarray | None:
    """``L`` (cols, r) with ``L L^T = H`` up to eigenvalues below ``tol`` x the largest, when r <= max_share x cols.

    ``H = E[x x^T]`` of a deep layer has rank at most the number of calibration patches: a
    ResNet-18 ``layer4`` conv at 32 px sees one position per image, so 128 images give rank
    128 of 4,608 columns. ``tr(dW H dW^T) = ||dW L||^2`` then costs rows x cols x r per step
    instead of rows x cols^2 (36x less there); None when the rank is too high to gain.
    """
    vals, vecs = np.linalg.eigh(h.astype(np.float64))
    keep = vals > tol * max(float(vals[-1]), 1e-300)
    if keep.sum() > max_share * h.shape[0]:
        return None
    return vecs[:, keep] * np.sqrt(vals[keep])


def adaround_matrix(
    w: np.ndarray,
    hessian: np.ndarray,
    group_size: int,
    bits: int,
    scale_dtype: str = "float32",
    iters: int = DEFAULT_ITERS,
    lam: float = DEFAULT_LAMBDA,
    lr: float = 3e-2,
    should_stop: Callable[[], bool] | None = None,
    clip_search: bool = False,
) -> QuantizedMatrix:
    """Learned rounding of a (rows, cols) matrix grouped along cols.

    Args:
        w: the float weights; cols a multiple of ``group_size``.
        hessian: (cols, cols) input second moment, or (cols, rows, rows) per column for a
            depthwise kernel stored as (taps, channels) (each channel's taps form a column).
        iters: Adam steps.
        lam: weight of the rounding regulariser (the error term is 1 at RTN).
        lr: Adam learning rate on V.
        should_stop: polled every 50 steps.
        clip_search: start from ``searched_group_params`` ranges (error weighted by the Hessian
            diagonal) instead of each group's min/max.

    Raises:
        Cancelled: should_stop() turned true.
    """
    rows, cols = w.shape
    n = (1 << bits) - 1
    depthwise = hessian.ndim == 3
    if clip_search:
        diag = np.diagonal(hessian, axis1=-2, axis2=-1)  # (cols, rows) per channel, else (cols,)
        s_g, b_g = searched_group_params(w, group_size, bits, scale_dtype, diag.T if depthwise else diag[None, :])
    else:
        s_g, b_g = group_params(w, group_size, bits, scale_dtype)
    s, b = expand(s_g, group_size), expand(b_g, group_size)
    x = (w.astype(np.float64) - b) / s
    floor = np.floor(x)
    rest = np.clip(x - floor, 0.0, 1.0)
    v0 = -np.log((ZETA - GAMMA) / (np.clip(rest, 1e-3, 1 - 1e-3) - GAMMA) - 1.0)
    h = hessian / max(float(np.mean(np.diagonal(hessian, axis1=-2, axis2=-1))), 1e-12)
    w_mx = mx.array(w.astype(np.float32))
    s_mx, b_mx, f_mx = (mx.array(a.astype(np.float32)) for a in (s, b, floor))
    factor = None if depthwise else low_rank_factor(h)
    h_mx = mx.array((h if factor is None else factor).astype(np.float32))

    def recon(delta: mx.array) -> mx.array:
        if depthwise:
            d = delta.T  # (channels, taps)
            return mx.sum(mx.einsum("ct,ctu->cu", d, h_mx) * d)
        if factor is not None:
            return mx.sum(mx.square(delta @ h_mx))  # ||dW L||^2 = tr(dW H dW^T) with H = L L^T
        return mx.sum((delta @ h_mx) * delta)

    def weights(v: mx.array) -> mx.array:
        return s_mx * mx.clip(f_mx + _rect_sigmoid(v), 0, n) + b_mx

    rtn = s_mx * mx.clip(mx.round(f_mx + mx.array(rest.astype(np.float32))), 0, n) + b_mx
    scale = max(float(recon(rtn - w_mx).item()), 1e-20)

    def loss_fn(params, beta, reg_on):
        v = params["v"]
        err = recon(weights(v) - w_mx) / scale
        reg = mx.mean(1.0 - mx.abs(2.0 * _rect_sigmoid(v) - 1.0) ** beta)
        return err + reg_on * lam * reg

    params = {"v": mx.array(v0.astype(np.float32))}
    opt = optim.Adam(learning_rate=lr)
    step = mx.value_and_grad(loss_fn)
    warm = int(WARMUP * iters)
    for it in range(iters):
        if should_stop is not None and it % 50 == 0 and should_stop():
            raise Cancelled()
        if it < warm:
            beta, reg_on = BETA[0], 0.0
        else:
            t = (it - warm) / max(iters - warm, 1)
            beta, reg_on = BETA[0] + (BETA[1] - BETA[0]) * t, 1.0
        _, grads = step(params, mx.array(beta), mx.array(reg_on))
        opt.update(params, grads)
        mx.eval(params, opt.state)
    up = np.array(_rect_sigmoid(params["v"])) >= 0.5
    codes = np.clip(floor + up, 0, n).astype(np.int64)
    return QuantizedMatrix(codes, s_g, b_g, dequantize(codes, s, b))
