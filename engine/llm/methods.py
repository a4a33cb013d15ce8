"""mlx-lm's calibrated quantizers (GPTQ, AWQ) as a cancellable job writing an mlx-lm folder.

mlx-lm 0.32 ships them as scripts whose ``main()`` downloads its calibration text; their
library functions (``mlx_lm.quant.gptq.gptq_quantize``, ``mlx_lm.quant.awq.awq_quantize``
with ``AWQ_MODEL_CONFIGS`` and ``update_config``) are called here unchanged, on token
chunks of any UTF-8 text file. Their loops iterate through ``tqdm``; for the duration of
the call that name is bound to an iterator that reports progress and raises Cancelled
when the job is stopped, so the job stops between layers (GPTQ, AWQ blocks) or
calibration batches. Limits of mlx-lm's own code: its GPTQ packs 2, 4 or 8 bits only;
AWQ knows the architectures in ``AWQ_MODEL_CONFIGS`` (llama, qwen, mistral, gemma3 ...).
DWQ (distillation with a training loop and targets on disk) is not wrapped yet.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.core.fileio import check_output_dir
from engine.core.memory_guard import QUANTIZE_FACTOR
from engine.llm.detect import resolve_lm_spec
from engine.llm.loader import LanguageModel, guard_memory, language_model_card, load_language_model
from engine.llm.quantize import save_language_model

LM_METHODS = ("gptq", "awq")
DEFAULT_SAMPLES = 32
DEFAULT_SEQUENCE_LENGTH = 256


@dataclass(frozen=True)
class LMMethodResult:
    path: str
    method: str
    bits: int
    group_size: int
    calib_name: str
    calib_samples: int
    sequence_length: int
    seconds: float
    peak_memory_bytes: int
    bits_per_weight: float


def calibration_tokens(lm: LanguageModel, text_path: str | Path, samples: int, length: int, seed: int = 0) -> mx.array:
    """``samples`` random non-overlapping chunks of ``length`` tokens of a UTF-8 text file, shape (samples, length).

    Raises:
        UserError: unreadable file or too little text for one chunk.
    """
    p = Path(text_path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read calibration text ({exc.__class__.__name__})", p) from None
    ids = np.asarray(lm.encode(text), dtype=np.int32)
    n = ids.size // length
    if n < 1:
        raise UserError(f"calibration text has {ids.size} tokens, fewer than one chunk of {length}", p)
    chunks = ids[: n * length].reshape(n, length)
    pick = np.random.default_rng(seed).permutation(n)[: min(samples, n)]
    return mx.array(chunks[np.sort(pick)])


@contextlib.contextmanager
def _reporting_tqdm(module, progress, should_stop) -> Iterator[None]:
    """Bind ``module.tqdm`` to an iterator with progress and cancellation for the block's duration."""
    original = module.tqdm

    class Reporting:
        write = staticmethod(lambda *a, **k: None)

        def __init__(self, iterable, total=None, desc="", **_):
            self.iterable, self.desc = iterable, desc or "quantizing"
            self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)

        def __iter__(self):
            for i, item in enumerate(self.iterable):
                if should_stop is not None and should_stop():
                    raise Cancelled()
                yield item
                if progress is not None and self.total:
                    progress(min(1.0, (i + 1) / self.total), f"{self.desc}: {i + 1}/{self.total}")

    module.tqdm = Reporting
    try:
        yield
    finally:
        module.tqdm = original


def quantize_lm_with_method(
    source: str | Path,
    method: str,
    out: str | Path,
    text: str | Path,
    bits: int = 4,
    group_size: int = 64,
    samples: int = DEFAULT_SAMPLES,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    overwrite: bool = False,
) -> LMMethodResult:
    """Quantize a language model with mlx-lm's GPTQ or AWQ on calibration text; save an mlx-lm folder.

    Raises:
        UserError: unknown method, unsupported bits/architecture, bad text, existing output.
        Cancelled: should_stop() turned true (nothing is written).
    """
    if method not in LM_METHODS:
        raise UserError(f"unknown language-model method '{method}' (use one of {', '.join(LM_METHODS)})")
    if method == "gptq" and bits not in (2, 4, 8):
        raise UserError(f"mlx-lm's GPTQ packs 2, 4 or 8 bits, not {bits}")
    t0 = time.perf_counter()
    mx.reset_peak_memory()
    src_path = Path(resolve_lm_spec(source))
    check_output_dir(out, overwrite=overwrite, inputs=(src_path,) if src_path.exists() else ())
    if src_path.exists():
        guard_memory(src_path, QUANTIZE_FACTOR, "quantize")
    lm = load_language_model(source)
    config = copy.deepcopy(lm.config)
    data = calibration_tokens(lm, text, samples, sequence_length)
    report = progress or (lambda f, m: None)
    if method == "gptq":
        from mlx_lm.quant import gptq as lib

        with _reporting_tqdm(lib, report, should_stop), contextlib.redirect_stdout(io.StringIO()):
            _, qconfig = lib.gptq_quantize(lm.model, data, bits, group_size, bits, group_size)
        config["quantization"] = qconfig
    else:
        from mlx_lm.quant import awq as lib

        awq_config = lib.AWQ_MODEL_CONFIGS.get(config.get("model_type"))
        if awq_config is None:
            raise UserError(f"mlx-lm's AWQ does not support '{config.get('model_type')}' models", src_path)
        with _reporting_tqdm(lib, report, should_stop), contextlib.redirect_stdout(io.StringIO()):
            lib.awq_quantize(lm.model, data, awq_config, group_size, bits, group_size, bits)
        config = lib.update_config(lm.model, config)
        config["quantization"].update({"group_size": group_size, "bits": bits})
    if should_stop is not None and should_stop():
        raise Cancelled()
    mx.eval(lm.model.parameters())
    config["quantization_config"] = config["quantization"]
    config["mqs"] = {
        "recipe": f"int{bits}-g{group_size}-{method}",
        "method": method,
        "calibration": Path(text).name,
        "calibration_samples": int(data.shape[0]),
        "sequence_length": sequence_length,
        "parent": lm.path,
    }
    path = save_language_model(lm, config, out, overwrite=overwrite)
    seconds = time.perf_counter() - t0
    saved = LanguageModel(path.name, str(path), "folder", lm.model, lm.tokenizer, config)
    bpw = language_model_card(saved).bits_per_weight
    return LMMethodResult(str(path), method, bits, group_size, Path(text).name, int(data.shape[0]), sequence_length,
                          seconds, int(mx.get_peak_memory()), bpw)  # fmt: skip
