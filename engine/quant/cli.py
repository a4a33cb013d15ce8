"""Command-line subcommands of the quantization engine: sensitivity, autoquant, actsim, finetune.

Registered through ``engine.cli.EXTENSIONS``; also the recipe options of
``quantize`` and the activation simulation of ``evaluate``.
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.argtypes import OVERWRITE_HELP, csv_list, int_list, nonneg_float, positive_float
from engine.errors import UserError


def _override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected PATTERN=FORMAT, got '{text}'")
    pattern, fmt = text.rsplit("=", 1)
    return pattern.strip(), fmt.strip()


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in csv_list(text):
        t, _, s = item.partition(":")
        out.append((t, s or t))
    return tuple(out)


# -- quantize: recipe options --------------------------------------------------------------------

RECIPE_HELP = (
    "a format (fp16, bf16, int8, int6, int5, int4, int3, int2, intN-gG, mxfp4, mxfp8, nvfp4), "
    "a mixed recipe (mixed-4-8, mixed-3-8, mixed-2-8, mixed-3-6) or a JSON recipe file"
)


def add_recipe_options(p: argparse.ArgumentParser) -> None:
    """Per-layer options of ``quantize`` beside --recipe."""
    p.add_argument("--keep-first", metavar="FORMAT", help="format of the first quantizable layer (e.g. int8, fp16)")
    p.add_argument("--keep-last", metavar="FORMAT", help="format of the last quantizable layer")
    p.add_argument(
        "--override",
        action="append",
        type=_override,
        metavar="PATTERN=FORMAT",
        help="store layers matching a glob pattern in FORMAT (repeatable; first match wins)",
    )
    p.add_argument(
        "--scale-dtype", choices=("float16", "float32"), help="storage dtype of affine scales (default float16)"
    )
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm layers instead of folding them into convs")


def recipe_from_args(args):
    """The recipe ``quantize`` runs: --recipe plus any per-layer options."""
    from engine.quant.recipes import resolve_recipe, with_options

    options = {
        "keep_first": args.keep_first,
        "keep_last": args.keep_last,
        "overrides": args.override,
        "scale_dtype": args.scale_dtype,
        "fold_bn": False if args.no_fold_bn else None,
    }
    if all(v is None for v in options.values()):
        return args.recipe
    recipe = resolve_recipe(args.recipe, args.group_size)
    return with_options(recipe, args.group_size, name=f"{recipe.name}-custom", **options)


# -- evaluate --simulate-activations -------------------------------------------------------------


def add_actsim_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--simulate-activations",
        choices=("int8",),
        help="also evaluate with static per-tensor int8 activations (full-integer simulation)",
    )
    p.add_argument("--observer", choices=("minmax", "percentile", "mse"), default="minmax")
    p.add_argument("--calib", type=int, default=128, help="calibration images for the activation ranges")
    p.add_argument(
        "--calib-data",
        default="default-val",
        help="calibration images (any folder or .npz of images; labels are optional)",
    )


def cmd_evaluate_actsim(args) -> int:
    from engine.cli import _run
    from engine.fileio import write_csv
    from engine.quant.actsim import ActSimSettings
    from engine.quant.jobs import ActSimJob

    if args.calib < 1:
        raise UserError(f"--calib must be at least 1, not {args.calib}")
    settings = ActSimSettings(bits=8, observer=args.observer, calib=args.calib)
    o = _run(ActSimJob(args.model, args.data, args.calib_data, settings, args.batch_size, args.limit), args)
    rows = [("weight-only", o.weight_only), (settings.label(), o.simulated)]
    if args.csv:
        header = ["variant", "numbers", "metric", "class", "value"]
        out = []
        for numbers, res in rows:
            for variant, metric, cname, value in res.report.long_rows(res.model_name):
                out.append([variant, numbers, metric, cname, value])
        write_csv(args.csv, header, out)
    if args.json:
        print(
            json.dumps(
                {
                    "variant": o.weight_only.model_name,
                    "dataset": o.weight_only.dataset,
                    "weight_only": o.weight_only.report.overall(),
                    "simulated_activations": {
                        **o.simulated.report.overall(),
                        "activations": settings.label(),
                        "calibration_images": o.calibration.n_images,
                    },
                },
                indent=2,
            )
        )
        return 0
    for numbers, res in rows:
        rep = res.report
        print(
            f"{res.model_name} on {res.dataset} [{numbers}]: {rep.n} images, accuracy {100 * rep.accuracy:.2f}%, "
            f"macro-F1 {rep.macro_f1:.4f}"
        )
    drop = 100 * (o.weight_only.report.accuracy - o.simulated.report.accuracy)
    print(f"simulated activations cost {drop:+.2f} points against the weight-only numbers")
    return 0


# -- subcommands ---------------------------------------------------------------------------------


def register(sub) -> dict:
    p = sub.add_parser("sensitivity", help="per-layer sensitivity: quantize one layer at a time, KL and top-1 flips")
    p.add_argument("--model", required=True, help="a float bundle or 'default'")
    p.add_argument("--bits", type=int_list, help="affine bit widths to measure, e.g. 4 or 2,3,4,8 (default 4)")
    p.add_argument("--formats", type=csv_list, help="formats to measure instead of --bits, e.g. int4-g32,mxfp4")
    p.add_argument("--group-size", type=int, choices=(32, 64, 128))
    p.add_argument(
        "--data",
        default="default-val",
        help="calibration images (any folder or .npz of images; labels are optional; default: the shipped validation split)",
    )
    p.add_argument("--calib", type=int, default=256, help="number of calibration images")
    p.add_argument("--no-fold-bn", action="store_true")
    p.add_argument("--csv", help="write one row per layer and format")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("autoquant", help="search per-layer bit widths for the smallest model within a budget")
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
    p.add_argument("--trace-csv", help="write the search trace")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("actsim", help="int8 activation simulation: observers x calibration-set sizes")
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="default", help="evaluation images")
    p.add_argument("--calib-data", default="default-val")
    p.add_argument("--observers", type=csv_list, default=("minmax", "percentile", "mse"))
    p.add_argument("--calib", type=int_list, default=(1, 8, 64, 256), help="calibration-set sizes")
    p.add_argument("--draws", type=int, default=1, help="random calibration draws per size")
    p.add_argument("--bits", type=int, default=8, help="activation bits")
    p.add_argument("--limit", type=int, help="evaluate only N images")
    p.add_argument("--csv")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("finetune", help="quantization-aware fine-tuning with optional distillation from a teacher")
    p.add_argument("--model", required=True, help="the float student (or its initialisation)")
    p.add_argument("--recipe", default="int4", help=RECIPE_HELP + "; fp32 trains a float student")
    p.add_argument("--group-size", type=int, choices=(32, 64, 128))
    p.add_argument("--teacher", help="a float bundle or 'default' to distil from")
    p.add_argument(
        "--data", default="default-val", help="training images (folder of class subfolders, .npz, default-val)"
    )
    p.add_argument("--val-data", help="validation images (default: 20%% of --data held out)")
    p.add_argument("--limit", type=int, help="use N training images")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate (default 1e-4)")
    p.add_argument("--temperature", type=positive_float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.7, help="weight of the distillation term")
    p.add_argument("--attention", type=_pairs, default=(), help="attention transfer pairs TEACHER:STUDENT,...")
    p.add_argument("--beta", type=positive_float, default=1000.0, help="attention-transfer weight")
    p.add_argument("--student-config", help="JSON overriding the architecture config: a fresh, smaller student")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--history-csv", help="write the training curve")
    p.add_argument("--json", action="store_true")
    return {"sensitivity": cmd_sensitivity, "autoquant": cmd_autoquant, "actsim": cmd_actsim, "finetune": cmd_finetune}


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def cmd_sensitivity(args) -> int:
    from engine.cli import _run
    from engine.quant.jobs import SensitivityJob

    if args.bits and args.formats:
        raise UserError("give --bits or --formats, not both")
    formats = args.formats or tuple(f"int{b}" for b in (args.bits or (4,)))
    o = _run(
        SensitivityJob(args.model, formats, args.data, args.calib, args.group_size, not args.no_fold_bn, args.csv), args
    )
    rep = o.report
    if args.json:
        from dataclasses import asdict

        print(
            json.dumps(
                {
                    "model": rep.model,
                    "dataset": rep.dataset,
                    "images": rep.n_images,
                    "float_accuracy": rep.float_accuracy,
                    "rows": [asdict(r) for r in rep.rows],
                },
                indent=2,
            )
        )
    else:
        print(
            f"{rep.model}: one layer at a time on {rep.n_images} images of {rep.dataset} "
            f"(float accuracy {_pct(rep.float_accuracy)}; weight-only quantization)"
        )
        print(f"  {'layer':<24}{'kind':<11}{'params':>9}  {'format':<10}{'KL':>10}{'flips':>8}{'acc. drop':>11}")
        for r in rep.rows:
            drop = 100 * (rep.float_accuracy - r.accuracy) if r.accuracy is not None else float("nan")
            print(
                f"  {r.path:<24}{r.kind:<11}{r.params:>9,}  {r.format:<10}{r.kl:>10.5f}{100 * r.flip_rate:>7.2f}%"
                f"{drop:>+10.2f}"
            )
    if o.csv:
        print(f"wrote {o.csv}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_autoquant(args) -> int:
    from engine.cli import _run
    from engine.fileio import write_csv
    from engine.model_card import human_bytes
    from engine.quant.autoquant import DEFAULT_CANDIDATES, Budget
    from engine.quant.jobs import AutoquantJob

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
    )
    o = _run(job, args)
    res = o.result
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
                    " ".join(f"{p}={f}" for p, f in s.assignment),
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
                    "trace": [
                        {
                            "step": s.step,
                            "action": s.action,
                            "bits_per_weight": s.bits_per_weight,
                            "predicted_kl": s.predicted_kl,
                            "measured_kl": s.measured_kl,
                            "val_accuracy": s.accuracy,
                            "meets": s.meets,
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
    for path, fmt in res.assignment:
        print(f"  {path:<28}{fmt}")
    print(
        f"{o.source.name} -> {o.card.name}: {human_bytes(o.source.size_on_disk)} -> {human_bytes(o.card.size_on_disk)}, "
        f"{o.card.bits_per_weight:.2f} bits/weight, KL {res.measured_kl:.5f} on calibration images, "
        f"validation accuracy {_pct(res.accuracy)} (float {_pct(res.float_accuracy)}; weight-only) -> {o.path}"
    )
    print("search trace:")
    for s in res.trace:
        meets = "" if s.meets is None else ("  meets" if s.meets else "  fails")
        print(
            f"  {s.step:>3} {s.action:<9}{s.bits_per_weight:>7.3f} bpw  predicted KL {s.predicted_kl:.5f}  "
            f"measured KL {s.measured_kl:.5f}  val {_pct(s.accuracy):>7}{meets}"
        )
    return 0


def cmd_actsim(args) -> int:
    from engine.cli import _run
    from engine.fileio import write_csv
    from engine.quant.actsim import OBSERVERS
    from engine.quant.jobs import CalibrationSweepJob

    bad = [o for o in args.observers if o not in OBSERVERS]
    if bad:
        raise UserError(f"unknown observer {', '.join(bad)} (use {', '.join(OBSERVERS)})")
    job = CalibrationSweepJob(
        args.model, args.data, args.calib_data, args.observers, args.calib, args.draws, args.bits, args.limit
    )
    rows = _run(job, args)
    header = [
        "observer",
        "calibration_images",
        "draw",
        "weight_only_accuracy",
        "simulated_accuracy",
        "drop_points",
        "kl_vs_weight_only",
        "flip_rate_vs_weight_only",
    ]
    table = [
        [
            r.observer,
            r.calib,
            r.draw,
            r.weight_only_accuracy,
            r.accuracy,
            100 * (r.weight_only_accuracy - r.accuracy),
            r.kl_vs_weight_only,
            r.flip_rate_vs_weight_only,
        ]
        for r in rows
    ]
    if args.csv:
        write_csv(args.csv, header, table)
    if args.json:
        print(json.dumps([dict(zip(header, row, strict=True)) for row in table], indent=2))
        return 0
    print(
        f"int{args.bits} activations simulated (static, per tensor) on {args.data}; weight-only = the model as stored"
    )
    print(f"  {'observer':<12}{'calib':>6}{'draw':>5}{'weight-only':>13}{'simulated':>11}{'drop':>8}{'KL':>10}")
    for r in rows:
        print(
            f"  {r.observer:<12}{r.calib:>6}{r.draw:>5}{_pct(r.weight_only_accuracy):>13}{_pct(r.accuracy):>11}"
            f"{100 * (r.weight_only_accuracy - r.accuracy):>+8.2f}{r.kl_vs_weight_only:>10.5f}"
        )
    return 0


def cmd_finetune(args) -> int:
    from engine.cli import _run
    from engine.fileio import write_csv
    from engine.model_card import human_bytes
    from engine.quant.jobs import FinetuneJob
    from engine.quant.recipes import resolve_recipe
    from engine.quant.recover import FinetuneSettings

    student_config = ()
    if args.student_config:
        try:
            cfg = json.loads(args.student_config)
        except json.JSONDecodeError as exc:
            raise UserError(f"--student-config is not valid JSON ({exc})") from None
        if not isinstance(cfg, dict):
            raise UserError("--student-config must be a JSON object")
        student_config = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()))
    settings = FinetuneSettings(
        recipe=resolve_recipe(args.recipe, args.group_size),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        temperature=args.temperature,
        alpha=args.alpha,
        attention=args.attention,
        beta=args.beta,
        augment=not args.no_augment,
        max_steps=args.max_steps,
        seed=args.seed,
    )
    job = FinetuneJob(
        args.model,
        settings,
        args.teacher,
        args.data,
        args.val_data,
        args.limit,
        student_config,
        args.out,
        overwrite=args.overwrite,
    )
    o = _run(job, args)
    res = o.result
    if args.history_csv:
        write_csv(
            args.history_csv,
            ["step", "epoch", "loss", "ce", "kd", "at", "batch_accuracy", "val_accuracy"],
            ([p.step, p.epoch, p.loss, p.ce, p.kd, p.at, p.batch_accuracy, p.val_accuracy] for p in res.history),
        )
    if args.json:
        print(
            json.dumps(
                {
                    "path": o.path,
                    "recipe": res.recipe,
                    "steps": res.steps,
                    "before": res.before_accuracy,
                    "after": res.after_accuracy,
                    "teacher": res.teacher_accuracy,
                    "bits_per_weight": o.card.bits_per_weight,
                    "seconds": res.seconds,
                },
                indent=2,
            )
        )
        return 0
    for p in res.history:
        if p.val_accuracy is not None:
            print(f"  epoch {p.epoch:5.2f}  step {p.step:>5}  loss {p.loss:.4f}  validation {_pct(p.val_accuracy)}")
    teacher = f", teacher {_pct(res.teacher_accuracy)}" if res.teacher_accuracy is not None else ""
    print(
        f"{res.recipe}: validation accuracy {_pct(res.before_accuracy)} before -> {_pct(res.after_accuracy)} after "
        f"{res.steps} steps{teacher} ({res.seconds:.0f} s); {o.card.bits_per_weight:.2f} bits/weight, "
        f"{human_bytes(o.card.size_on_disk)} -> {o.path}"
    )
    return 0
