"""Options shared by image-quantization commands: recipe options, activation simulation, formatting."""

from __future__ import annotations

import argparse
import json

from engine.core.argtypes import csv_list
from engine.core.errors import UserError


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
    from engine.image.quant.recipes import resolve_recipe, with_options

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
    from engine.core.fileio import write_csv
    from engine.image.quant.actsim import ActSimSettings
    from engine.jobs.quant import ActSimJob

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


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"
