"""`gradcam`: Grad-CAM heatmaps of an image under a model and its variants, side by side."""

from __future__ import annotations

import argparse
import json

from engine.cli.evaluation import _models
from engine.core.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the reference (float) model")
    p.add_argument("--compare", action="append", default=[], metavar="M2", help="variants to compare (repeatable)")
    p.add_argument("image", help="image file")
    p.add_argument(
        "--class", dest="class_name", help="class to explain (name or index; default: the reference's top-1)"
    )
    p.add_argument("--layer", help="layer path (default: the last feature map); --list-layers shows them")
    p.add_argument("--list-layers", action="store_true", help="print the layers Grad-CAM can use and exit")
    p.add_argument("--out", help="PNG of the overlays side by side")
    p.add_argument("--npy", help="write the (M, H, W) float32 heatmaps here")
    p.add_argument("--json", action="store_true")


def _class_index(labels: list[str], text: str | None) -> int | None:
    if text is None:
        return None
    if text in labels:
        return labels.index(text)
    if text.isdigit() and int(text) < len(labels):
        return int(text)
    raise UserError(f"no class '{text}' (classes: {', '.join(labels)})")


def run(args) -> int:
    import numpy as np

    from engine.core.fileio import atomic_open
    from engine.image.gradcam import GradCamJob, candidate_layers
    from engine.runtime import JobContext, Workspace

    ws = Workspace()
    models = _models(args)
    ref = ws.bundle(models[0])
    if args.list_layers:
        for path, shape in candidate_layers(ref):
            print(f"{path:<32}{shape}")
        return 0
    job = GradCamJob(models, args.image, _class_index(list(ref.labels), args.class_name), args.layer)
    out = job.run(JobContext(), ws)
    if args.out:
        from engine.measure.report.gradcam_plot import gradcam_figure

        gradcam_figure(out, args.out)
    if args.npy:
        with atomic_open(args.npy, "wb") as f:
            np.save(f, np.stack([m.heatmap for m in out.maps]).astype(np.float32))
    if args.json:
        print(
            json.dumps(
                {
                    "image": out.image_path,
                    "layer": out.maps[0].layer,
                    "maps": [
                        {
                            "model": m.model,
                            "recipe": m.recipe,
                            "class": m.class_name,
                            "class_probability": m.class_probability,
                            "top1": m.top1_label,
                            "top1_probability": m.top1_probability,
                            "correlation_with_reference": c,
                            "top20_iou_with_reference": i,
                        }
                        for m, c, i in zip(out.maps, out.correlation, out.top_iou, strict=True)
                    ],
                },
                indent=2,
            )
        )
    else:
        print(f"Grad-CAM of {out.image_path} at layer {out.maps[0].layer}, class '{out.maps[0].class_name}':")
        for m, c, i in zip(out.maps, out.correlation, out.top_iou, strict=True):
            print(
                f"  {m.model} [{m.recipe}]: p({m.class_name}) {100 * m.class_probability:.1f}%, top-1 {m.top1_label} "
                f"{100 * m.top1_probability:.1f}%; correlation with reference {c:.3f}, top-20% IoU {i:.3f}"
            )
        if args.out:
            print(f"wrote {args.out}")
    return 0
