"""Multi-step workflows built from jobs: the default quantize-evaluate-benchmark demo."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.image.benchmark import BenchmarkSettings
from engine.jobs.sweep import SWEEP_COLUMNS, SweepJob, SweepRow, VariantSample, format_variant_table
from engine.measure.report.plots import latency_plot, tradeoff_plot
from engine.runtime import JobContext, Workspace

__all__ = ["DEMO_COLUMNS", "DEMO_RECIPES", "DemoJob", "DemoOutcome", "DemoRow", "VariantSample", "format_demo_table"]

DEMO_RECIPES = ("fp16", "int8", "int4")
DEMO_COLUMNS = SWEEP_COLUMNS  # the demo is a recipe sweep; its summary.csv has the sweep's columns


@dataclass(frozen=True)
class DemoRow:
    """One finished variant of the demo; streamed as a partial result."""

    values: dict
    latencies_ms: tuple[float, ...]


@dataclass(frozen=True)
class DemoOutcome:
    out_dir: str
    rows: tuple[DemoRow, ...]
    files: tuple[str, ...]


@dataclass(frozen=True)
class DemoJob:
    """The float model and each recipe: quantize, evaluate and benchmark (a recipe sweep), plus two PNGs.

    Every variant is stored as a ``sweep`` run the moment it is done, and
    ``summary.csv`` is rewritten after each, as for any sweep.
    """

    out: str
    model: str = "default"
    data: str = "default"
    recipes: tuple[str, ...] = DEMO_RECIPES
    bench: BenchmarkSettings = field(default_factory=lambda: BenchmarkSettings(batch_size=1, iters=30, warmup=5))
    eval_limit: int | None = None
    overwrite: bool = False  # replace a demo folder this app wrote at ``out``
    title: str = "Demo workflow"

    def run(self, ctx: JobContext, ws: Workspace) -> DemoOutcome:
        out = Path(self.out).expanduser()
        rows: list[DemoRow] = []

        def forward(payload) -> None:
            if isinstance(payload, SweepRow):
                rows.append(DemoRow(payload.values, payload.latencies_ms))
                ctx.partial(rows[-1])
            elif isinstance(payload, VariantSample):
                ctx.partial(payload)

        recipes = ("fp32", *(r for r in self.recipes if r.strip().lower() != "fp32"))
        sweep = SweepJob(
            self.model, recipes, self.data, str(out), self.bench, self.eval_limit, plots=False, overwrite=self.overwrite
        )
        done = sweep.run(JobContext(ctx.scaled(0.0, 0.95), forward, ctx.should_stop), ws)
        files = [
            *done.files,
            latency_plot(
                {r.values["recipe"]: r.latencies_ms for r in rows},
                out / "latency.png",
                f"Per-iteration latency, batch {self.bench.batch_size}",
            ),
            tradeoff_plot(
                {
                    r.values["recipe"]: (r.values["size_on_disk_bytes"] / 1024.0, 100 * r.values["accuracy"])
                    for r in rows
                },
                out / "accuracy_vs_size.png",
                "size on disk (KB)",
                "accuracy (%)",
                "Accuracy against size",
            ),
        ]
        ctx.progress(1.0, f"wrote {out}")
        return DemoOutcome(str(out), tuple(rows), tuple(str(f) for f in files))


def format_demo_table(rows: tuple[DemoRow, ...]) -> str:
    return format_variant_table(r.values for r in rows)
