"""Streaming text generation through mlx-lm's own token loop.

``generate_text`` drives ``mlx_lm.stream_generate`` (so speed matches
``mlx_lm.generate``), hands out decoded text in chunks at most every
``chunk_interval`` seconds, and checks ``should_stop()`` between tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx

from engine.core.errors import UserError
from engine.llm.loader import LanguageModel


@dataclass(frozen=True)
class GenerationSettings:
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        if self.max_tokens < 1:
            raise UserError(f"max tokens must be at least 1, not {self.max_tokens}")
        if self.temperature < 0:
            raise UserError(f"temperature must be 0 or more, not {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top-p must be in (0, 1], not {self.top_p}")


@dataclass(frozen=True)
class TextChunk:
    """Newly decoded text of one stream; ``column`` tells side-by-side streams apart."""

    column: int
    text: str
    tokens: int
    tokens_per_s: float
    elapsed_s: float


@dataclass(frozen=True)
class GenerationResult:
    model_name: str
    recipe: str
    prompt: str
    text: str
    prompt_tokens: int
    generated_tokens: int
    prompt_tps: float
    generation_tps: float
    ttft_s: float
    peak_memory_bytes: int
    finish_reason: str  # "length", "stop" (end of sequence) or "stopped" (by the user)
    settings: GenerationSettings


def make_sampler(settings: GenerationSettings):
    from mlx_lm.sample_utils import make_sampler as mlx_lm_sampler

    top_p = settings.top_p if settings.top_p < 1.0 else 0.0
    return mlx_lm_sampler(temp=settings.temperature, top_p=top_p)


def generate_text(
    lm: LanguageModel,
    prompt: str,
    settings: GenerationSettings,
    on_chunk: Callable[[TextChunk], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    column: int = 0,
    chunk_interval: float = 0.05,
) -> GenerationResult:
    """Generate from ``prompt``; the random state is seeded so a seed gives the same text.

    Stopping between tokens is not an error: the result keeps the text so far with
    finish_reason "stopped".
    """
    from mlx_lm.generate import stream_generate

    settings.validate()
    if not prompt:
        raise UserError("the prompt is empty")
    mx.random.seed(settings.seed)
    sampler = make_sampler(settings)
    mx.reset_peak_memory()
    parts: list[str] = []
    pending: list[str] = []
    t0 = time.perf_counter()
    last_emit = t0
    ttft = 0.0
    finish = "length"
    response = None
    n = 0
    for response in stream_generate(lm.model, lm.tokenizer, prompt, max_tokens=settings.max_tokens, sampler=sampler):
        n += 1
        if n == 1:
            ttft = time.perf_counter() - t0
        parts.append(response.text)
        pending.append(response.text)
        if response.finish_reason:
            finish = response.finish_reason
        now = time.perf_counter()
        if on_chunk and (now - last_emit >= chunk_interval or response.finish_reason):
            on_chunk(TextChunk(column, "".join(pending), response.generation_tokens, response.generation_tps, now - t0))
            pending.clear()
            last_emit = now
        if should_stop and should_stop():
            finish = "stopped"
            break
    if on_chunk and pending:
        tps = response.generation_tps if response else 0.0
        on_chunk(TextChunk(column, "".join(pending), n, tps, time.perf_counter() - t0))
    return GenerationResult(
        model_name=lm.name,
        recipe=lm.recipe_name,
        prompt=prompt,
        text="".join(parts),
        prompt_tokens=response.prompt_tokens if response else 0,
        generated_tokens=response.generation_tokens if response else 0,
        prompt_tps=response.prompt_tps if response else 0.0,
        generation_tps=response.generation_tps if response else 0.0,
        ttft_s=ttft,
        peak_memory_bytes=int(mx.get_peak_memory()),
        finish_reason=finish,
        settings=settings,
    )
