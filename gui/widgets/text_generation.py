"""Language models in the Inference tab: streaming generation of a float and a quantized
variant side by side (same prompt and seed), perplexity with deltas, and speed.

Every piece of work is a job on the engine thread; text arrives as throttled
TextChunk partials, and Stop cancels the job between tokens.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.jobs.language import GenerateJob, GenerateOutcome, LMBenchmarkJob, LMBenchmarkOutcome, PerplexityJob
from engine.llm.bench import LMBenchSettings, TokenTick
from engine.llm.generate import GenerationSettings, TextChunk
from engine.llm.perplexity import DEFINITION
from gui import lm_support
from gui.dialogs import open_file
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.widgets.job_owner import JobOwner
from gui.widgets.live_plot import LivePlot
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel, fmt_float

NONE = "(none)"
DEFAULT_PROMPT = "Call me Ishmael. Some years ago"

COLUMNS = [
    Column("variant", lambda r: r["variant"]),
    Column("recipe", lambda r: r.get("recipe")),
    Column("perplexity", lambda r: r.get("perplexity"), fmt_float(3), True),
    Column("Δ vs first", lambda r: r.get("delta"), lambda v: "" if v is None else f"{v:+.3f}", True),
    Column("Δ %", lambda r: r.get("delta_pct"), lambda v: "" if v is None else f"{v:+.2f}%", True),
    *lm_support.LM_SPEED_COLUMNS,
    Column("bits/w", lambda r: r.get("bits_per_weight"), fmt_float(2), True),
]


class TextGenerationWidget(JobOwner, QWidget):
    def __init__(self, state: AppState, router: JobRouter, parent=None):
        super().__init__(parent)
        self.state = state
        self.router = router
        self._bench_queue: list[str] = []
        self._bench_name = ""
        self._names: list[str] = []
        self._rows: dict[str, dict] = {}
        s = settings()

        self.model_a = QComboBox()
        self.model_b = QComboBox()
        self.prompt = QPlainTextEdit(str(s.value("text/prompt", DEFAULT_PROMPT)))
        self.prompt.setMaximumHeight(70)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 8192)
        self.max_tokens.setValue(int(s.value("text/max_tokens", 100)))
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(float(s.value("text/temperature", 0.8)))
        self.temperature.setToolTip("0 = greedy (always the most likely token)")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.05, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(float(s.value("text/top_p", 0.95)))
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(int(s.value("text/seed", 0)))
        self.generate_btn = QPushButton("Generate")
        self.generate_btn.setToolTip("Stream from both models with the same prompt and seed (Ctrl+G)")
        self.generate_btn.clicked.connect(self.start_generation)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(self.stop)
        QShortcut(QKeySequence("Ctrl+G"), self, self.start_generation)

        sampling = QHBoxLayout()
        for label, w in (("max tokens", self.max_tokens), ("temperature", self.temperature), ("top-p", self.top_p)):
            sampling.addWidget(QLabel(label))
            sampling.addWidget(w)
        sampling.addWidget(QLabel("seed"))
        sampling.addWidget(self.seed)
        sampling.addStretch(1)
        sampling.addWidget(self.generate_btn)
        sampling.addWidget(self.stop_btn)

        form = QFormLayout()
        form.addRow("Model A (float)", self.model_a)
        form.addRow("Model B (quantized)", self.model_b)
        form.addRow("Prompt", self.prompt)
        form.addRow(sampling)
        box = QGroupBox("Generate")
        box.setLayout(form)

        self.titles = [QLabel("A"), QLabel("B")]
        self.outputs = [QPlainTextEdit(), QPlainTextEdit()]
        self.speeds = [QLabel(""), QLabel("")]
        grid = QGridLayout()
        for i in range(2):
            # Long model names and speed lines wrap instead of widening the window.
            for label in (self.titles[i], self.speeds[i]):
                label.setWordWrap(True)
                label.setMinimumWidth(1)
            self.speeds[i].setToolTip(
                "Live rate while this text streams: tokens since the first one over the time since it, "
                "detokenizing and streaming included. The Speed table's generation tok/s times the "
                "decoding loop alone over a fixed prompt (Benchmark), so it reads higher."
            )
            self.outputs[i].setReadOnly(True)
            grid.addWidget(self.titles[i], 0, i)
            grid.addWidget(self.outputs[i], 1, i)
            grid.addWidget(self.speeds[i], 2, i)
        outputs = QWidget()
        outputs.setLayout(grid)
        self.speed_plot = LivePlot("Generation speed (live)", "tokens/s", "generated token")

        # Perplexity and speed of the chosen variants.
        self.text_path = QLineEdit(str(s.value("text/file", "")))
        self.text_path.setPlaceholderText("held-out Moby-Dick excerpt (default) — or a UTF-8 / WikiText-2 raw file")
        browse = QPushButton("…")
        browse.setFixedWidth(32)
        browse.clicked.connect(self._browse_text)
        self.context = QSpinBox()
        self.context.setRange(2, 32768)
        self.context.setValue(int(s.value("text/context", 512)))
        self.ppl_btn = QPushButton("Perplexity")
        self.ppl_btn.clicked.connect(self.start_perplexity)
        self.bench_btn = QPushButton("Speed")
        self.bench_btn.setToolTip("Prompt and generation tokens/s, time to first token and peak memory")
        self.bench_btn.clicked.connect(self.start_benchmark)
        row = QHBoxLayout()
        row.addWidget(QLabel("Text"))
        row.addWidget(self.text_path, 1)
        row.addWidget(browse)
        row.addWidget(QLabel("window"))
        row.addWidget(self.context)
        row.addWidget(self.ppl_btn)
        row.addWidget(self.bench_btn)
        definition = QLabel(DEFINITION)
        definition.setWordWrap(True)
        definition.setForegroundRole(QPalette.ColorRole.PlaceholderText)  # muted, readable in light and dark
        self.table_model = RecordTableModel(COLUMNS, self)
        proxy = RawSortProxy(self)
        proxy.setSourceModel(self.table_model)
        self.table = QTableView()
        self.table.setModel(proxy)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        measure = QVBoxLayout()
        measure.addLayout(row)
        measure.addWidget(definition)
        measure.addWidget(self.table)
        mbox = QGroupBox("Perplexity and speed of A and B")
        mbox.setLayout(measure)

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(outputs)
        top.addWidget(self.speed_plot)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(mbox)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(box)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)

        state.models_changed.connect(self._refresh_models)
        self._refresh_models()

    # -- models ----------------------------------------------------------------------
    @Slot()
    def _refresh_models(self) -> None:
        a, b = self.model_a.currentData(), self.model_b.currentData()
        entries = self.state.entries("language")
        self.model_a.clear()
        self.model_b.clear()
        self.model_b.addItem(NONE, None)
        for e in entries:
            self.model_a.addItem(e.display, e.path)
            self.model_b.addItem(e.display, e.path)
        floats = [e for e in entries if not e.quantized]
        quants = [e for e in entries if e.quantized]
        self._select(self.model_a, a or (floats[0].path if floats else None))
        self._select(self.model_b, b or (quants[-1].path if quants else None))

    @staticmethod
    def _select(combo: QComboBox, path: str | None) -> None:
        i = combo.findData(path) if path else -1
        if i >= 0:
            combo.setCurrentIndex(i)

    def set_variant(self, path: str) -> None:
        self._select(self.model_b, path)

    def models(self) -> tuple[str, ...]:
        return tuple(m for m in (self.model_a.currentData(), self.model_b.currentData()) if m)

    # -- generation ------------------------------------------------------------------
    def generation_settings(self) -> GenerationSettings:
        return GenerationSettings(
            self.max_tokens.value(), round(self.temperature.value(), 4), round(self.top_p.value(), 4), self.seed.value()
        )

    def _remember(self) -> None:
        s = settings()
        s.setValue("text/prompt", self.prompt.toPlainText())
        s.setValue("text/max_tokens", self.max_tokens.value())
        s.setValue("text/temperature", self.temperature.value())
        s.setValue("text/top_p", self.top_p.value())
        s.setValue("text/seed", self.seed.value())
        s.setValue("text/file", self.text_path.text())
        s.setValue("text/context", self.context.value())

    @Slot()
    def start_generation(self) -> None:
        models = self.models()
        prompt = self.prompt.toPlainText()
        if not models:
            self.window().show_error("Generate", "no language model: the default one ships in resources/default_lm")
            return
        if not prompt:
            self.window().show_error("Generate", "type a prompt first")
            return
        self._remember()
        self._names = [self._label(m) for m in models]
        for i in range(2):
            self.outputs[i].setPlainText(prompt if i < len(models) else "")
            self.titles[i].setText(f"<b>{self._names[i]}</b>" if i < len(models) else "")
            self.speeds[i].setText("")
        self.speed_plot.clear_series()
        self._submit(GenerateJob(models, prompt, self.generation_settings()), self._on_generated, self._on_chunks)

    def _label(self, path: str) -> str:
        e = self.state.entry(path)
        return e.display if e else Path(path).name

    def _on_chunks(self, payloads: tuple) -> None:
        speeds: dict[str, list[float]] = {}
        for p in payloads:
            if isinstance(p, TextChunk) and p.column < 2:
                out = self.outputs[p.column]
                out.moveCursor(out.textCursor().MoveOperation.End)
                out.insertPlainText(p.text)
                self.speeds[p.column].setText(f"{p.tokens} tokens · {p.tokens_per_s:.1f} tokens/s")
                if p.tokens >= 2:  # the first token's rate is not a rate yet
                    speeds.setdefault(self._names[p.column], []).append(p.tokens_per_s)
            elif isinstance(p, TokenTick):
                speeds.setdefault(f"{self._bench_name} run {p.run + 1}", []).append(p.tokens_per_s)
        for name, values in speeds.items():
            self.speed_plot.append(name, values)

    def _on_generated(self, o: GenerateOutcome) -> None:
        for i, r in enumerate(o.results[:2]):
            self.outputs[i].setPlainText(r.prompt + r.text)
            self.speeds[i].setText(
                f"{r.generated_tokens} tokens · {r.generation_tps:.1f} tokens/s · prompt {r.prompt_tps:.1f} tokens/s · "
                f"first token {1000 * r.ttft_s:.0f} ms · {r.finish_reason}"
            )
        same = len(o.results) == 2 and o.results[0].text == o.results[1].text
        self.status.setText("Both models wrote the same text." if same else "")

    @Slot()
    def stop(self) -> None:
        self._bench_queue = []
        if self.busy():
            self.cancel_job()
            self.status.setText("Stopped.")

    # -- perplexity and speed --------------------------------------------------------
    @Slot()
    def _browse_text(self) -> None:
        path = open_file(self, "Text file", "texts", "Text (*.txt *.raw *.tokens);;All files (*)")
        if path:
            self.text_path.setText(path)

    @Slot()
    def start_perplexity(self) -> None:
        models = self.models()
        if not models:
            return
        self._remember()
        text = self.text_path.text().strip() or None
        self.status.setText("Perplexity …")
        self._submit(PerplexityJob(models, text, self.context.value()), self._on_perplexity)

    def _on_perplexity(self, o) -> None:
        from engine.llm.perplexity import PerplexityComparison

        keys = [rec.model_path for rec in o.records] if o.records else [r.model_name for r in o.results]
        for key, r, row in zip(keys, o.results, PerplexityComparison(o.results).rows(), strict=True):
            self._merge(key, {"variant": r.model_name, **row})
        first = o.results[0]
        self.status.setText(
            f"{first.text}: {first.tokens:,} tokens in {first.windows} windows of {first.context}; "
            + ", ".join(f"{r.model_name} {r.perplexity:.3f}" for r in o.results)
        )

    @Slot()
    def start_benchmark(self) -> None:
        models = self.models()
        if not models:
            return
        self.speed_plot.clear_series()
        self._bench_queue = list(models)
        self._next_benchmark()

    def _next_benchmark(self) -> None:
        if not self._bench_queue:
            return
        path = self._bench_queue.pop(0)
        self._bench_name = self._label(path)
        self.status.setText(f"Speed of {self._bench_name} …")
        self._submit(LMBenchmarkJob(path, LMBenchSettings()), self._on_benchmark, self._on_chunks)

    def _on_benchmark(self, o: LMBenchmarkOutcome) -> None:
        r = o.result
        key = o.record.model_path if o.record else r.model_name
        self._merge(key, {"variant": r.model_name, "recipe": r.recipe, **r.summary()})
        s = r.summary()
        self.status.setText(
            f"{r.model_name}: prompt {s['prompt_tps']:.1f} tokens/s, generation {s['generation_tps']:.1f} tokens/s, "
            f"first token {s['ttft_ms']:.1f} ms"
        )

    def _merge(self, key: str, values: dict) -> None:
        key = str(Path(key).resolve()) if Path(key).exists() else key
        row = self._rows.setdefault(key, {"variant": values.get("variant", key)})
        row.update({k: v for k, v in values.items() if v is not None})
        self.table_model.set_rows(list(self._rows.values()))
        self.table.resizeColumnsToContents()

    # -- jobs ------------------------------------------------------------------------
    def _submit(self, job, on_result, on_partial=None) -> None:
        self.submit_job(job, on_result=on_result, on_partial=on_partial, on_done=self._on_done)

    def job_buttons(self) -> tuple[tuple, tuple]:
        return (self.generate_btn, self.ppl_btn, self.bench_btn), (self.stop_btn,)

    def _on_done(self) -> None:
        if self._bench_queue:
            self._next_benchmark()
