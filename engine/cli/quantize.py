"""`quantize`: a model with a recipe; an image bundle or a language model (the kind decides)."""

from __future__ import annotations

import argparse

from engine.cli import _run, language
from engine.cli import quant as quant_cli
from engine.core.argtypes import OVERWRITE_HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="bundle directory or 'default'")
    p.add_argument("--recipe", required=True, help=quant_cli.RECIPE_HELP)
    p.add_argument("--group-size", type=int, choices=(16, 32, 64, 128))
    quant_cli.add_recipe_options(p)
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    from engine.image.quant.methods.options import add_method_options

    add_method_options(p)


def run(args) -> int:
    if language.is_language(args):
        return language.cmd_quantize(args)
    return _image(args)


def _image(args) -> int:
    from engine.cli.quant import recipe_from_args
    from engine.core.units import human_bytes
    from engine.image.quant.methods.options import method_kwargs
    from engine.jobs.image import QuantizeJob

    job = QuantizeJob(
        args.model, recipe_from_args(args), args.out, args.group_size, overwrite=args.overwrite, **method_kwargs(args)
    )
    o = _run(job, args)
    print(
        f"{o.source.name} -> {o.card.name}: {human_bytes(o.source.size_on_disk)} -> {human_bytes(o.card.size_on_disk)} "
        f"({o.card.bits_per_weight:.2f} bits/weight, {o.seconds:.2f} s) -> {o.path}"
    )
    return 0
