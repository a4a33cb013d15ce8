"""Language-model jobs: the units the GUI's engine thread and the CLI both run.

Models load through the Workspace's one cache (engine.runtime), shared with image models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.core import paths
from engine.core.errors import UserError
from engine.core.fileio import check_output_dir
from engine.llm.bench import LMBenchResult, LMBenchSettings, TokenTick, benchmark_language_model
from engine.llm.detect import DEFAULT_TEXT, display_name, resolve_lm_spec
from engine.llm.generate import GenerationResult, GenerationSettings, generate_text
from engine.llm.loader import LanguageModelCard, load_language_model
from engine.llm.methods import (
    DEFAULT_SEQUENCE_LENGTH,
    DWQ_LEARNING_RATE,
    DWQ_STEPS,
    LMMethodResult,
    quantize_lm_with_method,
)
from engine.llm.perplexity import DEFAULT_CONTEXT, PerplexityResult, perplexity, read_text
from engine.llm.quantize import LMQuantizeResult, quantize_language_model, recipe_label, resolve_recipe
from engine.llm.sensitivity import DEFAULT_CANDIDATES, SensitivityReport, measure_sensitivity
from engine.measure.results import RunRecord
from engine.runtime import JobContext, Workspace


def _env() -> dict:
    from engine.measure.environment import environment

    return environment()


def default_lm_variant_path(name: str, recipe: str) -> Path:
    return paths.variants_dir() / f"{name}-{recipe}"


@dataclass(frozen=True)
class LoadLanguageModelJob:
    model: str
    title: str = "Load language model"

    def run(self, ctx: JobContext, ws: Workspace) -> LanguageModelCard:
        lm = ws.language_model(self.model, ctx.progress)
        ctx.progress(1.0, f"loaded {lm.name}")
        return lm.card


@dataclass(frozen=True)
class QuantizeLanguageModelJob:
    model: str
    recipe: str
    out: str | None = None
    group_size: int | None = None
    store: bool = True
    overwrite: bool = False  # replace a folder this app wrote at ``out``
    title: str = "Quantize language model"

    def run(self, ctx: JobContext, ws: Workspace) -> LMQuantizeResult:
        recipe = resolve_recipe(self.recipe, self.group_size)
        src = ws.language_model(self.model)
        label = recipe_label(recipe)
        out = Path(self.out).expanduser() if self.out else default_lm_variant_path(src.name.replace("/", "--"), label)
        ctx.progress(0.0, f"quantizing {src.name} to {label}")
        result = quantize_language_model(
            src.path,
            recipe,
            out,
            self.group_size,
            ctx.scaled(0.0, 0.95),
            ctx.should_stop,
            overwrite=self.overwrite or not self.out,  # the app's own default folder is the app's to replace
        )
        ws.forget(str(out))
        if self.store:
            c, s = result.card, result.source
            ws.store.add(
                RunRecord(
                    kind="quantize",
                    model_name=c.name,
                    model_path=c.path,
                    model_hash=c.fingerprint,
                    recipe=result.recipe,
                    metrics={
                        "seconds": result.seconds,
                        "size_on_disk_bytes": float(c.size_on_disk or 0),
                        "source_size_on_disk_bytes": float(s.size_on_disk or 0),
                        "compression_ratio": (s.size_on_disk or 0) / (c.size_on_disk or 1),
                        "bits_per_weight": c.bits_per_weight,
                        "params": float(c.params),
                    },
                    settings={"recipe": self.recipe, "group_size": self.group_size, "source": s.path},
                )
            )
        ctx.progress(1.0, f"saved {result.path}")
        return result


@dataclass(frozen=True)
class PerplexityOutcome:
    results: tuple[PerplexityResult, ...]
    records: tuple[RunRecord, ...]


@dataclass(frozen=True)
class PerplexityJob:
    """Perplexity of one or more variants on one text file (the first is the baseline for deltas)."""

    models: tuple[str, ...]
    text: str | None = None  # None: the shipped held-out Moby-Dick excerpt
    context: int = DEFAULT_CONTEXT
    max_tokens: int | None = None
    store: bool = True
    title: str = "Perplexity"

    def run(self, ctx: JobContext, ws: Workspace) -> PerplexityOutcome:
        text_path = Path(self.text).expanduser() if self.text else DEFAULT_TEXT
        text = read_text(text_path)
        results, records = [], []
        n = len(self.models)
        for i, spec in enumerate(self.models):
            ctx.check()
            lm = ws.language_model(spec)
            ids = np.array(lm.encode(text), dtype=np.int32)
            if self.max_tokens:
                ids = ids[: self.max_tokens]
            r = perplexity(
                lm,
                ids,
                self.context,
                text_path.name,
                progress=ctx.scaled(i / n, (i + 1) / n, f"{lm.name}: "),
                should_stop=ctx.should_stop,
            )
            results.append(r)
            if self.store:
                records.append(
                    ws.store.add(
                        RunRecord(
                            kind="evaluate",
                            model_name=lm.name,
                            model_path=lm.path,
                            model_hash=lm.fingerprint,
                            recipe=lm.recipe_name,
                            dataset=text_path.name,
                            metrics=r.metrics(),
                            settings={
                                "text": str(text_path),
                                "context": self.context,
                                "max_tokens": self.max_tokens,
                                "bos": r.bos,
                            },
                            environment=_env(),
                        )
                    )
                )
        return PerplexityOutcome(tuple(results), tuple(records))


@dataclass(frozen=True)
class GenerateOutcome:
    results: tuple[GenerationResult, ...]


@dataclass(frozen=True)
class GenerateJob:
    """Stream text from one model, or from several in turn with the same prompt and seed.

    Partial payloads are :class:`TextChunk` with ``column`` = the model's index.
    """

    models: tuple[str, ...]
    prompt: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    title: str = "Generate"

    def run(self, ctx: JobContext, ws: Workspace) -> GenerateOutcome:
        self.settings.validate()
        out = []
        for i, spec in enumerate(self.models):
            ctx.check()
            lm = ws.language_model(spec)
            ctx.progress(i / len(self.models), f"generating with {lm.name}")
            out.append(generate_text(lm, self.prompt, self.settings, ctx.partial, ctx.should_stop, column=i))
            if out[-1].finish_reason == "stopped":
                break
        ctx.progress(1.0, "done")
        return GenerateOutcome(tuple(out))


@dataclass(frozen=True)
class LMBenchmarkOutcome:
    result: LMBenchResult
    record: RunRecord | None


@dataclass(frozen=True)
class LMBenchmarkJob:
    """Partial payloads are :class:`TokenTick` (one per generated token of the measured runs)."""

    model: str
    settings: LMBenchSettings = field(default_factory=LMBenchSettings)
    cold_load: bool = True
    store: bool = True
    title: str = "Benchmark language model"

    def run(self, ctx: JobContext, ws: Workspace) -> LMBenchmarkOutcome:
        self.settings.validate()
        load_time = None
        if self.cold_load:
            ws.forget(self.model)
            t0 = time.perf_counter()
            lm = ws.language_model(self.model)
            load_time = time.perf_counter() - t0
        else:
            lm = ws.language_model(self.model)

        def on_tick(tick: TokenTick) -> None:
            ctx.partial(tick)

        result = benchmark_language_model(lm, self.settings, load_time, on_tick, ctx.progress, ctx.should_stop)
        record = None
        if self.store:
            record = ws.store.add(
                RunRecord(
                    kind="benchmark",
                    model_name=lm.name,
                    model_path=lm.path,
                    model_hash=lm.fingerprint,
                    recipe=lm.recipe_name,
                    metrics=result.summary(),
                    settings={
                        "prompt_tokens": self.settings.prompt_tokens,
                        "gen_tokens": self.settings.gen_tokens,
                        "runs": self.settings.runs,
                        "warmup": self.settings.warmup,
                    },
                    environment=result.environment,
                    # Per run: milliseconds per generated token as the latency, MLX peak memory, process RSS.
                    samples=tuple(
                        (s.run, 1000.0 / s.generation_tps if s.generation_tps else 0.0, s.peak_memory_bytes, s.rss)
                        for s in result.samples
                    ),
                )
            )
        return LMBenchmarkOutcome(result, record)


@dataclass(frozen=True)
class SensitivityJob:
    """Per-layer KL sensitivity on a text sample; with ``budget_bits`` and ``out`` it also quantizes."""

    model: str
    text: str | None = None
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    group_size: int = 64
    sample_tokens: int = 512
    layers: tuple[str, ...] | None = None
    budget_bits: float | None = None
    out: str | None = None
    overwrite: bool = False
    title: str = "Sensitivity"

    def run(self, ctx: JobContext, ws: Workspace) -> tuple[SensitivityReport, LMQuantizeResult | None]:
        if self.budget_bits is not None and self.out:
            check_output_dir(self.out, overwrite=self.overwrite)
        text = read_text(Path(self.text).expanduser() if self.text else DEFAULT_TEXT)
        # A private copy: the analysis swaps layers in and out of the model.
        lm = load_language_model(resolve_lm_spec(self.model))
        ids = np.array(lm.encode(text), dtype=np.int32)
        share = 0.8 if self.budget_bits and self.out else 1.0
        report = measure_sensitivity(
            lm,
            ids,
            self.candidates,
            self.group_size,
            self.sample_tokens,
            layers=self.layers,
            progress=ctx.scaled(0.0, share),
            should_stop=ctx.should_stop,
        )
        result = None
        if self.budget_bits is not None and self.out:
            if self.layers:
                raise UserError("a budget search needs every layer measured; leave out the layer patterns")
            recipe = report.recipe(self.budget_bits, self.group_size)
            result = quantize_language_model(
                lm.path, recipe, self.out, None, ctx.scaled(share, 1.0), ctx.should_stop, overwrite=self.overwrite
            )
            ws.forget(self.out)
        ctx.progress(1.0, "done")
        return report, result


@dataclass(frozen=True)
class QuantizeLMMethodJob:
    """A language model quantized by mlx-lm's GPTQ, AWQ or DWQ on calibration text (a job, like QuantizeJob)."""

    model: str
    method: str
    text: str  # calibration text file (any UTF-8 text)
    out: str | None  # None: the app's variants folder (replaced if the app wrote it)
    bits: int = 4
    group_size: int = 64
    samples: int | None = None  # None: the method's default (quantize_lm_with_method)
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    store: bool = True
    overwrite: bool = False
    dwq_steps: int = DWQ_STEPS
    dwq_learning_rate: float = DWQ_LEARNING_RATE
    title: str = "Quantize language model (calibrated)"

    def run(self, ctx, ws) -> LMMethodResult:
        from engine.measure.results import RunRecord

        ctx.progress(0.0, f"{self.method}: quantizing {self.model} to int{self.bits}/g{self.group_size}")
        out = self.out
        if out is None:  # named as the loader names it, without loading it here (the method loads its own copy)
            spec = resolve_lm_spec(self.model)
            name = display_name(Path(spec)) if Path(spec).exists() else spec
            out = default_lm_variant_path(name.replace("/", "--"), f"int{self.bits}-g{self.group_size}-{self.method}")
        result = quantize_lm_with_method(
            self.model, self.method, out, self.text, self.bits, self.group_size, self.samples,
            self.sequence_length, ctx.scaled(0.0, 0.95), ctx.should_stop, self.overwrite or self.out is None,
            self.dwq_steps, self.dwq_learning_rate,
        )  # fmt: skip
        ws.forget(result.path)
        if self.store:
            ws.store.add(
                RunRecord(
                    kind="quantize",
                    model_name=Path(result.path).name,
                    model_path=result.path,
                    model_hash="",
                    recipe=f"int{self.bits}-g{self.group_size}",
                    metrics={
                        "seconds": result.seconds,
                        "quantization_seconds": result.seconds,
                        "quantization_peak_memory_bytes": float(result.peak_memory_bytes),
                        "bits_per_weight": result.bits_per_weight,
                    },
                    settings={
                        "method": {
                            "name": self.method,
                            "calibration": result.calib_name,
                            "calibration_size": result.calib_samples,
                            "sequence_length": self.sequence_length,
                        },
                        "source": self.model,
                    },
                )
            )
        ctx.progress(1.0, f"saved {result.path}")
        return result
