"""`sensitivity`: per-layer sensitivity of an image model or a language model (the kind decides)."""

from __future__ import annotations

import argparse
import json
import sys

from engine.cli import _run, language
from engine.cli.quant import _pct
from engine.core.argtypes import (
    OVERWRITE_HELP,
    csv_list,
    int_list,
    positive_int,
)
from engine.core.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    g = p.add_argument_group("language models")
    g.add_argument("--text", help="text sample (default: held-out Moby-Dick)")
    g.add_argument("--candidates", help="formats to measure (default int2,int3,int4,int6,int8)")
    g.add_argument("--sample-tokens", type=positive_int, default=512, help="tokens measured")
    g.add_argument("--layers", help="comma-separated glob patterns of layers to measure")
    g.add_argument("--budget", type=float, help="average bits per weight for a mixed recipe")
    g.add_argument("--out", help="with --budget: quantize with the chosen mix into this folder")
    g.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def run(args) -> int:
    if language.is_language(args):
        return language.cmd_sensitivity(args)
    return _image(args)


def _image(args) -> int:
    from engine.jobs.quant import SensitivityJob

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
