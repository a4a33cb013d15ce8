"""GGUF files (llama.cpp, LM Studio) as mlx-lm models, read with llama.cpp's own gguf-py.

Never through ``mx.load``: MLX 0.32 raises on Q5_0 and silently mis-dequantizes Q4_K.
The steps, each in its own module:

1. ``gguf_header``: a pure-Python check of the header against the file size, before
   gguf-py memmaps the file (a corrupt length must give one line, not a crash);
2. ``gguf_arch``: the architecture's mlx-lm model type, config and tensor names, with its
   quirks (q/k un-permutation, Gemma's +1 norms, fused phi3 projections, tied output);
3. ``gguf_tensors``: each tensor in its own type -> float, exact MLX affine group-32, or
   requantized with its error recorded; the per-layer ``quantization`` config follows;
4. ``gguf_tokenizer``: the tokenizer from the file's metadata via transformers' converter.

The tensors stay memmapped until each is converted, so opening a file needs about the
size of the converted model, not several copies of it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.core.errors import UserError
from engine.llm.gguf_arch import (
    architecture,
    hf_name,
    is_norm,
    llama3_rope_scaling,
    mlx_lm_config,
    unpermute_rows,
)
from engine.llm.gguf_header import check_gguf_header
from engine.llm.gguf_tensors import GROUP, convert_tensor

__all__ = ["gguf_layer_rows", "load_gguf", "read_gguf", "unpermute_rows"]


class Metadata:
    """GGUF key/value metadata read on demand from a GGUFReader (values as Python objects)."""

    def __init__(self, reader):
        self._fields = reader.fields
        self._cache: dict = {}

    def __call__(self, key: str, default=None):
        if key not in self._cache:
            field = self._fields.get(key)
            self._cache[key] = default if field is None else field.contents()
        value = self._cache[key]
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return key in self._fields


def open_reader(path: Path):
    """gguf-py's GGUFReader on a file whose header passed ``check_gguf_header``."""
    from gguf import GGUFReader

    check_gguf_header(path)
    try:
        return GGUFReader(str(path))
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"not a readable GGUF file ({first})", path) from None


def read_gguf(path: Path, progress: Callable[[float, str], None] | None = None):
    """The weights of a GGUF as mlx-lm arrays, with the config and the per-tensor conversion record.

    Returns:
        (weights: dict name -> mx.array, config: dict, metadata: Metadata)

    Raises:
        UserError: corrupt header, unsupported architecture or tensor type, incomplete metadata.
    """
    reader = open_reader(path)
    meta = Metadata(reader)
    try:
        arch = architecture(meta("general.architecture"))
        names = {t.name for t in reader.tensors}
        embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
        if embd is None:
            raise UserError("the file has no token_embd.weight tensor")
        config = mlx_lm_config(arch, meta, names, int(embd.shape[-1]))
        freqs = next((t for t in reader.tensors if t.name == "rope_freqs.weight"), None)
        if freqs is not None and arch.model_type == "llama":
            config["rope_scaling"] = llama3_rope_scaling(
                freqs.data, config.get("rope_theta", 10000.0), config["head_dim"], config.get("max_position_embeddings")
            )
    except UserError as exc:
        raise UserError(str(exc).removeprefix(f"{path}: "), path) from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"GGUF metadata is malformed ({exc})", path) from None

    weights: dict[str, mx.array] = {}
    layers: dict[str, dict] = {}
    record: dict[str, dict] = {}
    for i, t in enumerate(reader.tensors):
        try:
            hf = hf_name(arch, t.name)
        except UserError as exc:
            raise UserError(str(exc), path) from None
        if hf is None:
            continue
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        quantizable = hf.endswith(".weight") and not is_norm(hf) and len(shape) == 2
        try:
            arrays, conv = convert_tensor(t.name, t.tensor_type, t.data, shape, quantizable)
        except NotImplementedError:
            raise UserError(
                f"tensor '{t.name}' has type {t.tensor_type.name}, which gguf-py cannot read", path
            ) from None
        if arch.norm_plus_one and is_norm(hf):
            arrays["weight"] = np.asarray(arrays["weight"], dtype=np.float32) - 1.0
        if arch.permuted_qk and (".q_proj." in hf or ".k_proj." in hf):
            heads = config["num_attention_heads"] if ".q_proj." in hf else config["num_key_value_heads"]
            arrays = {k: unpermute_rows(v, heads) for k, v in arrays.items()}
        base = hf.rsplit(".", 1)[0]
        for key, value in arrays.items():
            arr = mx.array(np.ascontiguousarray(value))
            weights[hf if key == "weight" else f"{base}.{key}"] = (
                arr.astype(mx.bfloat16) if conv.mlx_format == "bfloat16" else arr
            )
        if conv.bits is not None:
            layers[base] = {"group_size": GROUP, "bits": conv.bits, "mode": "affine"}
        record[hf] = {
            "gguf_name": t.name,
            "gguf_type": conv.gguf_type,
            "mlx_format": conv.mlx_format,
            "exact": conv.exact,
            "max_abs_error": conv.max_abs_error,
            "mean_abs_error": conv.mean_abs_error,
        }
        if progress:
            progress((i + 1) / len(reader.tensors), f"converted {t.name} ({conv.gguf_type} -> {conv.mlx_format})")
    if layers:
        bits = Counter(q["bits"] for q in layers.values()).most_common(1)[0][0]
        config["quantization"] = {"group_size": GROUP, "bits": bits, "mode": "affine", **layers}
    config["gguf"] = {"file": path.name, "architecture": arch.gguf_name, "tensors": record}
    for key, name in (("bos_token_id", "bos"), ("eos_token_id", "eos")):
        if (v := meta(f"tokenizer.ggml.{name}_token_id")) is not None:
            config[key] = int(v)
    return weights, config, meta


def load_gguf(path: Path, progress: Callable[[float, str], None] | None = None):
    """Read a GGUF file into (model, tokenizer wrapper, config), the model an mlx-lm model.

    Raises:
        UserError: anything wrong with the file, named in one line.
    """
    from mlx_lm.utils import _get_classes

    from engine.llm.gguf_tokenizer import gguf_tokenizer

    path = Path(path)
    weights, config, meta = read_gguf(path, progress)
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    if hasattr(model, "sanitize"):
        weights = model.sanitize(weights)
    if (q := config.get("quantization")) is not None:
        nn.quantize(
            model,
            group_size=q["group_size"],
            bits=q["bits"],
            class_predicate=lambda p, m: q.get(p, False) if hasattr(m, "to_quantized") else False,
        )
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise UserError(f"GGUF tensors do not fit a {config['model_type']} model ({exc})", path) from None
    model.eval()
    mx.eval(model.parameters())
    return model, gguf_tokenizer(path, meta, config), config


def gguf_layer_rows(rows, config: dict) -> list:
    """Model-card rows with each weight's GGUF type before its MLX format: ``Q4_K=int4/g32`` when the
    conversion was exact, ``Q6_K~int8/g32`` when requantized (``config["gguf"]["tensors"]`` holds
    the max and mean absolute error of those).
    """
    tensors = (config.get("gguf") or {}).get("tensors") or {}
    out = []
    for row in rows:
        rec = tensors.get(f"{row.name}.weight")
        if rec:
            row = dataclasses.replace(row, format=f"{rec['gguf_type']}{'=' if rec['exact'] else '~'}{row.format}")
        out.append(row)
    return out
