"""GPTQ (Frantar et al. 2023, Algorithm 1) with MLX's group-wise affine scales.

A layer computes ``y = W x``; given the inputs' second moment ``H = E[x x^T]`` (the
Hessian of the output error, up to a factor), the columns of ``W`` are quantized one
after the other and each column's rounding error is pushed onto the columns not yet
quantized, weighted by the inverse Hessian (its upper Cholesky factor, in blocks of
lazy updates). The scale and bias of a group are chosen, as MLX's RTN would choose
them, from the group's current (already error-corrected) values when its first column
comes up; with act-order (columns by decreasing ``H`` diagonal) they are fixed up front
from the original weights ("static groups"), since a group's columns are then visited
out of order.

Depthwise kernels are stored as (taps, channels), grouped across channels; each
channel's output depends only on its own taps, so each channel has its own
(taps x taps) Hessian and the error feedback runs along the taps of one channel.

Plain NumPy in float64: the matrices of the image models here are small, and the
scales come from ``mx.quantize`` itself (see ``affine.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.core.errors import Cancelled
from engine.image.quant.methods.affine import dequantize, expand, group_params, round_codes, searched_group_params

DEFAULT_DAMP = 0.01  # dampening, as a fraction of the mean Hessian diagonal (the paper's 1 %)
BLOCK_SIZE = 128


@dataclass(frozen=True)
class QuantizedMatrix:
    """Codes and affine parameters of one (rows, cols) matrix grouped along cols, and its dequantized values."""

    codes: np.ndarray  # (rows, cols) integers in [0, 2^bits - 1]
    scales: np.ndarray  # (rows, cols / group_size) float32
    biases: np.ndarray  # (rows, cols / group_size) float32
    weight: np.ndarray  # (rows, cols) float32: scales * codes + biases


def rtn_matrix(w: np.ndarray, group_size: int, bits: int, scale_dtype: str) -> QuantizedMatrix:
    """Round to nearest with MLX's own group parameters (what ``mx.quantize`` stores)."""
    s, b = group_params(w, group_size, bits, scale_dtype)
    s, b = expand(s, group_size), expand(b, group_size)
    q = round_codes(w.astype(np.float64), s, b, bits)
    return QuantizedMatrix(q.astype(np.int64), s[:, ::group_size], b[:, ::group_size], dequantize(q, s, b))


@dataclass(frozen=True)
class PreparedHessian:
    """What GPTQ derives from a Hessian alone, whatever the format: reusable across formats.

    For a matrix: ``h`` dampened (cols, cols), ``dead`` columns, the column order ``perm`` and the
    upper Cholesky factor ``u`` of the permuted inverse. For a depthwise kernel: ``h`` is the
    dampened diagonal (channels, taps), ``dead`` its zero entries, ``u`` (channels, taps, taps).
    """

    h: np.ndarray
    dead: np.ndarray
    perm: np.ndarray | None
    u: np.ndarray


def prepare_hessian(hessian: np.ndarray, damp: float = DEFAULT_DAMP, act_order: bool = False) -> PreparedHessian:
    """``gptq_matrix``'s Hessian work, once for any number of formats of the same layer."""
    h = np.array(hessian, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h)))
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(h.shape[0])
    return PreparedHessian(h, dead, perm, inverse_cholesky_upper(h[np.ix_(perm, perm)]))


def prepare_depthwise_hessians(hessians: np.ndarray, damp: float = DEFAULT_DAMP) -> PreparedHessian:
    """``gptq_depthwise``'s Hessian work, once for any number of formats of the same layer."""
    h = np.array(hessians, dtype=np.float64)
    taps = h.shape[-1]
    diag = np.diagonal(h, axis1=1, axis2=2).copy()  # (channels, taps)
    dead = diag == 0
    diag[dead] = 1.0
    diag += damp * diag.mean(axis=1, keepdims=True)
    h[:, np.arange(taps), np.arange(taps)] = diag
    return PreparedHessian(diag, dead, None, inverse_cholesky_upper(h))


def inverse_cholesky_upper(h: np.ndarray) -> np.ndarray:
    """Upper ``U`` with ``H^-1 = U^T U`` (stacked Hessians allowed)."""
    eye = np.broadcast_to(np.eye(h.shape[-1]), h.shape)
    hinv = np.linalg.solve(h, eye)
    hinv = (hinv + np.swapaxes(hinv, -1, -2)) / 2
    return np.swapaxes(np.linalg.cholesky(hinv), -1, -2)


def gptq_matrix(
    w: np.ndarray,
    hessian: np.ndarray,
    group_size: int,
    bits: int,
    scale_dtype: str = "float32",
    damp: float = DEFAULT_DAMP,
    act_order: bool = False,
    block_size: int = BLOCK_SIZE,
    should_stop: Callable[[], bool] | None = None,
    clip_search: bool = False,
    prepared: PreparedHessian | None = None,
) -> QuantizedMatrix:
    """GPTQ of a (rows, cols) matrix grouped along cols.

    Args:
        w: the float weights; cols a multiple of ``group_size``.
        hessian: (cols, cols) ``sum x x^T`` over the calibration inputs (any positive factor).
        group_size, bits: MLX affine format.
        scale_dtype: the dtype scales/biases are stored in (they are rounded to it before use).
        damp: diagonal dampening as a fraction of the mean diagonal.
        act_order: visit columns by decreasing Hessian diagonal (static groups).
        block_size: columns per lazy batch update (rounded up to a multiple of the group size).
        should_stop: polled between blocks.
        clip_search: choose each group's range by ``searched_group_params`` (squared error
            weighted by the Hessian diagonal) instead of its min/max.
        prepared: ``prepare_hessian(hessian, damp, act_order)`` computed before (then
            ``hessian``, ``damp`` and ``act_order`` are not read again).

    Raises:
        Cancelled: should_stop() turned true.
    """
    rows, cols = w.shape
    prepared = prepared or prepare_hessian(hessian, damp, act_order)
    # Columns no input reaches (zero diagonal) get weight 0 and a unit diagonal.
    w = np.array(w, dtype=np.float64)
    w[:, prepared.dead] = 0.0
    perm, u = prepared.perm, prepared.u
    diag = np.diag(prepared.h).copy()

    def params(block: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        if not clip_search:
            return group_params(block, group_size, bits, scale_dtype)
        return searched_group_params(block, group_size, bits, scale_dtype, diag[first : first + block.shape[1]])

    static = params(w, 0) if act_order else None
    w = w[:, perm]
    block_size = -(-block_size // group_size) * group_size
    codes = np.zeros((rows, cols), np.int64)
    scales = np.zeros((rows, cols // group_size), np.float32)
    biases = np.zeros_like(scales)
    if static is not None:
        scales, biases = static
    for i1 in range(0, cols, block_size):
        if should_stop is not None and should_stop():
            raise Cancelled()
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].copy()
        err = np.zeros_like(w1)
        for i in range(i2 - i1):
            col = perm[i1 + i]
            g = col // group_size
            if static is None and i % group_size == 0:
                scales[:, g], biases[:, g] = (a[:, 0] for a in params(w1[:, i : i + group_size], col))
            s, b = scales[:, g].astype(np.float64), biases[:, g].astype(np.float64)
            q = round_codes(w1[:, i], s, b, bits)
            codes[:, col] = q
            e = (w1[:, i] - dequantize(q, scales[:, g], biases[:, g])) / u[i1 + i, i1 + i]
            w1[:, i:] -= e[:, None] * u[i1 + i, i1 + i : i2][None, :]
            err[:, i] = e
        w[:, i2:] -= err @ u[i1:i2, i2:]
    s, b = expand(scales, group_size), expand(biases, group_size)
    return QuantizedMatrix(codes, scales, biases, dequantize(codes, s, b))


def gptq_depthwise(
    w: np.ndarray,
    hessians: np.ndarray,
    group_size: int,
    bits: int,
    scale_dtype: str = "float32",
    damp: float = DEFAULT_DAMP,
    should_stop: Callable[[], bool] | None = None,
    clip_search: bool = False,
    prepared: PreparedHessian | None = None,
) -> QuantizedMatrix:
    """GPTQ of a depthwise kernel stored as (taps, channels), grouped across channels.

    Args:
        w: (taps, channels) float weights; channels a multiple of ``group_size``.
        hessians: (channels, taps, taps): each channel's ``sum x x^T`` over its own patches.
        clip_search: as for ``gptq_matrix`` (each channel's weight by its own Hessian diagonal).
        prepared: ``prepare_depthwise_hessians(hessians, damp)`` computed before.

    Raises:
        Cancelled: should_stop() turned true.
    """
    taps, channels = w.shape
    prepared = prepared or prepare_depthwise_hessians(hessians, damp)
    v = np.array(w.T, dtype=np.float64)
    v[prepared.dead] = 0.0
    diag, u = prepared.h, prepared.u
    codes = np.zeros((taps, channels), np.int64)
    scales = np.zeros((taps, channels // group_size), np.float32)
    biases = np.zeros_like(scales)
    for t in range(taps):
        if should_stop is not None and should_stop():
            raise Cancelled()
        if clip_search:
            st, bt = searched_group_params(v[:, t][None, :], group_size, bits, scale_dtype, diag[:, t][None, :])
        else:
            st, bt = group_params(v[:, t][None, :], group_size, bits, scale_dtype)
        scales[t], biases[t] = st[0], bt[0]
        s, b = expand(st, group_size)[0], expand(bt, group_size)[0]
        q = round_codes(v[:, t], s.astype(np.float64), b.astype(np.float64), bits)
        codes[t] = q
        e = (v[:, t] - dequantize(q, s, b)) / u[:, t, t]
        v[:, t:] -= e[:, None] * u[:, t, t:]
    s, b = expand(scales, group_size), expand(biases, group_size)
    return QuantizedMatrix(codes, scales, biases, dequantize(codes, s, b))
