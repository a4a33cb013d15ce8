"""mlx-lm's calibrated quantizers (GPTQ, AWQ) as a cancellable job writing an mlx-lm folder.

mlx-lm 0.32 ships them as scripts whose ``main()`` downloads its calibration text; their
library functions (``mlx_lm.quant.gptq.gptq_quantize``, ``mlx_lm.quant.awq.awq_quantize``
with ``AWQ_MODEL_CONFIGS`` and ``update_config``) are called here unchanged, on token
chunks of any UTF-8 text file. Their loops iterate through ``tqdm``; for the duration of
the call that name is bound to an iterator that reports progress and raises Cancelled
when the job is stopped, so the job stops between layers (GPTQ, AWQ blocks) or
calibration batches. Limits of mlx-lm's own code: its GPTQ packs 2, 4 or 8 bits only;
AWQ knows the architectures in ``AWQ_MODEL_CONFIGS`` (llama, qwen, mistral, gemma3 ...).

DWQ (``mlx_lm.quant.dwq.dwq_quantize``, distilled weight quantization): the model is
rounded to nearest (the same RTN as ``engine.llm.quantize``), then its quantization
scales and biases are trained with Adam so that its next-token distribution matches the
float model's (KL at temperature 2). The float model's logits are computed on the fly,
as mlx-lm's script does without ``--target-dir`` (``compute_dwq_targets`` writes targets
to disk; not needed for models that fit twice in memory), so nothing but the output
folder is written. Its training loop runs one pass over the data it is given: the
calibration chunks are repeated up to ``dwq_steps`` batches of ``DWQ_BATCH_SIZE``. Cost
on the default language model (2 shared CPU cores): about 2 s per step of 4 chunks of 128
tokens, so the default 100 steps take about 3 minutes (twice that with 256-token chunks).
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
from mlx.utils import tree_flatten

from engine.core.errors import Cancelled, UserError
from engine.core.fileio import check_output_dir
from engine.core.memory_guard import QUANTIZE_FACTOR
from engine.llm.detect import resolve_lm_spec
from engine.llm.loader import LanguageModel, guard_memory, language_model_card, load_language_model
from engine.llm.quantize import save_language_model

LM_METHOD_HELP = {
    "gptq": "mlx-lm's GPTQ: second-order rounding with error feedback (2, 4 or 8 bits)",
    "awq": "mlx-lm's AWQ: activation-aware scaling and clipping (llama, mistral, qwen, gemma3, deepseek_v2)",
    "dwq": "mlx-lm's DWQ: RTN, then scales and biases distilled from the float model (minutes)",
}
LM_METHODS = tuple(LM_METHOD_HELP)
DEFAULT_SAMPLES = 32
DEFAULT_SEQUENCE_LENGTH = 256
DWQ_STEPS = 100  # Adam steps (batches); mlx-lm's script runs one pass over 2,048 samples
DWQ_BATCH_SIZE = 4
DWQ_LEARNING_RATE = 1e-4  # mlx-lm's script: 1e-6 (large models, bfloat16); 1e-3 made int4 worse here
DWQ_MEMORY_FACTOR = QUANTIZE_FACTOR + 2.0  # float teacher + student + gradients and Adam moments


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
    card: object = None  # the saved model's LanguageModelCard (what the Quantize tab lists)
    source: object = None  # the float model's LanguageModelCard

    @property
    def recipe(self) -> str:
        return f"int{self.bits}-g{self.group_size}@{self.method}"


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
        set_description = set_postfix = lambda self, *a, **k: None  # noqa: E731

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
    samples: int | None = None,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    overwrite: bool = False,
    dwq_steps: int = DWQ_STEPS,
    dwq_learning_rate: float = DWQ_LEARNING_RATE,
) -> LMMethodResult:
    """Quantize a language model with mlx-lm's GPTQ, AWQ or DWQ on calibration text; save an mlx-lm folder.

    ``samples`` chunks of ``sequence_length`` tokens calibrate (None: ``DEFAULT_SAMPLES`` for GPTQ and
    AWQ; for DWQ one chunk per training row, ``dwq_steps x DWQ_BATCH_SIZE``, so that no chunk is seen
    twice when the text has that many: repeating a few chunks overfits them, see the README).

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
        guard_memory(src_path, DWQ_MEMORY_FACTOR if method == "dwq" else QUANTIZE_FACTOR, "quantize")
    lm = load_language_model(source)
    source_card = language_model_card(lm)
    config = copy.deepcopy(lm.config)
    if samples is None:
        samples = dwq_steps * DWQ_BATCH_SIZE if method == "dwq" else DEFAULT_SAMPLES
    data = calibration_tokens(lm, text, samples, sequence_length)
    report = progress or (lambda f, m: None)
    if method == "gptq":
        from mlx_lm.quant import gptq as lib

        with _reporting_tqdm(lib, report, should_stop), contextlib.redirect_stdout(io.StringIO()):
            _, qconfig = lib.gptq_quantize(lm.model, data, bits, group_size, bits, group_size)
        config["quantization"] = qconfig
    elif method == "dwq":
        lm, config = _dwq(lm, data, bits, group_size, dwq_steps, dwq_learning_rate, report, should_stop)
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
    if method == "dwq":
        config["mqs"].update({"steps": dwq_steps, "batch_size": DWQ_BATCH_SIZE, "learning_rate": dwq_learning_rate})
    path = save_language_model(lm, config, out, overwrite=overwrite)
    seconds = time.perf_counter() - t0
    saved = LanguageModel(path.name, str(path), "folder", lm.model, lm.tokenizer, config)
    card = language_model_card(saved)
    return LMMethodResult(str(path), method, bits, group_size, Path(text).name, int(data.shape[0]), sequence_length,
                          seconds, int(mx.get_peak_memory()), card.bits_per_weight, card, source_card)  # fmt: skip


def _dwq(lm, data, bits, group_size, steps, learning_rate, report, should_stop) -> tuple[LanguageModel, dict]:
    """mlx-lm's ``dwq_quantize`` on an RTN copy of ``lm`` with ``lm`` as teacher; returns (student, config)."""
    import mlx.optimizers as optim
    from mlx_lm.quant import dwq as lib

    from engine.llm.quantize import quantize_in_place, resolve_recipe

    if steps < 1:
        raise UserError(f"DWQ needs at least one step, not {steps}")
    teacher = lm.model
    teacher.eval()
    student = LanguageModel(lm.name, lm.path, lm.source, copy.deepcopy(teacher), lm.tokenizer, lm.config)
    config = quantize_in_place(student, resolve_recipe(f"int{bits}", group_size), group_size)
    rows = [(row, 0) for row in np.asarray(data).tolist()]
    batch = min(DWQ_BATCH_SIZE, len(rows))
    train = (rows * (steps * batch // len(rows) + 1))[: steps * batch]
    valid = rows[:batch]  # mlx-lm logs a validation loss; one batch keeps that cheap

    def targets(x, _i, split):
        return mx.stop_gradient(teacher(x))

    def training_only(fraction, message):
        if not message.startswith("Computing"):  # the validation passes
            report(fraction, message.replace("quantizing", "DWQ step"))

    dtype = next(v.dtype for _, v in tree_flatten(student.model.parameters()) if mx.issubdtype(v.dtype, mx.floating))
    opt = optim.Adam(learning_rate=learning_rate, bias_correction=True)
    with _reporting_tqdm(lib, training_only, should_stop), contextlib.redirect_stdout(io.StringIO()):
        lib.dwq_quantize(student.model, targets, opt, train, valid, batch, data.shape[1], seed=0, dtype=dtype)
    student.model.eval()
    return student, config
