"""`predict`: top-k predictions for images or a preprocessed tensor."""

from __future__ import annotations

import argparse
import json

from engine.cli import _run
from engine.core.argtypes import (
    positive_int,
)
from engine.core.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--tensor", help="float32 NHWC batch (.npy), already preprocessed")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--logits-out", help="write the (N, C) float32 logits to this .npy")


def run(args) -> int:
    import numpy as np

    from engine.core.fileio import atomic_open
    from engine.jobs.image import PredictJob

    if not args.images and not args.tensor:
        raise UserError("give image files or --tensor X.npy")
    if args.images and args.tensor:
        raise UserError("give image files or --tensor, not both")
    o = _run(PredictJob((args.model,), tuple(args.images), args.tensor, args.top_k), args)
    if args.logits_out:
        with atomic_open(args.logits_out, "wb") as f:
            np.save(f, o.logits[0])
    if args.json:
        out = {
            "model": o.models[0],
            "predictions": [
                {
                    "input": inp,
                    "top_k": [{"label": p.label, "index": p.index, "probability": p.probability} for p in preds[0]],
                }
                for inp, preds in zip(o.inputs, o.predictions, strict=False)
            ],
        }
        print(json.dumps(out, indent=2))
    else:
        for inp, preds in zip(o.inputs, o.predictions, strict=False):
            top = ", ".join(f"{p.label} {100 * p.probability:.1f}%" for p in preds[0])
            print(f"{inp}: {top}")
    return 0
