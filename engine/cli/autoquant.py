"""`autoquant`: per-layer bit widths for the smallest model within a budget."""

from __future__ import annotations

import argparse
import json

from engine.cli import _run
from engine.cli.quant import _pct
from engine.core.argtypes import (
    OVERWRITE_HELP,
    csv_list,
    nonneg_float,
    positive_float,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--target-bpw", type=positive_float, help="bits per weight (scales and float layers included)")
    g.add_argument("--target-mb", type=positive_float, help="weight bytes in MB (2^20)")
    g.add_argument("--max-drop", type=nonneg_float, help="largest accuracy drop in points on --val-data")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument(
        "--data", default="default-val", help="calibration images (any folder or .npz of images; labels are optional)"
    )
    p.add_argument(
        "--val-data", help="labelled validation images: needed by --max-drop (default default-val), optional otherwise"
    )
    p.add_argument("--calib", type=int, default=256)
    p.add_argument("--candidates", type=csv_list, default=None, help="formats a layer may take (default int2..int8)")
    p.add_argument("--group-size", type=int, choices=(32, 64, 128))
    p.add_argument("--no-fold-bn", action="store_true")
    p.add_argument(
        "--methods",
        type=csv_list,
        default=None,
        help="how a layer's codes may be chosen, e.g. rtn,gptq+bc (default rtn): with more than rtn each layer "
        "gets the (format, method) pair that hurts least, measured layer by layer on --data's images",
    )
    p.add_argument(
        "--sensitivity",
        choices=("fisher", "exact"),
        default=None,
        help="per-layer costs predicted from the Fisher information (fast), or measured layer by layer (exact); "
        "default fisher, exact with --methods beyond rtn (fisher cannot rank methods)",
    )
    p.add_argument("--trace-csv", help="write the search trace")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    from engine.core.fileio import write_csv
    from engine.core.units import human_bytes
    from engine.image.quant.autoquant import DEFAULT_CANDIDATES, DEFAULT_METHODS, Budget, method_counts
    from engine.jobs.quant import AutoquantJob

    if args.target_bpw is not None:
        budget = Budget("bpw", args.target_bpw)
    elif args.target_mb is not None:
        budget = Budget("mb", args.target_mb)
    else:
        budget = Budget("drop", args.max_drop)
    job = AutoquantJob(
        args.model,
        budget,
        args.data,
        args.val_data,
        args.calib,
        args.candidates or DEFAULT_CANDIDATES,
        args.group_size,
        not args.no_fold_bn,
        args.out,
        overwrite=args.overwrite,
        sensitivity=args.sensitivity,
        methods=args.methods or DEFAULT_METHODS,
    )
    o = _run(job, args)
    res = o.result
    with_methods = job.methods != DEFAULT_METHODS

    def assigned(step) -> str:
        if not with_methods:
            return " ".join(f"{p}={f}" for p, f in step.assignment)
        return " ".join(f"{p}={f}@{m}" for (p, f), (_, m) in zip(step.assignment, step.methods, strict=True))

    if args.trace_csv:
        write_csv(
            args.trace_csv,
            [
                "step",
                "action",
                "bytes",
                "bits_per_weight",
                "predicted_kl",
                "measured_kl",
                "flip_rate",
                "val_accuracy",
                "meets",
                "assignment",
            ],
            (
                [
                    s.step,
                    s.action,
                    s.bytes,
                    s.bits_per_weight,
                    s.predicted_kl,
                    s.measured_kl,
                    s.flip_rate,
                    s.accuracy,
                    s.meets,
                    assigned(s),
                ]
                for s in res.trace
            ),
        )
    if args.json:
        print(
            json.dumps(
                {
                    "budget": budget.describe(),
                    "met": res.met,
                    "path": o.path,
                    "bits_per_weight": o.card.bits_per_weight,
                    "size_on_disk": o.card.size_on_disk,
                    "val_accuracy": res.accuracy,
                    "val_accuracy_float": res.float_accuracy,
                    "measured_kl": res.measured_kl,
                    "layers": dict(res.assignment),
                    "methods": dict(res.methods),
                    "method_counts": method_counts(res.methods),
                    "trace": [
                        {
                            "step": s.step,
                            "action": s.action,
                            "bits_per_weight": s.bits_per_weight,
                            "predicted_kl": s.predicted_kl,
                            "measured_kl": s.measured_kl,
                            "val_accuracy": s.accuracy,
                            "meets": s.meets,
                            "method_counts": method_counts(s.methods),
                        }
                        for s in res.trace
                    ],
                },
                indent=2,
            )
        )
        return 0
    status = "met" if res.met else "NOT met (the largest candidate model is returned)"
    print(f"budget {budget.describe()}: {status}")
    for (path, fmt), (_, method) in zip(res.assignment, res.methods, strict=True):
        print(f"  {path:<28}{fmt:<10}{method}" if with_methods else f"  {path:<28}{fmt}")
    if with_methods:
        print("methods: " + ", ".join(f"{m} {n} layer{'s' * (n != 1)}" for m, n in method_counts(res.methods).items()))
    print(
        f"{o.source.name} -> {o.card.name}: {human_bytes(o.source.size_on_disk)} -> {human_bytes(o.card.size_on_disk)}, "
        f"{o.card.bits_per_weight:.2f} bits/weight, KL {res.measured_kl:.5f} on calibration images, "
        f"validation accuracy {_pct(res.accuracy)} (float {_pct(res.float_accuracy)}; weight-only) -> {o.path}"
    )
    print("search trace:")
    for s in res.trace:
        meets = "" if s.meets is None else ("  meets" if s.meets else "  fails")
        counts = "  " + " ".join(f"{m}×{n}" for m, n in method_counts(s.methods).items()) if with_methods else ""
        print(
            f"  {s.step:>3} {s.action:<9}{s.bits_per_weight:>7.3f} bpw  predicted KL {s.predicted_kl:.5f}  "
            f"measured KL {s.measured_kl:.5f}  val {_pct(s.accuracy):>7}{meets}{counts}"
        )
    return 0
