"""Language models in the shared tabs: which job to run for an entry, how to show its card."""

from __future__ import annotations

from PySide6.QtWidgets import QInputDialog, QMenu

from engine.core.errors import UserError
from engine.core.units import human_bytes
from engine.image.quant.formats import parse_spec
from engine.jobs.language import (
    LMBenchmarkJob,
    LoadLanguageModelJob,
    PerplexityJob,
    QuantizeLanguageModelJob,
    QuantizeLMMethodJob,
)
from engine.llm.bench import LMBenchSettings, TokenTick
from engine.llm.loader import LanguageModelCard
from engine.llm.quantize import MIXED_RECIPES
from gui.dialogs import open_file
from gui.state import AppState
from gui.widgets.table_model import Column, fmt_float

__all__ = [
    "TokenTick",
    "benchmark_job",
    "card_html",
    "is_language",
    "load_job",
    "method_job",
    "perplexity_job",
    "quantize_job",
]

LM_RECIPE_HELP = {
    "mixed_2_6": "mlx-lm mixed: 2-bit weights, 6-bit for v_proj/down_proj of some layers and lm_head (like llama.cpp Q*_K_M)",
    "mixed_3_4": "mlx-lm mixed: 3-bit weights, 4-bit for the sensitive layers",
    "mixed_3_6": "mlx-lm mixed: 3-bit weights, 6-bit for the sensitive layers",
    "mixed_4_6": "mlx-lm mixed: 4-bit weights, 6-bit for the sensitive layers",
}


# A language model's speed and memory, as the Benchmark tab and the text-generation view show them.
LM_SPEED_COLUMNS = [
    Column("prompt tok/s", lambda r: r.get("prompt_tps"), fmt_float(1), True),
    Column("gen tok/s", lambda r: r.get("generation_tps"), fmt_float(1), True),
    Column("first token ms", lambda r: r.get("ttft_ms"), fmt_float(1), True),
    Column("peak MLX mem", lambda r: r.get("peak_memory_bytes"), human_bytes, True),
]


def is_language(state: AppState, path: str | None) -> bool:
    entry = state.entry(path) if path else None
    return entry is not None and entry.kind == "language"


def load_job(path: str) -> LoadLanguageModelJob:
    return LoadLanguageModelJob(path)


def quantize_job(path: str, recipe: str, group_size: int | None) -> QuantizeLanguageModelJob:
    return QuantizeLanguageModelJob(path, recipe, None, group_size)


def method_job(path: str, recipe: str, group_size: int | None, method: str, text: str | None, chunks: int | None):
    """mlx-lm's GPTQ/AWQ/DWQ on ``text``; raises UserError for what they cannot do (said before anything runs)."""
    if not text:
        raise UserError(f"{method} needs calibration text: give a UTF-8 text file in the calibration field")
    try:
        spec = parse_spec(recipe, group_size)
    except UserError:
        spec = None
    if spec is None or spec.mode != "affine":
        raise UserError(f"{method} takes an integer recipe (int2 ... int8), not {recipe}")
    return QuantizeLMMethodJob(path, method, text, None, spec.bits, spec.group_size, chunks)


def benchmark_job(path: str, runs: int, warmup: int, prompt_tokens: int = 128, gen_tokens: int = 64) -> LMBenchmarkJob:
    return LMBenchmarkJob(path, LMBenchSettings(prompt_tokens, gen_tokens, max(1, runs), warmup))


def perplexity_job(path: str) -> PerplexityJob:
    """Perplexity on the shipped held-out text with the default 512-token windows."""
    return PerplexityJob((path,))


def mixed_recipes() -> tuple[str, ...]:
    return MIXED_RECIPES


def card_html(card: LanguageModelCard) -> str:
    """The Models tab's summary of a language model."""
    q = card.quantization
    quant = "float" if not q else f"{q.get('mode', 'affine')} {q.get('bits')}-bit, group {q.get('group_size')}"
    return (
        f"<b>{card.name}</b> — language model, {card.architecture} ({card.model_type}), <b>{card.recipe}</b><br>"
        f"{card.num_layers} transformer layers · hidden {card.hidden_size} · vocabulary {card.vocab_size:,} · "
        f"context {card.context_length or '-'}<br>"
        f"{card.params:,} parameters · {human_bytes(card.bytes)} in memory · {human_bytes(card.size_on_disk)} on disk · "
        f"{card.bits_per_weight:.2f} bits/weight · {quant} · dtypes {', '.join(card.dtypes)}<br>"
        f"<small>{card.source}: {card.path}</small>"
    )


def open_menu(tab) -> QMenu:
    """The Models tab's "Open Language Model" menu: a GGUF file, or a Hugging Face id (downloads)."""
    menu = QMenu(tab)
    menu.addAction("GGUF File…", lambda: open_gguf(tab))
    menu.addAction("Hugging Face Id…", lambda: open_hub(tab))
    return menu


def open_gguf(tab) -> None:
    path = open_file(tab, "Open GGUF model", "gguf", "GGUF (*.gguf);;All files (*)")
    if path:
        tab.open_path(path)


def open_hub(tab) -> None:
    repo, ok = QInputDialog.getText(tab, "Hugging Face model", "Repository id (e.g. mlx-community/SmolLM-135M-4bit):")
    repo = repo.strip()
    if not ok or not repo:
        return

    def loaded(card: LanguageModelCard) -> None:
        entry = tab.state.add(card.path)
        tab.state.set_card(card)
        if entry:
            tab.select(entry.path)

    tab.router.submit(load_job(repo), on_result=loaded)
