"""The command line: the same jobs as the GUI, run synchronously, no Qt imported.

Exit codes: 0 success, 1 bad input or runtime error (one line on stderr),
2 usage error (argparse), 130 interrupted. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from engine.argtypes import OVERWRITE_HELP, nonneg_int, positive_int
from engine.errors import Cancelled, UserError
from engine.evaluate import cli as evaluation_cli


class _Parser(argparse.ArgumentParser):
    """argparse that keeps usage errors at exit code 2 with one line."""

    def error(self, message: str):  # noqa: D401
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="main.py", description="MLX Quant Studio: quantize, evaluate and benchmark models with MLX.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--progress", action="store_true", help="print progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("demo", help="the default workflow headless: fp32/fp16/int8/int4 quantize, evaluate, benchmark")
    p.add_argument("--out", required=True, help="output directory for bundles, summary.csv and PNG plots")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--model", default="default")
    p.add_argument("--data", default="default")
    p.add_argument("--recipes", default="fp16,int8,int4", help="comma-separated recipes besides fp32")
    p.add_argument("--iters", type=positive_int, default=30)
    p.add_argument("--warmup", type=nonneg_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=1)

    p = sub.add_parser("import", help="import a checkpoint (state dict, .keras/.h5 or .onnx) into a model bundle")
    p.add_argument("--arch", help="architecture of a state dict (resnet18, mobilenet_v2...); not for .keras/.onnx")
    p.add_argument("--weights", required=True, help=".safetensors/.npz/.pth state dict, .keras/.h5 or .onnx file")
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

    from engine.quant import cli as quant_cli

    p = sub.add_parser("quantize", help="quantize a model bundle with a recipe")
    p.add_argument("--model", required=True, help="bundle directory or 'default'")
    p.add_argument("--recipe", required=True, help=quant_cli.RECIPE_HELP)
    p.add_argument("--group-size", type=int, choices=(16, 32, 64, 128))
    quant_cli.add_recipe_options(p)
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    from engine.quant.methods.options import add_method_options

    add_method_options(p)

    p = sub.add_parser("predict", help="top-k predictions for images or a preprocessed tensor")
    p.add_argument("--model", required=True)
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--tensor", help="float32 NHWC batch (.npy), already preprocessed")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--logits-out", help="write the (N, C) float32 logits to this .npy")

    p = sub.add_parser("evaluate", help="accuracy, macro-F1 and per-class metrics on a labelled dataset")
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
    evaluation_cli.add_evaluate_arguments(p)
    quant_cli.add_actsim_options(p)

    p = sub.add_parser("benchmark", help="latency, throughput, memory and size of a model")
    p.add_argument("--model", required=True)
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--iters", type=positive_int, default=50)
    p.add_argument("--warmup", type=nonneg_int, default=5)
    p.add_argument("--csv", help="summary CSV (metric,value) plus a per-iteration CSV beside it")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("info", help="the model card of a bundle")
    p.add_argument("--model", required=True)
    p.add_argument("--json", action="store_true")

    for module_name in EXTENSIONS:
        module = importlib.import_module(module_name)
        COMMANDS.update(module.register(sub))
    return parser


# Feature modules that add subcommands: each has register(subparsers) -> {name: handler}.
# Handlers take the parsed args and return an exit code; they raise UserError for bad input.
# A module that adds options to a shared command uses add_shared_option, so two feature
# modules may both need the same option (e.g. evaluate --compare) without a clash.
EXTENSIONS: list[str] = [
    "engine.quant.cli",
    "engine.evaluate.cli",
    "engine.sweep_cli",
    "engine.llm.cli",
    "engine.serve.cli",
]


def add_shared_option(parser: argparse.ArgumentParser, *flags: str, **kwargs) -> None:
    """Add an option to a command unless another feature module already added it."""
    if any(f in parser._option_string_actions for f in flags):
        return
    parser.add_argument(*flags, **kwargs)


def _context(args):
    from engine.jobs import JobContext

    if not args.progress:
        return JobContext()
    last = {"text": ""}

    def progress(fraction: float, message: str) -> None:
        text = f"[{100 * fraction:5.1f}%] {message}"
        if text != last["text"]:
            print(text, file=sys.stderr, flush=True)
            last["text"] = text

    return JobContext(progress=progress)


def _run(job, args):
    from engine.jobs import Workspace

    return job.run(_context(args), Workspace())


# -- commands ------------------------------------------------------------------------


def cmd_demo(args) -> int:
    from engine.bench.harness import BenchmarkSettings
    from engine.workflows import DemoJob, format_demo_table

    recipes = tuple(r.strip() for r in args.recipes.split(",") if r.strip() and r.strip() != "fp32")
    settings = BenchmarkSettings(batch_size=args.batch_size, iters=args.iters, warmup=args.warmup)
    outcome = _run(
        DemoJob(
            out=args.out,
            model=args.model,
            data=args.data,
            recipes=recipes,
            bench=settings,
            overwrite=args.overwrite,
        ),
        args,
    )
    print(format_demo_table(outcome.rows))
    for f in outcome.files:
        print(f"wrote {f}")
    return 0


def cmd_import(args) -> int:
    from engine.data.presets import read_labels
    from engine.jobs import ImportJob
    from engine.model_card import human_bytes

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


def cmd_quantize(args) -> int:
    from engine.jobs import QuantizeJob
    from engine.model_card import human_bytes
    from engine.quant.cli import recipe_from_args
    from engine.quant.methods.options import method_kwargs

    job = QuantizeJob(
        args.model, recipe_from_args(args), args.out, args.group_size, overwrite=args.overwrite, **method_kwargs(args)
    )
    o = _run(job, args)
    print(
        f"{o.source.name} -> {o.card.name}: {human_bytes(o.source.size_on_disk)} -> {human_bytes(o.card.size_on_disk)} "
        f"({o.card.bits_per_weight:.2f} bits/weight, {o.seconds:.2f} s) -> {o.path}"
    )
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    from engine.fileio import atomic_open
    from engine.jobs import PredictJob

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


def cmd_evaluate(args) -> int:
    if args.simulate_activations:
        from engine.quant.cli import cmd_evaluate_actsim

        return cmd_evaluate_actsim(args)
    return evaluation_cli.cmd_evaluate(args, _run)


def cmd_benchmark(args) -> int:
    from engine.bench.harness import BenchmarkSettings
    from engine.fileio import write_csv
    from engine.jobs import BenchmarkJob
    from engine.model_card import human_bytes

    settings = BenchmarkSettings(batch_size=args.batch_size, iters=args.iters, warmup=args.warmup)
    o = _run(BenchmarkJob(args.model, settings), args)
    summary = o.result.summary()
    if args.csv:
        csv_path = Path(args.csv)
        write_csv(
            csv_path,
            ["model", "recipe", "metric", "value"],
            ([o.result.model_name, o.result.recipe, k, v] for k, v in summary.items()),
        )
        write_csv(
            csv_path.with_name(csv_path.stem + "_iterations.csv"),
            ["iteration", "latency_ms", "active_memory", "rss"],
            ((s.index, s.latency_ms, s.active_memory, s.rss) for s in o.result.samples),
        )
    if args.json:
        print(
            json.dumps(
                {
                    "model": o.result.model_name,
                    "recipe": o.result.recipe,
                    **summary,
                    "environment": o.result.environment,
                },
                indent=2,
            )
        )
    else:
        s = summary
        print(
            f"{o.result.model_name} [{o.result.recipe}] batch {settings.batch_size}, {settings.iters} iterations "
            f"on {o.result.environment.get('device')}:"
        )
        print(
            f"  latency ms: mean {s['latency_mean_ms']:.3f}  p50 {s['latency_p50_ms']:.3f}  "
            f"p90 {s['latency_p90_ms']:.3f}  p99 {s['latency_p99_ms']:.3f}  (std {s['latency_std_ms']:.3f})"
        )
        print(
            f"  throughput {s['throughput_ips']:.1f} images/s, first inference {s['first_inference_ms']:.1f} ms, "
            f"load {s.get('load_time_s', 0):.3f} s"
        )
        print(
            f"  peak memory {human_bytes(s['peak_memory_bytes'])} (MLX), {human_bytes(s['peak_rss_bytes'])} (RSS); "
            f"size {human_bytes(s.get('size_on_disk_bytes'))}, {s['bits_per_weight']:.2f} bits/weight"
        )
    return 0


def cmd_info(args) -> int:
    from dataclasses import asdict

    from engine.jobs import LoadModelJob
    from engine.model_card import human_bytes, human_count

    card = _run(LoadModelJob(args.model), args)
    if args.json:
        d = asdict(card)
        d["bits_per_weight"] = card.bits_per_weight
        print(json.dumps(d, indent=2))
        return 0
    print(f"{card.name}  ({card.arch}, {card.recipe})  {card.path}")
    print(
        f"  input {card.input_shape}, {len(card.labels)} classes, {card.params:,} parameters, "
        f"{human_bytes(card.bytes)} of weights, {human_bytes(card.size_on_disk)} on disk, "
        f"{card.bits_per_weight:.2f} bits/weight, {human_count(card.macs)} MACs per image"
    )
    for r in card.layers:
        print(
            f"  {r.name:<16}{r.type:<26}{str(r.shape):<20}{r.format:<12}{r.params:>9,}{human_bytes(r.bytes):>10}"
            f"{human_count(r.macs):>10}"
        )
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "import": cmd_import,
    "quantize": cmd_quantize,
    "predict": cmd_predict,
    "evaluate": cmd_evaluate,
    "benchmark": cmd_benchmark,
    "info": cmd_info,
}


def _model_kind_handler(args):
    """Shared commands (evaluate, benchmark, quantize, info, sensitivity) on a language model go to
    engine.llm.cli; the rest of the time the command's own handler runs."""
    from engine.llm.cli import handler_for

    return handler_for(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return (_model_kind_handler(args) or COMMANDS[args.command])(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Cancelled:
        print("error: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`); stay quiet like other Unix tools.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug or an environment problem: still one line
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {msg} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
