"""Evaluation views for headless runs: per-class table, confusion matrices, reliability
diagram and robustness curves, as CSV and PNG. They read the long rows through
``engine.measure.evaluate.rows.RowTable``, as the GUI's views do.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engine.core.fileio import write_csv
from engine.measure.evaluate.rows import RowTable
from engine.measure.report.plots import _pyplot, _save

PER_CLASS_METRICS = ("precision", "recall", "f1", "specificity", "roc_auc", "support")


# -- tables (shared by the CLI and the GUI's CSV exports) ----------------------------------


def per_class_table(tables: list[RowTable]) -> tuple[list[str], list[list]]:
    """Header and rows: one row per (class, variant) with per-class metrics and F1/recall deltas."""
    header = ["class", "variant", *PER_CLASS_METRICS, "delta_recall", "delta_f1", "flip_rate"]
    rows = []
    classes = tables[0].classes() if tables else []
    for cls in classes:
        for t in tables:
            rows.append(
                [cls, t.variant]
                + [t.get(m, cls) for m in PER_CLASS_METRICS]
                + [t.get("delta_recall", cls), t.get("delta_f1", cls), t.get("flip_rate", cls)]
            )
    return header, rows


def confusion_table(reference: RowTable, variant: RowTable) -> tuple[list[str], list[list]]:
    """Long form of the reference, variant and difference matrices: matrix,true,predicted,count."""
    classes = reference.classes()
    ref, var = reference.confusion(), variant.confusion()
    rows = []
    for label, cm in ((reference.variant, ref), (variant.variant, var)):
        if cm is None:
            continue
        rows += [
            [label, classes[i], classes[j], int(cm[i, j])] for i in range(len(classes)) for j in range(len(classes))
        ]
    if ref is not None and var is not None and ref.shape == var.shape:
        diff = var - ref
        rows += [
            [f"{variant.variant} - {reference.variant}", classes[i], classes[j], int(diff[i, j])]
            for i in range(len(classes))
            for j in range(len(classes))
        ]
    return ["matrix", "true", "predicted", "count"], rows


def reliability_table(tables: list[RowTable], strategy: str = "uniform") -> tuple[list[str], list[list]]:
    header = ["variant", "strategy", "bin_lower", "bin_upper", "count", "mean_confidence", "accuracy"]
    rows = []
    for t in tables:
        b = t.reliability(strategy)
        for i in range(len(b["count"])):
            rows.append(
                [
                    t.variant,
                    strategy,
                    b["lower"][i],
                    b["upper"][i],
                    int(b["count"][i]),
                    b["confidence"][i],
                    b["accuracy"][i],
                ]
            )
    return header, rows


def robustness_table(tables: list[RowTable], metric: str = "accuracy") -> tuple[list[str], list[list]]:
    header = ["variant", "corruption", "severity", metric]
    rows = []
    for t in tables:
        for corruption, series in t.robustness(metric).items():
            rows += [[t.variant, corruption, sev, value] for sev, value in series.items()]
    return header, rows


def write_table(path: str | Path, table: tuple[list[str], list[list]]) -> Path:
    header, rows = table
    return write_csv(path, header, rows)


# -- figures ---------------------------------------------------------------------------------


def _annotate(ax, matrix: np.ndarray, fmt: str, threshold: float) -> None:
    k = matrix.shape[0]
    if k > 15:
        return
    for i in range(k):
        for j in range(k):
            v = matrix[i, j]
            ax.text(
                j,
                i,
                format(v, fmt),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if abs(v) > threshold else "black",
            )


def confusion_figure(reference: RowTable, variant: RowTable, path: str | Path) -> Path:
    """Reference, variant and difference (variant - reference) confusion matrices side by side."""
    plt = _pyplot()
    classes = reference.classes()
    ref, var = reference.confusion(), variant.confusion()
    panels = [(reference.variant, ref, "Blues")]
    if var is not None and variant.variant != reference.variant:
        panels += [(variant.variant, var, "Blues"), (f"{variant.variant} − {reference.variant}", var - ref, "RdBu_r")]
    k = len(classes)
    size = max(3.2, 0.35 * k + 1.5)
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size))
    axes = np.atleast_1d(axes)
    for ax, (title, cm, cmap) in zip(axes, panels, strict=True):
        if cmap == "RdBu_r":
            lim = max(1, int(np.abs(cm).max()))
            im = ax.imshow(cm, cmap=cmap, vmin=-lim, vmax=lim)
            _annotate(ax, cm, "d", lim * 0.6)
        else:
            im = ax.imshow(cm, cmap=cmap)
            _annotate(ax, cm, "d", cm.max() * 0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(k), classes, rotation=90 if k > 6 else 0, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def reliability_figure(tables: list[RowTable], path: str | Path, strategy: str = "uniform") -> Path:
    """Accuracy against mean confidence per bin, one line per variant, with the diagonal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect calibration")
    for t in tables:
        b = t.reliability(strategy)
        ece = t.get(f"ece_{strategy}")
        ax.plot(b["confidence"], b["accuracy"], marker="o", markersize=3, label=f"{t.variant} (ECE {ece:.4f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy in bin")
    ax.set_title(f"Reliability diagram ({strategy} bins)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def robustness_figure(tables: list[RowTable], path: str | Path, metric: str = "accuracy") -> Path | None:
    """One panel per corruption: the metric against severity (0 = clean), one line per variant."""
    corruptions: list[str] = []
    for t in tables:
        corruptions += [c for c in t.robustness(metric) if c not in corruptions]
    if not corruptions:
        return None
    plt = _pyplot()
    cols = min(3, len(corruptions))
    nrows = math.ceil(len(corruptions) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    for ax, corruption in zip(axes.ravel(), corruptions, strict=False):
        for t in tables:
            series = t.robustness(metric).get(corruption)
            if series:
                ax.plot(list(series), list(series.values()), marker="o", markersize=3, label=t.variant)
        ax.set_title(corruption, fontsize=9)
        ax.set_xlabel("severity")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(corruptions) :]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_evaluation_report(tables: list[RowTable], out_dir: str | Path) -> list[Path]:
    """Every view as CSV and PNG in ``out_dir``; the first table is the reference."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_table(out / "per_class.csv", per_class_table(tables))]
    ref = tables[0]
    for t in tables[1:] or tables[:1]:
        stem = "confusion" if t is ref else f"confusion_{_slug(t.variant)}"
        files.append(write_table(out / f"{stem}.csv", confusion_table(ref, t)))
        files.append(confusion_figure(ref, t, out / f"{stem}.png"))
    files.append(write_table(out / "reliability.csv", reliability_table(tables)))
    files.append(reliability_figure(tables, out / "reliability.png"))
    if any(t.robustness() for t in tables):
        files.append(write_table(out / "robustness.csv", robustness_table(tables)))
        files.append(robustness_figure(tables, out / "robustness.png"))
    return files


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_") or "variant"
