"""GGUF tensor types -> MLX, checked against llama.cpp's own gguf-py dequantizer on files its writer made."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

from engine.llm.gguf_tensors import affine_blocks, convert_tensor, requant_bits  # noqa: E402
from tests.gguf_fixtures import k_quant_blocks, write_gguf  # noqa: E402


def _read_back(tmp_path, qtype, shape=(16, 512), seed=0):
    """Write one tensor with GGUFWriter, read it with GGUFReader: (ReaderTensor, gguf-py's float values)."""
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.05
    path = tmp_path / f"{qtype.name}.gguf"
    write_gguf(path, "llama", {"w": (w, qtype)})
    t = gguf.GGUFReader(str(path)).tensors[0]
    return t, dequantize(t.data, t.tensor_type).reshape(shape)


def _mlx_values(arrays, conv):
    if "scales" not in arrays:
        return np.asarray(arrays["weight"], dtype=np.float32)
    w, s, b = (mx.array(arrays[k]) for k in ("weight", "scales", "biases"))
    return np.array(mx.dequantize(w, s, b, group_size=32, bits=conv.bits))


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K])
def test_block_types_become_mlx_affine_g32_exactly(tmp_path, qtype):
    t, ref = _read_back(tmp_path, qtype)
    arrays, conv = convert_tensor(t.name, t.tensor_type, t.data, ref.shape, quantize=True)
    assert conv.exact and conv.bits == {"Q8_0": 8, "Q5_0": 5, "Q5_1": 5, "Q5_K": 5}.get(qtype.name, 4)
    assert arrays["weight"].dtype == np.uint32 and arrays["weight"].shape == (16, 512 * conv.bits // 32)
    assert arrays["scales"].dtype == np.float32 and arrays["scales"].shape == (16, 512 // 32)
    got = _mlx_values(arrays, conv)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max())


@pytest.mark.parametrize("qtype", [T.F32, T.F16, T.BF16])
def test_float_types_stay_floats(tmp_path, qtype):
    t, ref = _read_back(tmp_path, qtype)
    arrays, conv = convert_tensor(t.name, t.tensor_type, t.data, ref.shape, quantize=True)
    assert conv.exact and conv.bits is None and conv.mlx_format == qtype.name.lower().replace("f", "float")
    np.testing.assert_array_equal(np.asarray(arrays["weight"], dtype=np.float32), ref)


@pytest.mark.parametrize("qtype", [T.Q6_K, T.Q3_K, T.Q2_K])
def test_other_types_are_requantized_with_at_least_their_bits_and_the_error_recorded(tmp_path, qtype):
    t, ref = _read_back(tmp_path, qtype)
    arrays, conv = convert_tensor(t.name, t.tensor_type, t.data, ref.shape, quantize=True)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    assert not conv.exact and conv.bits >= 8 * size / block and conv.bits == requant_bits(qtype)
    err = np.abs(_mlx_values(arrays, conv) - ref)
    assert conv.max_abs_error == pytest.approx(float(err.max()), rel=1e-5, abs=1e-9)
    assert conv.mean_abs_error == pytest.approx(float(err.mean()), rel=1e-4, abs=1e-9)
    # Half a step of the MLX grid at most.
    steps = (ref.reshape(16, -1, 32).max(-1) - ref.reshape(16, -1, 32).min(-1)) / (2**conv.bits - 1)
    assert conv.max_abs_error <= 0.5 * steps.max() * (1 + 1e-4)


def test_not_quantizable_tensors_are_dequantized_to_float32(tmp_path):
    t, ref = _read_back(tmp_path, T.Q8_0, shape=(2, 64))
    arrays, conv = convert_tensor(t.name, t.tensor_type, t.data, ref.shape, quantize=False)
    assert conv.mlx_format == "float32" and conv.exact
    np.testing.assert_array_equal(arrays["weight"], ref)


def test_q4_k_sub_block_scale_and_min_layout_is_pinned_to_gguf_py():
    """Each 256-value super-block: 8 sub-blocks of 32; sub-block 2i = low nibbles of qs[32i:32i+32], 2i+1 = high.

    MLX 0.32's mx.load gives the high-nibble sub-blocks the previous sub-block's scale and min;
    that layout is built below and must be told apart from gguf-py's.
    """
    rng = np.random.default_rng(7)
    blocks = k_quant_blocks(T.Q4_K, 64, rng)
    ref = dequantize(blocks, T.Q4_K).reshape(-1, 32)
    q, scale, bias = affine_blocks("Q4_K", blocks)
    ours = q.astype(np.float32) * scale[:, None] + bias[:, None]
    np.testing.assert_array_equal(ours, ref)
    # Every sub-block's scale and min differ from gguf-py's somewhere when shifted as mx.load does.
    shifted = scale.reshape(-1, 8).copy()
    shifted_b = bias.reshape(-1, 8).copy()
    shifted[:, 1::2], shifted_b[:, 1::2] = shifted[:, 0::2], shifted_b[:, 0::2]
    wrong = q.astype(np.float32) * shifted.reshape(-1, 1) + shifted_b.reshape(-1, 1)
    assert np.abs(wrong - ref).max() > 0.1 * np.abs(ref).max()


def test_mx_load_is_not_trusted_with_q4_k(tmp_path):
    """Documents why GGUF never goes through mx.load: MLX 0.32 mis-dequantizes Q4_K (or refuses it)."""
    t, ref = _read_back(tmp_path, T.Q4_K)
    try:
        loaded = mx.load(str(tmp_path / "Q4_K.gguf"))
    except Exception as exc:  # a later MLX may refuse the type instead
        pytest.skip(f"mx.load refuses Q4_K ({type(exc).__name__})")
    arrays, conv = convert_tensor(t.name, t.tensor_type, t.data, ref.shape, quantize=True)
    np.testing.assert_allclose(_mlx_values(arrays, conv), ref, rtol=1e-6, atol=1e-8)
    w = loaded["w"]
    theirs = np.array(w.astype(mx.float32)).reshape(ref.shape)
    assert np.abs(theirs - ref).max() > 1e-3 * np.abs(ref).max()
