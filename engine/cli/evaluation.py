"""The evaluation suite's options and printing for `evaluate` on image models."""

from __future__ import annotations

import argparse
import json
import math
import sys

from engine.core.argtypes import nonneg_int


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got '{text}'") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions train,val,test, got '{text}'")
    return values  # type: ignore[return-value]


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """Options added to ``evaluate`` beside --model/--data/--batch-size/--limit/--csv/--predictions-csv/--json."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--split",
        choices=("train", "val", "test", "all"),
        help="which split (default: the file's test split where it has one, else all)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of splits, bootstrap and noise (default 0)")
    g.add_argument(
        "--split-fractions",
        type=_fractions,
        default=(0.7, 0.15, 0.15),
        metavar="TR,VA,TE",
        help="stratified split shares (default 0.7,0.15,0.15)",
    )
    g.add_argument(
        "--label-pattern",
        metavar="REGEX",
        help="flat folder: regex with a (?P<label>...) group, searched in file names",
    )
    g.add_argument("--workers", type=int, default=1, help="image decoding threads (default 1)")
    g = p.add_argument_group("analyses")
    g.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="M2",
        help="also evaluate this variant (repeatable or comma-separated); agreement and deltas are against --model",
    )
    g.add_argument("--top-k", type=_csv_ints, default=(3, 5), metavar="K,...", help="top-k accuracies (default 3,5)")
    g.add_argument("--bins", type=int, default=15, help="reliability-diagram / ECE bins (default 15)")
    g.add_argument(
        "--bootstrap",
        type=nonneg_int,
        default=0,
        metavar="N",
        help="bootstrap resamples for 95%% intervals (default 0: none)",
    )
    g.add_argument(
        "--corruptions",
        metavar="LIST",
        help="'all' or comma-separated: gaussian_noise, jpeg_compression, contrast, gaussian_blur, brightness",
    )
    g.add_argument("--severities", default="1,2,3,4,5", help="corruption severities 1..5 (default all)")
    g.add_argument(
        "--thresholds-from",
        metavar="VAL",
        help="choose an operating point on this validation data ('val': the val split of --data)",
    )
    g.add_argument(
        "--thresholds-split", choices=("train", "val", "test", "all"), help="split of the --thresholds-from data"
    )
    g.add_argument(
        "--operating-point",
        default="macro_f1",
        metavar="OBJ",
        help="macro_f1 (per-class thresholds) or sensitivity:CLASS=TARGET (default macro_f1)",
    )
    g.add_argument(
        "--plots", metavar="DIR", help="write per-class, confusion, reliability and robustness CSVs and PNGs here"
    )


def _models(args) -> tuple[str, ...]:
    extra = [m.strip() for item in args.compare for m in item.split(",") if m.strip()]
    return (args.model, *extra)


def settings_from_args(args):
    from engine.image.data.corruptions import parse_corruptions, parse_severities
    from engine.jobs.evaluation_suite import EvaluationSettings
    from engine.measure.evaluate.operating_point import OperatingPointSpec

    return EvaluationSettings(
        data=args.data,
        split=args.split,
        seed=args.seed,
        label_pattern=args.label_pattern,
        fractions=args.split_fractions,
        batch_size=args.batch_size,
        limit=args.limit,
        top_k=args.top_k,
        bins=args.bins,
        bootstrap=args.bootstrap,
        bootstrap_seed=args.seed,
        corruptions=parse_corruptions(args.corruptions) if args.corruptions else (),
        severities=parse_severities(args.severities),
        corruption_seed=args.seed,
        operating_point=OperatingPointSpec.parse(args.operating_point) if args.thresholds_from else None,
        thresholds_from=args.thresholds_from,
        thresholds_split=args.thresholds_split,
        workers=max(1, args.workers),
    )


def _pct(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.2f}%"


def _num(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def summary_lines(outcome) -> list[str]:
    """Human-readable summary of a SuiteOutcome, one block per variant."""
    from engine.measure.evaluate.rows import RowTable, corruption_of

    lines = []
    for v in outcome.variants:
        t = RowTable(v.name, v.rows)
        rep = v.metrics.report
        lines.append(
            f"{v.name} on {outcome.dataset}: {rep.n} images, accuracy {100 * rep.accuracy:.2f}%, "
            f"macro-F1 {rep.macro_f1:.4f}, balanced accuracy {100 * rep.balanced_accuracy:.2f}%"
        )
        o = v.metrics.overall()
        topk = ", ".join(f"top-{k} {_pct(val)}" for k, val in v.metrics.top_k)
        lines.append(
            f"  ROC-AUC {_num(o['roc_auc_macro'])}{', ' + topk if topk else ''}, ECE {_num(o['ece_uniform'])} "
            f"(adaptive {_num(o['ece_adaptive'])}), NLL {_num(o['nll'])}, Brier {_num(o['brier'])}"
        )
        if v.metrics.intervals:
            shown = {iv.metric: iv for iv in v.metrics.intervals if iv.cls == ""}
            parts = [
                f"{m} [{_num(shown[m].low)}, {_num(shown[m].high)}]"
                for m in ("accuracy", "macro_f1", "balanced_accuracy", "roc_auc_macro", "ece_uniform")
                if m in shown
            ]
            lines.append(f"  95% bootstrap intervals ({v.metrics.bootstrap_resamples} resamples): " + ", ".join(parts))
        if v.agreement is not None:
            a = v.agreement
            lines.append(
                f"  vs {a.reference}: top-1 flip rate {_pct(a.flip_rate)}, mean KL {a.mean_kl:.5f}, "
                f"delta accuracy {100 * t.get('delta_accuracy'):+.2f} pts, delta macro-F1 {t.get('delta_macro_f1'):+.4f}, "
                f"delta ECE {t.get('delta_ece_uniform'):+.4f}"
            )
            worst = sorted(((t.get("delta_f1", c), c) for c in t.classes()), key=lambda p: p[0])[:3]
            lines.append("  largest per-class F1 drops: " + ", ".join(f"{c} {d:+.4f}" for d, c in worst))
        conds = [c for c in t.conditions() if corruption_of(c)]
        if conds:
            cells = ", ".join(f"{c} {_pct(t.get('accuracy@' + c))}" for c in conds)
            lines.append(f"  accuracy under corruption: {cells}")
        if v.operating_point is not None:
            p = v.operating_point
            if p.objective == "sensitivity":
                name = p.class_names[p.target_class]
                lines.append(
                    f"  operating point (sensitivity of {name} >= {p.target_sensitivity:.2f} on {p.val_n} validation images, "
                    f"threshold {p.threshold:.4f}): test recall of {name} {_pct(t.get('recall@operating_point', name))} "
                    f"(argmax {_pct(t.get('recall', name))}), specificity {_pct(t.get('specificity@operating_point', name))}, "
                    f"macro-F1 {_num(t.get('macro_f1@operating_point'))}"
                )
            else:
                verdict = "adopted" if p.adopted else "not adopted, argmax kept"
                lines.append(
                    f"  operating point (per-class thresholds for macro-F1 on {p.val_n} validation images: "
                    f"argmax {_num(p.val_baseline)}, 5-fold cross-validated {_num(p.cv_value)}, {verdict}): "
                    f"test macro-F1 {_num(t.get('macro_f1@operating_point'))} (argmax {_num(rep.macro_f1)}), "
                    f"accuracy {_pct(t.get('accuracy@operating_point'))}"
                )
    return lines


def cmd_evaluate(args, run) -> int:
    """The ``evaluate`` command; ``run(job, args)`` is engine.cli's synchronous job runner."""
    from engine.core.fileio import write_csv
    from engine.jobs.evaluation_suite import EvaluationSuiteJob
    from engine.measure.evaluate.rows import RowTable

    outcome = run(EvaluationSuiteJob(_models(args), settings_from_args(args)), args)
    ref = outcome.variants[0]
    res, rep = ref.result, ref.metrics.report
    if args.csv:
        write_csv(args.csv, ["variant", "metric", "class", "value"], outcome.rows)
    if args.predictions_csv:
        header = ["path", "true_label", "pred_label"] + [f"p_{c}" for c in rep.class_names]
        names = rep.class_names
        rows = (
            [ident, names[t], names[p], *map(float, probs)]
            for ident, t, p, probs in zip(res.ids, res.y_true, res.y_pred, res.probs, strict=True)
        )
        write_csv(args.predictions_csv, header, rows)
    files = []
    if args.plots:
        from engine.measure.report.evaluation_plots import write_evaluation_report

        files = write_evaluation_report([RowTable(v.name, v.rows) for v in outcome.variants], args.plots)
    for path, why in outcome.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if args.json:

        def overall(v) -> dict:
            # NaN (e.g. an AUC with one class present) becomes null: strict JSON.
            return {metric: None if math.isnan(value) else value for _, metric, cls, value in v.rows if cls == ""}

        data = {"variant": ref.name, "dataset": outcome.dataset, **overall(ref), "skipped": len(outcome.skipped)}
        if len(outcome.variants) > 1:
            data["compare"] = [{"variant": v.name, **overall(v)} for v in outcome.variants[1:]]
        print(json.dumps(data, indent=2, allow_nan=False))
    else:
        print("\n".join(summary_lines(outcome)))
        for f in files:
            print(f"wrote {f}")
    return 0
