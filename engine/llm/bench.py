"""Speed and memory of a language model: prompt tokens/s, generation tokens/s,
time to first token and peak memory, measured with mlx-lm's ``generate_step``.

Every run feeds the same prompt of exactly ``prompt_tokens`` tokens (taken from
a fixed text) and generates exactly ``gen_tokens`` tokens greedily, ignoring
end-of-sequence, so variants of one model do identical work.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.llm.loader import LanguageModel


@dataclass(frozen=True)
class LMBenchSettings:
    prompt_tokens: int = 128
    gen_tokens: int = 64
    runs: int = 3
    warmup: int = 1

    def validate(self) -> None:
        for name in ("prompt_tokens", "gen_tokens", "runs"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', ' ')} must be at least 1, not {getattr(self, name)}")
        if self.warmup < 0:
            raise UserError(f"warmup must be 0 or more, not {self.warmup}")


@dataclass(frozen=True)
class TokenTick:
    """One generated token of a measured run, for live plots."""

    run: int
    token: int
    elapsed_s: float
    tokens_per_s: float


@dataclass(frozen=True)
class LMRunSample:
    run: int
    ttft_ms: float
    prompt_tps: float
    generation_tps: float
    peak_memory_bytes: int
    rss: int


@dataclass(frozen=True)
class LMBenchResult:
    model_name: str
    recipe: str
    settings: LMBenchSettings
    samples: tuple[LMRunSample, ...]
    load_time_s: float | None
    size_on_disk: int | None
    bits_per_weight: float
    params: int
    fingerprint: str
    environment: dict = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        s = self.samples
        gen = [x.generation_tps for x in s]
        out = {
            "prompt_tps": statistics.median(x.prompt_tps for x in s),
            "generation_tps": statistics.median(gen),
            "generation_tps_min": min(gen),
            "generation_tps_max": max(gen),
            "ttft_ms": statistics.median(x.ttft_ms for x in s),
            "peak_memory_bytes": float(max(x.peak_memory_bytes for x in s)),
            "prompt_tokens": float(self.settings.prompt_tokens),
            "gen_tokens": float(self.settings.gen_tokens),
            "runs": float(len(s)),
            "bits_per_weight": self.bits_per_weight,
            "params": float(self.params),
        }
        if self.size_on_disk is not None:
            out["size_on_disk_bytes"] = float(self.size_on_disk)
        if self.load_time_s is not None:
            out["load_time_s"] = self.load_time_s
        return out


def benchmark_prompt(lm: LanguageModel, n_tokens: int) -> np.ndarray:
    """``n_tokens`` token ids from the shipped held-out text, repeated if the text is short."""
    from engine.llm.detect import DEFAULT_TEXT

    ids = np.array(lm.encode(DEFAULT_TEXT.read_text(encoding="utf-8")[:20000]), dtype=np.int32)
    reps = -(-n_tokens // max(1, len(ids)))
    return np.tile(ids, reps)[:n_tokens]


def timed_generation(
    lm: LanguageModel, prompt: np.ndarray, n: int, on_token: Callable[[int, float], None] | None = None
) -> tuple[float, float, float, int]:
    """(ttft_s, prompt_tps, generation_tps, peak_bytes) of one greedy run of exactly n tokens."""
    from mlx_lm.generate import generate_step

    mx.reset_peak_memory()
    t0 = time.perf_counter()
    t_first = t0
    count = 0
    for count, (_token, _) in enumerate(generate_step(mx.array(prompt), lm.model, max_tokens=n), start=1):
        now = time.perf_counter()
        if count == 1:
            t_first = now
        if on_token:
            on_token(count, now - t0)
    t_end = time.perf_counter()
    ttft = t_first - t0
    gen_tps = (count - 1) / (t_end - t_first) if count > 1 and t_end > t_first else 0.0
    return ttft, len(prompt) / ttft if ttft > 0 else 0.0, gen_tps, int(mx.get_peak_memory())


def benchmark_language_model(
    lm: LanguageModel,
    settings: LMBenchSettings,
    load_time_s: float | None = None,
    on_tick: Callable[[TokenTick], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LMBenchResult:
    """Warm-up runs, then ``settings.runs`` measured runs; medians in ``summary()``."""
    from engine.measure.environment import environment, rss_bytes

    settings.validate()
    prompt = benchmark_prompt(lm, settings.prompt_tokens)
    total = settings.warmup + settings.runs
    samples = []
    for i in range(total):
        if should_stop and should_stop():
            raise Cancelled()
        run = i - settings.warmup
        t_prev = [0.0]

        def on_token(k: int, elapsed: float, run=run, t_prev=t_prev) -> None:
            if should_stop and should_stop():
                raise Cancelled()
            if run >= 0 and on_tick:
                dt = elapsed - t_prev[0]
                on_tick(TokenTick(run, k, elapsed, 1.0 / dt if dt > 0 else 0.0))
            t_prev[0] = elapsed

        ttft, ptps, gtps, peak = timed_generation(lm, prompt, settings.gen_tokens, on_token)
        if run >= 0:
            samples.append(LMRunSample(run, 1000 * ttft, ptps, gtps, peak, rss_bytes()))
        if progress:
            label = "warm-up" if run < 0 else f"run {run + 1}/{settings.runs}"
            progress((i + 1) / total, f"{label}: {gtps:.1f} tokens/s")
    card = lm.card
    return LMBenchResult(
        model_name=lm.name,
        recipe=lm.recipe_name,
        settings=settings,
        samples=tuple(samples),
        load_time_s=load_time_s,
        size_on_disk=card.size_on_disk if card else None,
        bits_per_weight=card.bits_per_weight if card else 0.0,
        params=card.params if card else 0,
        fingerprint=lm.fingerprint,
        environment=environment(),
    )
