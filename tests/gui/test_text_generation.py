"""Language models in the GUI: listed on first launch, quantized from the Quantize tab,
streamed side by side in the Inference tab's text mode, stopped, and measured."""

from __future__ import annotations

from PySide6.QtCore import Qt

from engine.core import paths


def idle(window) -> bool:
    return not window.engine.busy() and window.router.pending() == 0


def test_default_lm_is_listed_and_its_card_loads(qtbot, window):
    lm_path = str(paths.DEFAULT_LM_DIR.resolve())
    entry = window.state.entry(lm_path)
    assert entry is not None and entry.kind == "language" and entry.name == "default-lm"
    window.models_tab.select(lm_path)
    qtbot.waitUntil(lambda: "language model" in window.models_tab.summary.text(), timeout=30000)
    text = window.models_tab.summary.text()
    assert "llama" in text and "32.00 bits/weight" in text
    names = [window.models_tab.layers.row_at(i).name for i in range(window.models_tab.layers.rowCount())]
    assert names[0] == "model.embed_tokens" and "model.layers.0.self_attn.q_proj" in names
    # Image combos of the Inference tab do not offer language models.
    combo = window.inference_tab.model_a
    assert lm_path not in [combo.itemData(i) for i in range(combo.count())]


def test_quantize_then_generate_side_by_side_stop_and_perplexity(qtbot, window, tmp_path):
    from engine.llm.generate import GenerationSettings, generate_text
    from engine.llm.loader import load_language_model
    from engine.llm.perplexity import perplexity

    lm_path = str(paths.DEFAULT_LM_DIR.resolve())
    q = window.quantize_tab
    q.set_source(lm_path)
    q.recipe.setCurrentText("int4")
    qtbot.mouseClick(q.run_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: q.variants.rowCount() == 1, timeout=60000)
    variant = q.variants.row_at(0)
    assert variant.recipe == "int4" and variant.card.kind == "language"
    qtbot.waitUntil(lambda: idle(window), timeout=10000)

    tg = window.inference_tab.text_generation
    assert tg.model_a.currentData() == lm_path
    assert tg.model_b.currentData() == window.state.entry(variant.path).path
    tg.prompt.setPlainText("The whale")
    tg.max_tokens.setValue(12)
    tg.temperature.setValue(0.7)
    tg.top_p.setValue(0.9)
    tg.seed.setValue(5)
    qtbot.mouseClick(tg.generate_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tg._job is None and idle(window), timeout=60000)
    settings = GenerationSettings(12, 0.7, 0.9, 5)
    for i, path in enumerate((lm_path, variant.path)):
        ref = generate_text(load_language_model(path), "The whale", settings)
        assert tg.outputs[i].toPlainText() == "The whale" + ref.text
        assert "tokens/s" in tg.speeds[i].text()
    assert window.minimumSizeHint().width() <= 1024, "long names and speed lines wrap, the window stays narrow"

    # Stop a long generation between tokens: the text so far stays.
    tg.max_tokens.setValue(5000)
    tg.model_b.setCurrentIndex(0)  # (none)
    qtbot.mouseClick(tg.generate_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(tg.outputs[0].toPlainText()) > len("The whale") + 5, timeout=30000)
    qtbot.mouseClick(tg.stop_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tg._job is None and idle(window), timeout=30000)
    assert tg.generate_btn.isEnabled() and not tg.stop_btn.isEnabled()
    streamed = tg.outputs[0].toPlainText()
    assert streamed.startswith("The whale") and len(streamed) < 20000

    # Perplexity of both variants on a small text, with deltas against the first.
    text = paths.RESOURCES / "data" / "moby_dick_heldout.txt"
    sample = tmp_path / "sample.txt"
    sample.write_text(text.read_text(encoding="utf-8")[:1500], encoding="utf-8")
    tg.model_b.setCurrentIndex(tg.model_b.findData(window.state.entry(variant.path).path))
    tg.text_path.setText(str(sample))
    tg.context.setValue(128)
    qtbot.mouseClick(tg.ppl_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tg.table_model.rowCount() == 2 and tg._job is None, timeout=60000)
    rows = {r["recipe"]: r for r in tg.table_model.rows}
    lm = load_language_model(lm_path)
    import numpy as np

    ref = perplexity(lm, np.array(lm.encode(sample.read_text(encoding="utf-8"))), 128)
    assert rows["fp32"]["perplexity"] == ref.perplexity and rows["fp32"]["delta"] == 0.0
    assert rows["int4"]["delta"] == rows["int4"]["perplexity"] - ref.perplexity
    assert window.last_error is None
