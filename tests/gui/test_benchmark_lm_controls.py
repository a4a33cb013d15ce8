"""Benchmarking a language model shows controls named for what they are (issue 15)."""

from __future__ import annotations

from engine.core.paths import DEFAULT_LM_DIR, DEFAULT_MODEL_DIR


def test_controls_follow_the_model_kind(qtbot, window):
    b = window.benchmark_tab
    window.tabs.setCurrentWidget(b)
    b.set_model(str(DEFAULT_LM_DIR.resolve()))
    assert b.prompt_tokens.isVisible() and b.gen_tokens.isVisible() and b.lm_runs.isVisible()
    assert not b.batch.isVisible() and not b.iters.isVisible()
    assert b.eval_btn.text() == "Perplexity"
    b.prompt_tokens.setValue(16)
    b.gen_tokens.setValue(8)
    b.lm_runs.setValue(2)
    b.start_benchmark()
    qtbot.waitUntil(lambda: not b.busy() and not window.engine.busy(), timeout=60000)
    row = b.table_model.row_at(b.table_model.rowCount() - 1)
    assert row["runs"] == 2 and row["prompt_tokens"] == 16 and row["gen_tokens"] == 8, row
    b.set_model(str(DEFAULT_MODEL_DIR.resolve()))
    assert b.batch.isVisible() and b.iters.isVisible() and not b.prompt_tokens.isVisible()
    assert b.eval_btn.text() == "Evaluate Accuracy"
