"""Benchmark tab: live latency/memory plots, accuracy evaluation and the demo workflow."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.core import paths
from engine.core.units import human_bytes
from engine.image.benchmark import BenchmarkSettings, IterationSample
from engine.jobs.demo import DemoJob, DemoOutcome, DemoRow, VariantSample
from engine.jobs.image import BenchmarkJob, BenchmarkOutcome, EvaluateJob, EvaluateOutcome
from gui import lm_support
from gui.dialogs import open_folder
from gui.router import JobRouter
from gui.state import AppState, settings
from gui.widgets.backend_note import backend_note
from gui.widgets.job_owner import JobOwner
from gui.widgets.live_plot import LivePlot
from gui.widgets.plot_export import save_plots_button
from gui.widgets.sweep_panel import SweepInputs, SweepPanel
from gui.widgets.table_model import Column, RawSortProxy, RecordTableModel, fmt_float, fmt_percent
from gui.widgets.throughput_panel import ThroughputPanel

MB = 1024.0 * 1024.0


def _signed(digits: int):
    return lambda v: "" if v is None else f"{v:+.{digits}f}"


def _times(v) -> str:
    return "" if v is None else f"{v:.2f}×"


SESSION_COLUMNS = [
    Column("variant", lambda r: r["variant"]),
    Column("recipe", lambda r: r.get("recipe")),
    # Against the float model the variant was made from (when it is in this table too).
    Column("Δ acc (pt)", lambda r: r.get("d_accuracy_pt"), _signed(2), True, better=1),
    Column("p50 speed-up", lambda r: r.get("speedup_p50"), _times, True, better=1, neutral=1.0),
    Column("size vs float", lambda r: r.get("size_ratio"), _times, True, better=-1, neutral=1.0),
    Column("Δ ppl %", lambda r: r.get("d_perplexity_pct"), _signed(2), True, better=-1),
    Column("accuracy", lambda r: r.get("accuracy"), fmt_percent, True),
    Column("macro-F1", lambda r: r.get("macro_f1"), fmt_float(4), True),
    Column("batch", lambda r: r.get("batch_size"), lambda v: "" if v is None else f"{v:.0f}", True),
    Column("mean ms", lambda r: r.get("latency_mean_ms"), fmt_float(3), True),
    Column("p50 ms", lambda r: r.get("latency_p50_ms"), fmt_float(3), True),
    Column("p90 ms", lambda r: r.get("latency_p90_ms"), fmt_float(3), True),
    Column("p99 ms", lambda r: r.get("latency_p99_ms"), fmt_float(3), True),
    Column("images/s", lambda r: r.get("throughput_ips"), fmt_float(1), True),
    Column("perplexity", lambda r: r.get("perplexity"), fmt_float(3), True),
    *lm_support.LM_SPEED_COLUMNS,
    Column("size", lambda r: r.get("size_on_disk_bytes"), human_bytes, True),
    Column("bits/w", lambda r: r.get("bits_per_weight"), fmt_float(2), True),
]


class BenchmarkTab(JobOwner, QWidget):
    def __init__(self, state: AppState, router: JobRouter, parent=None):
        super().__init__(parent)
        self.state = state
        self.router = router
        self._series = ""
        self._rows: list[dict] = []  # one per run, in order; evaluate and benchmark of a model share one
        s = settings()

        self.model = QComboBox()
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        self.batch.setValue(int(s.value("bench/batch", 1)))
        self.iters = QSpinBox()
        self.iters.setRange(1, 100000)
        self.iters.setValue(int(s.value("bench/iters", 50)))
        self.warmup = QSpinBox()
        self.warmup.setRange(0, 10000)
        self.warmup.setValue(int(s.value("bench/warmup", 5)))
        # Language models: runs of a prompt of N tokens followed by M generated tokens.
        self.lm_runs = QSpinBox()
        self.lm_runs.setRange(1, 1000)
        self.lm_runs.setValue(int(s.value("bench/lm_runs", 3)))
        self.prompt_tokens = QSpinBox()
        self.prompt_tokens.setRange(1, 32768)
        self.prompt_tokens.setValue(int(s.value("bench/prompt_tokens", 128)))
        self.gen_tokens = QSpinBox()
        self.gen_tokens.setRange(1, 32768)
        self.gen_tokens.setValue(int(s.value("bench/gen_tokens", 64)))
        self.data = QLineEdit(str(s.value("bench/data", "default")))
        self.data.setToolTip("'default' is the shipped MNIST held-out split; or a folder of class subfolders / an .npz")
        browse = QPushButton("…")
        browse.setFixedWidth(32)
        browse.clicked.connect(self._browse_data)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data)
        data_row.addWidget(browse)

        self.bench_btn = QPushButton("Run Benchmark")
        self.bench_btn.clicked.connect(self.start_benchmark)
        self.eval_btn = QPushButton("Evaluate Accuracy")
        self.eval_btn.clicked.connect(self.start_evaluate)
        self.demo_btn = QPushButton("Run Demo Workflow")
        self.demo_btn.setToolTip("Quantize to fp16, int8 and int4, then evaluate and benchmark every variant")
        self.demo_btn.clicked.connect(self.start_demo)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)

        # Two compact rows: the model and data fields take the spare width, the numbers keep theirs.
        for spin in (self.batch, self.iters, self.warmup, self.lm_runs, self.prompt_tokens, self.gen_tokens):
            spin.setMinimumWidth(90)
        self.model.setMinimumContentsLength(28)
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        label = QLabel("Model")
        label.setBuddy(self.model)
        grid.addWidget(label, 0, 0)
        grid.addWidget(self.model, 0, 1)
        # The same cells hold the image or the language-model controls, named for what they are.
        self._image_controls, self._lm_controls = [], []
        for col, (image, lm) in enumerate(
            [
                (("Batch size", self.batch), ("Prompt tokens", self.prompt_tokens)),
                (("Iterations", self.iters), ("Generated tokens", self.gen_tokens)),
                (("Warm-up", self.warmup), ("Runs", self.lm_runs)),
            ]
        ):
            for (text, widget), bucket in ((image, self._image_controls), (lm, self._lm_controls)):
                label = QLabel(text)
                label.setBuddy(widget)
                grid.addWidget(label, 0, 2 * col + 2)
                grid.addWidget(widget, 0, 2 * col + 3)
                bucket += [label, widget]
        self.model.currentIndexChanged.connect(self._model_kind_changed)
        self._model_kind_changed()
        data_label = QLabel("Evaluation data")
        data_label.setBuddy(self.data)
        grid.addWidget(data_label, 1, 0)
        grid.addLayout(data_row, 1, 1)
        buttons = QHBoxLayout()
        for b in (self.bench_btn, self.eval_btn, self.demo_btn, self.cancel_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        clear = QPushButton("Clear Plots")
        clear.setToolTip("Benchmark runs overlay in the plots until cleared")
        clear.clicked.connect(self._clear_live_plots)
        buttons.addWidget(clear)
        buttons.addWidget(save_plots_button(self, self.live_plots))
        form = QVBoxLayout()
        form.addLayout(grid)
        form.addLayout(buttons)
        box = QGroupBox("Run")
        box.setLayout(form)

        self.latency_plot = LivePlot("Latency per iteration", "ms")
        # MLX's active memory (a few MB) and the process RSS (hundreds of MB) get an axis each.
        self.memory_plot = LivePlot("MLX active memory per iteration", "MB")
        self.rss_plot = LivePlot("Process RSS per iteration", "MB")
        plots = QSplitter(Qt.Orientation.Horizontal)
        for plot in (self.latency_plot, self.memory_plot, self.rss_plot):
            plots.addWidget(plot)
        plots.setSizes([500, 400, 400])

        self.table_model = RecordTableModel(SESSION_COLUMNS, self)
        proxy = RawSortProxy(self)
        proxy.setSourceModel(self.table_model)
        self.table = QTableView()
        self.table.setModel(proxy)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        self.status = QLabel("")

        layout = QVBoxLayout(self)
        layout.addWidget(box)
        self.backend_note = backend_note()
        layout.addWidget(self.backend_note)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(plots)
        table_w = QWidget()
        tl = QVBoxLayout(table_w)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(QLabel("This session's runs (every run is also in Results)"))
        tl.addWidget(self.table)
        tl.addWidget(self.status)
        # Sweeps live in their own panels; their per-iteration samples feed the live plots above.
        self.sweep_panel = SweepPanel(state, router, self._sweep_inputs)
        self.throughput_panel = ThroughputPanel(state, router, self.model.currentData)
        for panel in (self.sweep_panel, self.throughput_panel):
            panel.started.connect(self._clear_live_plots)
            panel.samples.connect(self._on_samples)
        self.lower_tabs = QTabWidget()
        self.lower_tabs.addTab(table_w, "This session")
        self.lower_tabs.addTab(self.sweep_panel, "Recipe sweep")
        self.lower_tabs.addTab(self.throughput_panel, "Batch sizes")
        split.addWidget(self.lower_tabs)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        layout.addWidget(split, 1)

        state.models_changed.connect(self._refresh_models)

    # -- model list ------------------------------------------------------------------
    @Slot()
    def _refresh_models(self) -> None:
        current = self.model.currentData()
        self.model.clear()
        for e in self.state.entries():
            self.model.addItem(e.display, e.path)
        if current:
            self.set_model(current)

    def set_model(self, path: str) -> None:
        i = self.model.findData(path)
        if i >= 0:
            self.model.setCurrentIndex(i)

    @Slot()
    def _browse_data(self) -> None:
        path = open_folder(self, "Dataset folder (one subfolder per class)", "datasets")
        if path:
            self.data.setText(path)

    # -- running ---------------------------------------------------------------------
    def _remember(self) -> None:
        s = settings()
        s.setValue("bench/batch", self.batch.value())
        s.setValue("bench/iters", self.iters.value())
        s.setValue("bench/warmup", self.warmup.value())
        s.setValue("bench/data", self.data.text())

    def job_buttons(self) -> tuple[tuple, tuple]:
        return (self.bench_btn, self.eval_btn, self.demo_btn), (self.cancel_btn,)

    def _submit(self, job, on_result, on_partial=None) -> None:
        self._remember()
        self.submit_job(job, on_result=on_result, on_partial=on_partial)

    def _settings(self) -> BenchmarkSettings:
        return BenchmarkSettings(self.batch.value(), self.iters.value(), self.warmup.value())

    @Slot()
    def start_benchmark(self) -> None:
        path = self.model.currentData()
        if not path:
            return
        entry = self.state.entry(path)
        # Runs overlay, one curve per run, kept until Clear Plots: float and int4 side by side.
        name = entry.display if entry else Path(path).name
        taken = set(self.latency_plot.names())
        self._series = next(s for s in (name, *(f"{name} #{k}" for k in range(2, 10_000))) if not _taken(s, taken))
        self.status.setText(f"Benchmarking {self._series} …")
        if lm_support.is_language(self.state, path):
            s = settings()
            s.setValue("bench/lm_runs", self.lm_runs.value())
            s.setValue("bench/prompt_tokens", self.prompt_tokens.value())
            s.setValue("bench/gen_tokens", self.gen_tokens.value())
            job = lm_support.benchmark_job(
                path, self.lm_runs.value(), 1, self.prompt_tokens.value(), self.gen_tokens.value()
            )
            self._submit(job, self._on_lm_benchmark, self._on_samples)
            return
        self._submit(BenchmarkJob(path, self._settings()), self._on_benchmark, self._on_samples)

    @Slot(int)
    def _model_kind_changed(self, _index: int = -1) -> None:
        """Image controls for an image model, the language-model ones (tokens, runs) for an LM."""
        lm = lm_support.is_language(self.state, self.model.currentData())
        for w in self._image_controls:
            w.setVisible(not lm)
        for w in self._lm_controls:
            w.setVisible(lm)
        self.eval_btn.setText("Perplexity" if lm else "Evaluate Accuracy")

    @Slot()
    def start_evaluate(self) -> None:
        path = self.model.currentData()
        if not path:
            return
        self.status.setText("Evaluating …")
        if lm_support.is_language(self.state, path):
            self._submit(lm_support.perplexity_job(path), self._on_perplexity)
            return
        self._submit(EvaluateJob(path, self.data.text().strip() or "default"), self._on_evaluate)

    @Slot()
    def start_demo(self) -> None:
        path = self.model.currentData() or "default"
        entry = self.state.entry(path)
        if entry is not None and (entry.quantized or entry.kind == "language"):
            path = str(paths.DEFAULT_MODEL_DIR.resolve())
        self._clear_live_plots()
        self.status.setText("Demo: quantize fp16/int8/int4, evaluate and benchmark each …")
        out = paths.user_data_dir() / "demo"
        self._submit(
            # The demo folder in the app's data folder is the app's own: each run replaces the last.
            DemoJob(str(out), path, self.data.text().strip() or "default", bench=self._settings(), overwrite=True),
            self._on_demo,
            self._on_samples,
        )

    @Slot()
    def cancel(self) -> None:
        self.cancel_job()

    def busy(self) -> bool:
        return JobOwner.busy(self) or self.sweep_panel.busy() or self.throughput_panel.busy()

    def live_plots(self) -> list[tuple[str, LivePlot]]:
        return [
            ("Latency per iteration", self.latency_plot),
            ("MLX memory per iteration", self.memory_plot),
            ("Process RSS per iteration", self.rss_plot),
        ]

    @Slot()
    def _clear_live_plots(self) -> None:
        for _, plot in self.live_plots():
            plot.clear_series()

    def _sweep_inputs(self) -> SweepInputs | None:
        """The form's model, data and settings for a recipe sweep (a float model is required)."""
        path = self.model.currentData()
        if not path:
            return None
        entry = self.state.entry(path)
        if entry is not None and entry.quantized:
            self.sweep_panel.status.setText(
                f"{entry.display} is already quantized: pick a float model (e.g. the default model) to sweep recipes"
            )
            return None
        self._remember()
        return SweepInputs(path, self.data.text().strip() or "default", self._settings())

    # -- results -----------------------------------------------------------------------
    def _on_samples(self, payloads: tuple) -> None:
        lat: dict[str, list[float]] = {}
        mem: dict[str, list[float]] = {}
        rss: dict[str, list[float]] = {}
        for p in payloads:
            if isinstance(p, VariantSample):
                name, sample = p.variant, p.sample
            elif isinstance(p, IterationSample):
                name, sample = self._series, p
            elif isinstance(p, lm_support.TokenTick):
                lat.setdefault(f"{self._series} run {p.run + 1} (ms/token)", []).append(
                    1000.0 / max(p.tokens_per_s, 1e-9)
                )
                continue
            elif isinstance(p, DemoRow):
                self._merge_row(p.values["model_path"], p.values)
                continue
            else:
                continue
            lat.setdefault(name, []).append(sample.latency_ms)
            mem.setdefault(name, []).append(sample.active_memory / MB)
            rss.setdefault(name, []).append(sample.rss / MB)
        for plot, series in ((self.latency_plot, lat), (self.memory_plot, mem), (self.rss_plot, rss)):
            for name, values in series.items():
                plot.append(name, values)

    def _merge_row(self, key: str, values: dict) -> dict:
        """Add a run's figures: into the model's last row unless that row already has them, else a new row."""
        measured = {k: v for k, v in values.items() if v is not None and k not in ("variant", "recipe", "model_path")}
        row = next((r for r in reversed(self._rows) if r["model_path"] == key), None)
        if row is None or any(k in row for k in measured):
            row = {"model_path": key, "variant": values.get("variant", key)}
            self._rows.append(row)
        row.update({k: v for k, v in values.items() if v is not None})
        self._compare_with_parents()
        self.table_model.set_rows(list(self._rows))
        self.table.resizeColumnsToContents()
        return row

    def _compare_with_parents(self) -> None:
        """Δ against the float parent's latest figures: accuracy in points, p50 speed-up, size, perplexity."""
        latest: dict[str, dict] = {}
        for r in self._rows:
            for k, v in r.items():
                latest.setdefault(r["model_path"], {})[k] = v
        for r in self._rows:
            entry = self.state.entry(r["model_path"])
            parent = latest.get(entry.parent) if entry is not None and entry.parent else None
            if parent is None:
                continue
            pairs = {
                "d_accuracy_pt": ("accuracy", lambda a, b: 100.0 * (a - b)),
                "speedup_p50": ("latency_p50_ms", lambda a, b: b / a if a else None),
                "size_ratio": ("size_on_disk_bytes", lambda a, b: a / b if b else None),
                "d_perplexity_pct": ("perplexity", lambda a, b: 100.0 * (a / b - 1.0) if b else None),
            }
            for out, (metric, f) in pairs.items():
                if r.get(metric) is not None and parent.get(metric) is not None:
                    r[out] = f(r[metric], parent[metric])

    def _on_benchmark(self, o: BenchmarkOutcome) -> None:
        r = o.result
        s = r.summary()
        key = o.record.model_path if o.record else r.model_name
        row = self._merge_row(key, {"variant": r.model_name, "recipe": r.recipe, **s})
        device = r.environment.get("device")
        text = (
            f"{r.model_name}: p50 {s['latency_p50_ms']:.3f} ms, p99 {s['latency_p99_ms']:.3f} ms, "
            f"{s['throughput_ips']:.1f} images/s on {device}"
        )
        speedup = row.get("speedup_p50")
        if speedup is not None and speedup < 1.0:
            text += f". It is {1 / speedup:.2f}× slower than its float parent here"
            if str(device).lower() == "cpu":
                text += ": on MLX's CPU backend quantized variants trade speed for size"
        self.status.setText(text)

    def _on_lm_benchmark(self, o) -> None:
        r = o.result
        s = r.summary()
        key = o.record.model_path if o.record else r.model_name
        self._merge_row(key, {"variant": r.model_name, "recipe": r.recipe, **s})
        self.status.setText(
            f"{r.model_name}: prompt {s['prompt_tps']:.1f} tokens/s, generation {s['generation_tps']:.1f} tokens/s, "
            f"first token {s['ttft_ms']:.1f} ms, peak {human_bytes(s['peak_memory_bytes'])} on {r.environment.get('device')}"
        )

    def _on_perplexity(self, o) -> None:
        r = o.results[0]
        key = o.records[0].model_path if o.records else r.model_name
        self._merge_row(key, {"variant": r.model_name, "recipe": r.recipe, "perplexity": r.perplexity})
        self.status.setText(
            f"{r.model_name} on {r.text}: perplexity {r.perplexity:.3f} ({r.tokens:,} tokens, windows of {r.context})"
        )

    def _on_evaluate(self, o: EvaluateOutcome) -> None:
        rep = o.result.report
        key = o.record.model_path if o.record else o.result.model_name
        self._merge_row(
            key,
            {
                "variant": o.result.model_name,
                "recipe": o.result.recipe,
                "accuracy": rep.accuracy,
                "macro_f1": rep.macro_f1,
            },
        )
        skipped = f", {len(o.result.skipped)} unreadable files skipped" if o.result.skipped else ""
        self.status.setText(
            f"{o.result.model_name} on {o.result.dataset}: accuracy {100 * rep.accuracy:.2f}%, "
            f"macro-F1 {rep.macro_f1:.4f} ({rep.n} images{skipped})"
        )

    def _on_demo(self, o: DemoOutcome) -> None:
        for row in o.rows:
            self._merge_row(row.values["model_path"], row.values)
        for row in o.rows:
            self.state.add(row.values["model_path"])
        self.status.setText(f"Demo finished: summary.csv and plots in {o.out_dir}")


def _taken(series: str, names: set[str]) -> bool:
    """A series name is taken when a curve has it (language-model runs add ' run N (ms/token)')."""
    return any(n == series or n.startswith(f"{series} run ") for n in names)
