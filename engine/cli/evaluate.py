"""`evaluate`: the evaluation suite for image models, perplexity for language models (the kind decides)."""

from __future__ import annotations

import argparse

from engine.cli import _run, evaluation, language
from engine.cli import quant as quant_cli
from engine.core.argtypes import (
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument(
        "--data",
        default="default",
        help="class folders, .npz (incl. MedMNIST), HAM10000 folder/CSV, CIFAR batches/.tar.gz, or 'default'",
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    p.add_argument("--csv", help="metrics CSV (variant,metric,class,value)")
    p.add_argument("--predictions-csv", help="per-image CSV (path,true_label,pred_label,p_<class>...)")
    p.add_argument("--json", action="store_true")
    evaluation.add_evaluate_arguments(p)
    quant_cli.add_actsim_options(p)
    g = p.add_argument_group("language models")
    g.add_argument("--text", help="a UTF-8 text file for perplexity (default: held-out Moby-Dick)")
    g.add_argument(
        "--context",
        type=positive_int,
        default=512,
        help="window length in tokens; [BOS] leads each window when the tokenizer adds one",
    )
    g.add_argument("--max-tokens", type=positive_int, help="use only the first N tokens")


def run(args) -> int:
    if language.is_language(args):
        return language.cmd_evaluate(args)
    if args.simulate_activations:
        return quant_cli.cmd_evaluate_actsim(args)
    return evaluation.cmd_evaluate(args, _run)
