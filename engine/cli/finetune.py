"""`finetune`: quantization-aware fine-tuning with optional distillation from a teacher."""

from __future__ import annotations

import argparse
import json

from engine.cli import _run
from engine.cli.quant import RECIPE_HELP, _pairs, _pct
from engine.core.argtypes import (
    OVERWRITE_HELP,
    positive_float,
)
from engine.core.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="the float student (or its initialisation), or a quantized bundle (any method) to fine-tune on its own grid",
    )
    p.add_argument(
        "--recipe",
        help=RECIPE_HELP + "; fp32 trains a float student (default int4; a quantized --model keeps its own)",
    )
    p.add_argument("--group-size", type=int, choices=(32, 64, 128))
    p.add_argument(
        "--teacher",
        help="a float bundle or 'default' to distil from (a quantized --model: default its recorded float parent)",
    )
    p.add_argument("--no-teacher", action="store_true", help="a quantized --model: do not distil from its float parent")
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


def run(args) -> int:
    from engine.core.fileio import write_csv
    from engine.core.units import human_bytes
    from engine.image.quant.recipes import resolve_recipe
    from engine.image.quant.recover import FinetuneSettings
    from engine.jobs.quant import FinetuneJob

    student_config = ()
    if args.student_config:
        try:
            cfg = json.loads(args.student_config)
        except json.JSONDecodeError as exc:
            raise UserError(f"--student-config is not valid JSON ({exc})") from None
        if not isinstance(cfg, dict):
            raise UserError("--student-config must be a JSON object")
        student_config = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()))
    if args.teacher and args.no_teacher:
        raise UserError("--teacher and --no-teacher contradict each other")
    recipe = None
    if args.recipe or args.group_size:
        recipe = resolve_recipe(args.recipe or "int4", args.group_size)
    settings = FinetuneSettings(
        recipe=recipe,
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
        teacher_from_parent=not args.no_teacher,
    )
    o = _run(job, args)
    res = o.result
    if o.note and not args.json:
        print(o.note)
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
                    "teacher_path": o.teacher,
                    "from_method": res.from_method,
                    "note": o.note,
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
    start = f" (from {res.from_method}, its grid kept)" if res.from_method else ""
    print(
        f"{res.recipe}{start}: validation accuracy {_pct(res.before_accuracy)} before -> {_pct(res.after_accuracy)} after "
        f"{res.steps} steps{teacher} ({res.seconds:.0f} s); {o.card.bits_per_weight:.2f} bits/weight, "
        f"{human_bytes(o.card.size_on_disk)} -> {o.path}"
    )
    return 0
