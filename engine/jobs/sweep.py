"""Sweeps: one model through a list of recipes, or one variant through a list of batch sizes.

A recipe sweep quantizes the model with each recipe, evaluates and
benchmarks every variant, and stores one ``sweep`` run per variant. Each run
is committed in its own transaction the moment its variant is done, and the
sweep's summary CSV is rewritten atomically right after, so a sweep that is
cancelled or killed keeps every finished row, in the database and on disk.
Runs of one sweep share ``settings["sweep_id"]``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.core import paths
from engine.core.errors import Cancelled, UserError
from engine.core.fileio import atomic_open, claim_directory, write_csv
from engine.core.metrics import as_written
from engine.image.benchmark import BenchmarkSettings, IterationSample, run_benchmark
from engine.image.coldload import cold_load
from engine.image.data.datasets import open_dataset
from engine.image.evaluation import evaluate_bundle, label_mapping
from engine.image.quant.methods.names import DEFAULT_CALIB_SIZE
from engine.image.quant.recipes import FLOAT_RECIPES, make_recipe
from engine.jobs.image import QuantizeJob, benchmark_record
from engine.jobs.sweep_state import owner_record
from engine.measure.compare import pareto_front
from engine.measure.evaluate.metrics import evaluation_rows
from engine.measure.evaluate.rows import split_rows
from engine.measure.results import RunRecord, export_long_csv, export_samples_csv
from engine.runtime import JobContext, Workspace

SWEEP_COLUMNS = [
    "sweep_id",
    "index",
    "recipe",
    "variant",
    "accuracy",
    "macro_f1",
    "balanced_accuracy",
    "latency_mean_ms",
    "latency_std_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "throughput_ips",
    "first_inference_ms",
    "load_time_s",
    "peak_memory_bytes",
    "peak_rss_bytes",
    "size_on_disk_bytes",
    "params",
    "bits_per_weight",
    "compression_ratio",
    "quantize_seconds",
    "run_id",
    "model_hash",
    "model_path",
]
THROUGHPUT_COLUMNS = [
    "batch_size",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p99_ms",
    "throughput_ips",
    "first_inference_ms",
    "peak_memory_bytes",
    "peak_rss_bytes",
    "run_id",
]
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def new_sweep_id() -> str:
    """Sortable and unique: local time plus a random suffix."""
    return f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class VariantSample:
    """A benchmark iteration of one variant of a sweep or demo, streamed for the live plot."""

    variant: str
    sample: IterationSample


def parse_recipes(text: str | Iterable[str], group_size: int | None = None) -> tuple[tuple[str, str], ...]:
    """(name, label) pairs from 'a,b,c' (or a list): validated, duplicates dropped, order kept.

    ``name`` is what ``make_recipe`` takes, ``label`` the recipe's own name
    ("int4-g32" for int4 with group size 32). ``fp32`` stands for the float
    model itself. The group size applies to quantized recipes only.

    Raises:
        UserError: an unknown recipe, or an empty list.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[tuple[str, str]] = []
    for name in (s.strip().lower() for s in items):
        if not name:
            continue
        base, _, method = name.partition("@")  # "int4@gptq": a recipe with a quantization method
        if name == "fp32":
            label = "fp32"
        else:
            label = make_recipe(base, None if base in FLOAT_RECIPES else group_size).name
            if method and method != "rtn":
                from engine.image.quant.methods import check_method

                label = f"{label}@{check_method(method)}"
        if label not in [lab for _, lab in out]:
            out.append((name, label))
    if not out:
        raise UserError("no recipes given (e.g. fp32,fp16,int8,int4)")
    return tuple(out)


def parse_batch_sizes(text: str | Iterable[int]) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); sorted, unique, each 1..4096."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = set()
    for item in items:
        s = str(item).strip()
        if not s:
            continue
        try:
            b = int(s)
        except ValueError:
            raise UserError(f"batch size '{s}' is not an integer") from None
        if not 1 <= b <= 4096:
            raise UserError(f"batch size must be between 1 and 4096, not {b}")
        out.add(b)
    if not out:
        raise UserError("no batch sizes given (e.g. 1,2,4,8,16,32,64)")
    return tuple(sorted(out))


# -- recipe sweeps ------------------------------------------------------------------


@dataclass(frozen=True)
class SweepStarted:
    """First partial of a sweep: where its rows go."""

    sweep_id: str
    out_dir: str
    recipes: tuple[str, ...]


@dataclass(frozen=True)
class SweepRow:
    """One finished variant of a sweep; ``values`` holds SWEEP_COLUMNS (raw numbers)."""

    sweep_id: str
    index: int
    recipe: str
    values: dict
    run_id: int | None
    latencies_ms: tuple[float, ...] = ()


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    out_dir: str
    rows: tuple[SweepRow, ...]
    files: tuple[str, ...]


@dataclass(frozen=True)
class SweepJob:
    """Quantize ``model`` with each recipe, evaluate and benchmark every variant.

    ``fp32`` stands for the float model itself (measured as it is). Variants are
    saved under ``out/models``; ``out/summary.csv`` (one row per finished
    variant), ``out/metrics.csv`` (per-class metrics) and ``out/iterations.csv``
    are rewritten atomically after every row, and the Pareto plots are drawn at
    the end.
    """

    model: str
    recipes: tuple[str, ...]
    data: str = "default"
    out: str | None = None
    bench: BenchmarkSettings = field(default_factory=lambda: BenchmarkSettings(batch_size=1, iters=30, warmup=5))
    eval_limit: int | None = None
    eval_batch_size: int = 64
    group_size: int | None = None
    sweep_id: str | None = None
    store: bool = True
    plots: bool = True
    overwrite: bool = False  # replace a sweep folder this app wrote at ``out``
    calib: str | None = None  # calibration images of "FORMAT@METHOD" variants (None: default-val)
    calib_size: int = DEFAULT_CALIB_SIZE
    title: str = "Sweep"

    def run(self, ctx: JobContext, ws: Workspace) -> SweepOutcome:
        recipes = parse_recipes(self.recipes, self.group_size)
        labels = tuple(label for _, label in recipes)
        self.bench.validate()
        if self.eval_batch_size < 1:
            raise UserError(f"evaluation batch size must be at least 1, not {self.eval_batch_size}")
        source = ws.bundle(self.model)
        if source.quantization and any(label != "fp32" for label in labels):
            raise UserError(
                f"model '{source.name}' is already quantized ({source.recipe_name}); start a sweep from a float model"
            )
        dataset = open_dataset(self.data)
        label_mapping(source, dataset)  # a class-count mismatch fails now, not after the first quantization
        sweep_id = self.sweep_id or new_sweep_id()
        out = Path(self.out).expanduser() if self.out else paths.user_data_dir() / "sweeps" / sweep_id
        out = claim_directory(out, "sweep", overwrite=self.overwrite, inputs=(source.path,))
        meta = {
            "sweep_id": sweep_id,
            "model": str(source.path),
            "model_hash": source.content_hash(),
            "recipes": list(labels),
            "data": str(self.data),
            "bench": {"batch_size": self.bench.batch_size, "iters": self.bench.iters, "warmup": self.bench.warmup},
            "eval_limit": self.eval_limit,
            "calibration": {"data": self.calib or "default-val", "size": self.calib_size},
            "status": "running",
            "owner": owner_record(),  # a reader tells a killed sweep from a running one (engine.jobs.sweep_state)
        }
        _write_json(out / "sweep.json", meta)
        ctx.partial(SweepStarted(sweep_id, str(out), labels))

        rows: list[SweepRow] = []
        records: list[RunRecord] = []
        steps = 3 * len(recipes)
        try:
            for index, (name, label) in enumerate(recipes):
                ctx.check()

                def stage(k: int, what: str, index=index, label=label):
                    return ctx.scaled((3 * index + k) / steps, (3 * index + k + 1) / steps, f"{label}: {what} ")

                row, record = self._variant(ctx, ws, source, dataset, (name, label), index, sweep_id, out, stage)
                rows.append(row)
                records.append(record)
                _write_sweep_files(out, rows, records)
                ctx.partial(row)
        except Cancelled:
            _write_json(out / "sweep.json", {**meta, "status": "cancelled", "finished_rows": len(rows)})
            raise
        files = [str(out / "summary.csv"), str(out / "metrics.csv"), str(out / "iterations.csv")]
        if self.plots and rows:
            files += [str(f) for f in pareto_pngs(rows, out)]
        _write_json(out / "sweep.json", {**meta, "status": "complete", "finished_rows": len(rows)})
        ctx.progress(1.0, f"sweep {sweep_id}: {len(rows)} variants -> {out}")
        return SweepOutcome(sweep_id, str(out), tuple(rows), tuple(files))

    def _variant(self, ctx, ws, source, dataset, recipe, index, sweep_id, out, stage) -> tuple[SweepRow, RunRecord]:
        name, label = recipe
        name, _, method = name.partition("@")
        quantize_seconds = 0.0
        if label == "fp32":
            path = str(source.path)  # the float model, measured as it is
        else:
            q = QuantizeJob(
                str(source.path),
                name,
                str(out / "models" / f"{source.name}-{label}"),
                None if name in FLOAT_RECIPES else self.group_size,
                store=False,
                overwrite=True,  # inside the sweep's own folder
                method=method or "rtn",
                calib=self.calib,
                calib_size=self.calib_size,
            ).run(JobContext(stage(0, "quantize"), None, ctx.should_stop), ws)
            path, quantize_seconds = q.path, q.seconds
        ctx.check()
        bundle = ws.bundle(path)
        ev = evaluate_bundle(
            bundle, dataset, self.eval_batch_size, self.eval_limit, stage(1, "evaluate"), ctx.should_stop
        )
        ctx.check()

        def forward(sample: IterationSample) -> None:
            ctx.partial(VariantSample(label, sample))

        bundle, load = cold_load(ws, path)
        bm = run_benchmark(bundle, self.bench, None, forward, stage(2, "benchmark"), ctx.should_stop, load=load)
        # The rows EvaluateJob stores, so a sweep's variant opens in the Evaluation tab like an evaluate run.
        ev_metrics, per_class = split_rows(evaluation_rows(bundle.name, bundle.labels, ev))
        bm_rec = benchmark_record(bundle, bm)
        record = replace(
            bm_rec,
            kind="sweep",
            dataset=self.data if self.data in ("default", "default-val") else ev.dataset,
            metrics={**ev_metrics, **bm_rec.metrics, "quantize_seconds": quantize_seconds},
            per_class=per_class,
            settings={
                "sweep_id": sweep_id,
                "sweep_kind": "recipe",
                "sweep_index": index,
                "sweep_dir": str(out),
                "source": str(source.path),
                "source_hash": source.content_hash(),
                "data": str(self.data),
                "eval_batch_size": self.eval_batch_size,
                "eval_limit": self.eval_limit,
                "group_size": self.group_size,
                **bm_rec.settings,
            },
        )
        if self.store:
            record = ws.store.add(record)
        values = {
            "sweep_id": sweep_id,
            "index": index,
            "recipe": label,
            "variant": bundle.name,
            **{k: record.metrics.get(k) for k in SWEEP_COLUMNS if k in record.metrics},
            "run_id": record.id,
            "model_hash": record.model_hash,
            "model_path": path,
        }
        return SweepRow(sweep_id, index, label, values, record.id, bm.latencies_ms), record


def _write_json(path: Path, obj: dict) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)


def _write_sweep_files(out: Path, rows: list[SweepRow], records: list[RunRecord]) -> None:
    """Rewrite the sweep's CSVs with every finished row (each file atomically)."""
    write_csv(
        out / "summary.csv", SWEEP_COLUMNS, ([as_written(c, r.values.get(c)) for c in SWEEP_COLUMNS] for r in rows)
    )
    export_long_csv(records, out / "metrics.csv")
    export_samples_csv(records, out / "iterations.csv")


def pareto_pngs(rows: Iterable[SweepRow], out: Path) -> list[Path]:
    """Accuracy against latency and against size, frontier drawn, bubble area = peak memory."""
    from engine.measure.report.pareto import pareto_png

    rows = list(rows)
    labels = [r.recipe for r in rows]
    acc = [100 * (r.values.get("accuracy") or math.nan) for r in rows]
    mem = [r.values.get("peak_memory_bytes") or 0.0 for r in rows]
    lat = [r.values.get("latency_p50_ms") for r in rows]
    size = [(r.values.get("size_on_disk_bytes") or math.nan) / 1024.0 for r in rows]
    return [
        pareto_png(labels, lat, acc, mem, out / "pareto_latency.png", "p50 latency (ms)", "accuracy (%)"),
        pareto_png(labels, size, acc, mem, out / "pareto_size.png", "size on disk (KB)", "accuracy (%)"),
    ]


def format_variant_table(rows: Iterable[dict]) -> str:
    """A fixed-width text table of sweep or demo rows (their ``values`` dicts)."""
    from engine.core.units import human_bytes

    head = (
        f"{'recipe':<10}{'accuracy':>10}{'macro-F1':>10}{'p50 ms':>9}{'p99 ms':>9}{'img/s':>9}"
        f"{'peak mem':>11}{'size':>11}{'bits/w':>8}{'ratio':>7}"
    )
    lines = [head, "-" * len(head)]
    for v in rows:
        lines.append(
            f"{v['recipe']:<10}{100 * v['accuracy']:>9.2f}%{v['macro_f1']:>10.4f}{v['latency_p50_ms']:>9.3f}"
            f"{v['latency_p99_ms']:>9.3f}{v['throughput_ips']:>9.1f}{human_bytes(v['peak_memory_bytes']):>11}"
            f"{human_bytes(v.get('size_on_disk_bytes')):>11}{v['bits_per_weight']:>8.2f}"
            f"{v.get('compression_ratio') or math.nan:>7.2f}"
        )
    return "\n".join(lines)


def front_labels(rows: Iterable[SweepRow], x_key: str) -> list[str]:
    """Recipes on the accuracy-against-``x_key`` frontier (smaller x, higher accuracy)."""
    rows = list(rows)
    idx = pareto_front([r.values.get(x_key) for r in rows], [r.values.get("accuracy") for r in rows])
    return [rows[i].recipe for i in idx]


# -- throughput across batch sizes -----------------------------------------------------


@dataclass(frozen=True)
class BatchPoint:
    """One batch size of a throughput sweep; ``values`` holds THROUGHPUT_COLUMNS."""

    sweep_id: str
    batch_size: int
    values: dict
    latencies_ms: tuple[float, ...]


@dataclass(frozen=True)
class ThroughputOutcome:
    sweep_id: str
    model_name: str
    recipe: str
    points: tuple[BatchPoint, ...]
    load_time_s: float


@dataclass(frozen=True)
class ThroughputJob:
    """Benchmark one model at each batch size after a single cold load.

    Each batch size is stored as a benchmark run (with its per-iteration
    samples) tagged with a shared sweep id.
    """

    model: str
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    iters: int = 20
    warmup: int = 3
    store: bool = True
    title: str = "Throughput across batch sizes"

    def run(self, ctx: JobContext, ws: Workspace) -> ThroughputOutcome:
        sizes = parse_batch_sizes(self.batch_sizes)
        for b in sizes:
            BenchmarkSettings(b, self.iters, self.warmup).validate()
        sweep_id = new_sweep_id()
        bundle, load = cold_load(ws, self.model)
        points: list[BatchPoint] = []
        for k, b in enumerate(sizes):
            ctx.check()
            settings = BenchmarkSettings(b, self.iters, self.warmup)

            def forward(sample: IterationSample, b=b) -> None:
                ctx.partial(VariantSample(f"batch {b}", sample))

            res = run_benchmark(
                bundle,
                settings,
                None,
                forward,
                ctx.scaled(k / len(sizes), (k + 1) / len(sizes), f"batch {b}: "),
                ctx.should_stop,
                load=load if k == 0 else None,
            )
            record = benchmark_record(
                bundle, res, {"sweep_id": sweep_id, "sweep_kind": "batch", "batch_sizes": list(sizes)}
            )
            if self.store:
                record = ws.store.add(record)
            s = res.summary()
            values = {**{c: s.get(c) for c in THROUGHPUT_COLUMNS if c in s}, "batch_size": b, "run_id": record.id}
            point = BatchPoint(sweep_id, b, values, res.latencies_ms)
            points.append(point)
            ctx.partial(point)
        ctx.progress(1.0, f"{bundle.name}: {len(points)} batch sizes")
        return ThroughputOutcome(sweep_id, bundle.name, bundle.recipe_name, tuple(points), load.seconds)


# -- grouping stored runs ----------------------------------------------------------


@dataclass(frozen=True)
class SweepGroup:
    """The stored runs of one sweep."""

    sweep_id: str
    kind: str  # "recipe" or "batch"
    model_name: str
    created: str
    run_ids: tuple[int, ...]

    @property
    def label(self) -> str:
        what = "recipe sweep" if self.kind == "recipe" else "batch sweep"
        return f"{self.created[:19].replace('T', ' ')} · {what} · {self.model_name} · {len(self.run_ids)} runs"


def sweep_groups(records: Iterable[RunRecord]) -> list[SweepGroup]:
    """Stored runs grouped by sweep id, newest sweep first."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        sid = (r.settings or {}).get("sweep_id")
        if sid:
            groups.setdefault(str(sid), []).append(r)
    out = []
    for sid, runs in groups.items():
        runs.sort(key=lambda r: r.id or 0)
        first = runs[0]
        kind = str(first.settings.get("sweep_kind", "recipe"))
        name = first.settings.get("source") and Path(first.settings["source"]).name or first.model_name
        out.append(SweepGroup(sid, kind, str(name), first.created, tuple(r.id for r in runs if r.id is not None)))
    out.sort(key=lambda g: g.created, reverse=True)
    return out
