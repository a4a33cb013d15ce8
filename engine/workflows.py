"""Multi-step workflows built from jobs: the default quantize-evaluate-benchmark demo."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.bench.harness import BenchmarkSettings, IterationSample
from engine.fileio import write_csv
from engine.jobs import BenchmarkJob, EvaluateJob, JobContext, QuantizeJob, Workspace
from engine.model_card import human_bytes
from engine.report.plots import latency_plot, tradeoff_plot

DEMO_RECIPES = ("fp16", "int8", "int4")
DEMO_COLUMNS = [
    "variant",
    "recipe",
    "accuracy",
    "macro_f1",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "throughput_ips",
    "peak_memory_bytes",
    "size_on_disk_bytes",
    "bits_per_weight",
    "compression_ratio",
    "model_path",
]


@dataclass(frozen=True)
class VariantSample:
    """A benchmark iteration of one demo variant, streamed for the live plot."""

    variant: str
    sample: IterationSample


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
    """Quantize the model with each recipe, then evaluate and benchmark every variant."""

    out: str
    model: str = "default"
    data: str = "default"
    recipes: tuple[str, ...] = DEMO_RECIPES
    bench: BenchmarkSettings = field(default_factory=lambda: BenchmarkSettings(batch_size=1, iters=30, warmup=5))
    eval_limit: int | None = None
    title: str = "Demo workflow"

    def run(self, ctx: JobContext, ws: Workspace) -> DemoOutcome:
        out = Path(self.out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        source = ws.bundle(self.model)
        variants = [(str(source.path), "fp32")]
        steps = len(self.recipes) + 2 * (len(self.recipes) + 1)
        done = 0

        def stage(label: str):
            return ctx.scaled(done / steps, (done + 1) / steps, f"{label}: ")

        for recipe in self.recipes:
            ctx.check()
            q = QuantizeJob(self.model, recipe, str(out / "models" / f"{source.name}-{recipe}"))
            outcome = q.run(JobContext(stage(f"quantize {recipe}"), None, ctx.should_stop), ws)
            variants.append((outcome.path, outcome.recipe))
            done += 1

        rows = []
        for path, recipe in variants:
            ctx.check()
            ev = EvaluateJob(path, self.data, limit=self.eval_limit).run(
                JobContext(stage(f"evaluate {recipe}"), None, ctx.should_stop), ws
            )
            done += 1

            def forward(sample: IterationSample, recipe=recipe) -> None:
                ctx.partial(VariantSample(recipe, sample))

            bm = BenchmarkJob(path, self.bench).run(
                JobContext(stage(f"benchmark {recipe}"), forward, ctx.should_stop), ws
            )
            done += 1
            summary = bm.result.summary()
            values = {
                "variant": bm.result.model_name,
                "recipe": recipe,
                "accuracy": ev.result.report.accuracy,
                "macro_f1": ev.result.report.macro_f1,
                **{k: summary.get(k) for k in DEMO_COLUMNS if k in summary},
                "model_path": path,
            }
            row = DemoRow(values, bm.result.latencies_ms)
            rows.append(row)
            ctx.partial(row)

        files = [
            write_csv(out / "summary.csv", DEMO_COLUMNS, ([r.values.get(c) for c in DEMO_COLUMNS] for r in rows)),
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
    head = f"{'recipe':<8}{'accuracy':>10}{'macro-F1':>10}{'p50 ms':>10}{'p99 ms':>10}{'size':>11}{'bits/w':>8}{'ratio':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        v = r.values
        lines.append(
            f"{v['recipe']:<8}{100 * v['accuracy']:>9.2f}%{v['macro_f1']:>10.4f}{v['latency_p50_ms']:>10.3f}"
            f"{v['latency_p99_ms']:>10.3f}{human_bytes(v['size_on_disk_bytes']):>11}{v['bits_per_weight']:>8.2f}"
            f"{v['compression_ratio']:>7.2f}"
        )
    return "\n".join(lines)
