"""`import`: a checkpoint (state dict, .keras/.h5, .onnx) into a model bundle."""

from __future__ import annotations

import argparse

from engine.cli import _run
from engine.core.argtypes import (
    OVERWRITE_HELP,
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", help="architecture of a state dict (resnet18, mobilenet_v2...); not for .keras/.onnx")
    p.add_argument(
        "--weights",
        required=True,
        help=".safetensors/.npz/.pth state dict, .keras/.h5 or .onnx file, or a Hugging Face image-classifier folder",
    )
    p.add_argument("--num-classes", type=positive_int)
    p.add_argument("--labels", help="comma-separated class names, or a file (one per line, JSON list or map)")
    p.add_argument("--input-size", help="the model's input, N or HxW (e.g. 224 or 256x192)")
    p.add_argument(
        "--preprocess",
        help="preset imagenet|inception|unit|raw|caffe, then key=value overrides, "
        "e.g. 'imagenet,resize=stretch,interpolation=bicubic,crop=0.9,mean=0.5/0.5/0.5'",
    )
    p.add_argument("--name", help="bundle name (default: the checkpoint's file name)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def run(args) -> int:
    from engine.core.units import human_bytes
    from engine.image.data.presets import read_labels
    from engine.jobs.image import ImportJob

    labels = read_labels(args.labels)
    job = ImportJob(
        args.arch,
        args.weights,
        args.out,
        args.num_classes,
        tuple(labels) if labels else None,
        args.name,
        args.preprocess,
        args.input_size,
        overwrite=args.overwrite,
    )
    card = _run(job, args)
    print(
        f"imported {args.weights} as {card.arch} ({len(card.labels)} classes, {card.params:,} parameters, "
        f"{human_bytes(card.size_on_disk)}) -> {card.path}"
    )
    return 0
